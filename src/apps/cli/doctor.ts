import type { Command } from "commander";
import { runDoctor, type DoctorReport, type DoctorStatus } from "../doctor/index.js";
import { resolveConfigPath } from "./common.js";
import { guarded } from "./errors.js";
import { secondsOption } from "./flags.js";

interface DoctorFlags {
  config?: string;
  json?: boolean;
  /** ms */
  timeout: number;
}

/** `chorus doctor`: what is wrong with this host's configuration, credentials, clock and broker. */
export function register(program: Command): void {
  const cmd = program
    .command("doctor")
    .description("Check this host's config, credentials, clock and broker connection, and say what to fix");
  // any role's config, not only a client's: addConfigOption's help would say "client config"
  cmd
    .option(
      "--config <file>",
      "the client, server or broker config to check (default: $CHORUS_CONFIG, then ./chorus.conf)",
    )
    .option("--json", "print the report as JSON")
    .addOption(
      secondsOption("--timeout <seconds>", "how long the broker and time sources may take to answer", 5),
    )
    .action(
      guarded("doctor", async (o: DoctorFlags) => {
        process.exitCode = await doctor(o);
      }),
    );
}

/** Runs the checks and prints them; the exit code: 1 when a check failed, else 0 (warnings pass). */
export async function doctor(
  o: DoctorFlags,
  write: (s: string) => void = (s) => process.stdout.write(s),
): Promise<number> {
  // A --config that does not exist is reported as the config check's failure, not refused.
  const path = o.config ?? resolveConfigPath(undefined);
  const report = await runDoctor(path, { timeoutMs: o.timeout });
  write(o.json ? `${JSON.stringify(report, null, 2)}\n` : renderDoctor(report));
  return report.ok ? 0 : 1;
}

const MARK: Record<DoctorStatus, string> = { ok: "OK", warn: "WARN", fail: "FAIL", skipped: "SKIP" };

/** One line per check (mark, name, detail) and the fix under warnings and failures. */
export function renderDoctor(r: DoctorReport): string {
  const width = Math.max(...r.checks.map((c) => c.name.length));
  const lines = [`${r.config} (${r.role})`, ""];
  for (const c of r.checks) {
    lines.push(`${MARK[c.status].padEnd(4)}  ${c.name.padEnd(width)}  ${c.detail}`);
    if (c.fix) lines.push(`${" ".repeat(width + 8)}fix: ${c.fix}`);
  }
  const count = (s: DoctorStatus) => r.checks.filter((c) => c.status === s).length;
  const [fail, warn, skip] = [count("fail"), count("warn"), count("skipped")];
  const extras = [
    ...(warn > 0 ? [`${warn} warning${warn === 1 ? "" : "s"}`] : []),
    ...(skip > 0 ? [`${skip} skipped`] : []),
  ];
  const head = fail === 0 ? "No check failed" : `${fail} check${fail === 1 ? "" : "s"} failed`;
  lines.push("", `${head}${extras.length > 0 ? ` (${extras.join(", ")})` : ""}`, "");
  return lines.join("\n");
}
