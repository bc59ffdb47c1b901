import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import type { Watcher, WatcherFactory, WatcherHost } from "../types.js";
import { WatcherProps } from "./properties.js";

/** stdout kept for parse_as_data; more is dropped (and fails parsing) */
const MAX_OUTPUT = 1 << 20;

type Outcome = "unknown" | "success" | "error";

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    // negative pid: the whole group the detached shell leads, so its children die too
    process.kill(-pid, "SIGKILL");
  } catch {
    // already gone
  }
}

/** Runs `/bin/sh -c command` in its own process group; kills the group on timeout or abort. */
function runShell(
  command: string,
  cwd: string,
  env: Record<string, string>,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn("/bin/sh", ["-c", command], {
      cwd,
      env,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    let timedOut = false;
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      if (stdout.length < MAX_OUTPUT) stdout += d;
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      if (stderr.length < MAX_OUTPUT) stderr += d;
    });
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid);
    }, timeoutMs);
    const onAbort = (): void => killGroup(child.pid);
    signal.addEventListener("abort", onAbort, { once: true });
    child.on("error", (err) => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      reject(err);
    });
    child.on("close", (code, sig) => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      resolve({ code, signal: sig, stdout, stderr, timedOut });
    });
  });
}

/** A private temp file holding JSON, for WATCHER_DATA and WATCHER_FACTS. */
function tempJson(dir: string, name: string, value: unknown): string {
  const f = join(dir, name);
  writeFileSync(f, JSON.stringify(value), { mode: 0o600 });
  return f;
}

/**
 * `exec`: runs a command (through /bin/sh, in the machine directory) whenever the machine
 * enters a state the watcher is active in and every interval; exit 0 fires success, anything
 * else (a timeout, a governor that stays full) fires fail.
 */
export const execWatcher: WatcherFactory = (def, host, path) => {
  const p = new WatcherProps(def, path, [
    "command",
    "environment",
    "governor",
    "governor_timeout",
    "parse_as_data",
    "suppress_success_announce",
    "timeout",
    "disown",
    "gather_initial_state",
  ]);
  const command = p.string("command", { required: true });
  const environment = p.stringList("environment");
  environment.forEach((e, i) => {
    if (!/^[a-zA-Z_][a-zA-Z0-9_]*=/.test(e))
      throw p.error(`environment[${i}]`, `must be NAME=VALUE, got "${e}"`);
  });
  const governor = p.string("governor");
  const governorTimeoutMs = p.duration("governor_timeout", 5 * 60_000);
  const parseAsData = p.bool("parse_as_data");
  const suppressSuccess = p.bool("suppress_success_announce");
  const timeoutMs = p.duration("timeout", 10_000);
  if (timeoutMs <= 0) throw p.error("timeout", "must be more than zero");
  // accepted for go-choria manifests; a Chorus command never outlives the watcher
  p.bool("disown");
  p.bool("gather_initial_state");

  let previous: Outcome = "unknown";
  let previousRunNs = 0;
  let lastExit: number | null = null;
  let lastError: string | undefined;

  const execute = async (h: WatcherHost, signal: AbortSignal): Promise<void> => {
    const started = process.hrtime.bigint();
    const dir = mkdtempSync(join(tmpdir(), "chorus-exec-"));
    try {
      const env: Record<string, string> = {
        PATH: `${process.env.PATH ?? "/usr/bin:/bin"}${delimiter}${h.directory}`,
        MACHINE_NAME: h.machineName,
        MACHINE_VERSION: h.machineVersion,
        MACHINE_WATCHER_NAME: def.name,
        WATCHER_NAME: def.name,
        WATCHER_DATA: tempJson(dir, "data.json", h.data()),
        WATCHER_FACTS: tempJson(dir, "facts.json", h.services.facts?.() ?? {}),
      };
      for (const e of environment) {
        const i = e.indexOf("=");
        env[e.slice(0, i)] = e.slice(i + 1);
      }
      const r = await runShell(command, h.directory, env, timeoutMs, signal);
      lastExit = r.code;
      if (r.timedOut) throw new Error(`timed out after ${timeoutMs}ms`);
      if (r.code !== 0) {
        const why = r.signal ? `killed by ${r.signal}` : `exited ${r.code}`;
        throw new Error(`${why}${r.stderr.trim() ? `: ${r.stderr.trim().slice(0, 500)}` : ""}`);
      }
      if (parseAsData) {
        let out: unknown;
        try {
          out = JSON.parse(r.stdout);
        } catch (err) {
          throw new Error(`parse_as_data: output is not JSON: ${(err as Error).message}`, { cause: err });
        }
        if (out === null || typeof out !== "object" || Array.isArray(out)) {
          throw new Error("parse_as_data: output is not a JSON object");
        }
        for (const [k, v] of Object.entries(out)) h.dataPut(k, v);
      }
    } finally {
      previousRunNs = Number(process.hrtime.bigint() - started);
      rmSync(dir, { recursive: true, force: true });
    }
  };

  const w: Watcher = {
    def,
    type: "exec",
    async run(signal) {
      try {
        if (governor !== undefined && governor !== "") {
          const gov = host.services.governor;
          if (!gov) throw new Error(`governor "${governor}" is named but this host has no governors`);
          await gov.run(governor, governorTimeoutMs, () => execute(host, signal));
        } else {
          await execute(host, signal);
        }
      } catch (err) {
        // left the active state or stopped: not an outcome
        if (signal.aborted) return;
        previous = "error";
        lastError = err instanceof Error ? err.message : String(err);
        host.log.warn({ command, error: lastError }, "exec watcher command failed");
        host.announce();
        host.fail(`${def.name}: ${lastError}`);
        return;
      }
      if (signal.aborted) return;
      previous = "success";
      lastError = undefined;
      if (!suppressSuccess) host.announce();
      host.success(def.name);
    },
    snapshot: () => ({
      command,
      previous_outcome: previous,
      // nanoseconds, as go-choria's exec state notification has it
      previous_run_time: previousRunNs,
      previous_exit_code: lastExit,
      ...(lastError !== undefined ? { error: lastError } : {}),
    }),
  };
  return w;
};
