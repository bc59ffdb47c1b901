import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { newRequestId } from "../../../src/core/protocol/index.js";
import { parseWorkflow, type EventSink, type JobEvent } from "../../../src/services/jobs/index.js";

export function tempDir(prefix = "chorus-jobs-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** An execution directory as Jobs.start lays it out, for runExecution to run in this process. */
export function prepare(root: string, workflow: unknown, maxOutput = 1024 * 1024): string {
  const dir = join(root, newRequestId());
  mkdirSync(join(dir, "steps"), { recursive: true });
  writeFileSync(join(dir, "workflow.json"), JSON.stringify(parseWorkflow(workflow)));
  writeFileSync(
    join(dir, "meta.json"),
    JSON.stringify({
      caller: "up=tester",
      identity: "n1.example.net",
      collective: "choria",
      started: new Date().toISOString(),
      max_output: maxOutput,
    }),
  );
  return dir;
}

export function memorySink(): EventSink & { events: JobEvent[] } {
  const events: JobEvent[] = [];
  return { events, emit: (e) => events.push(e) };
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // a zombie still answers signal 0; it has exited all the same
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** Children of this process that exited but were never waited for. */
export function zombieChildren(): number[] {
  const out: number[] = [];
  for (const p of readdirSync("/proc")) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const stat = readFileSync(`/proc/${p}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (f[0] === "Z" && Number(f[1]) === process.pid) out.push(Number(p));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

export async function waitFor<T>(
  what: string,
  fn: () => T | undefined | false,
  timeoutMs = 10_000,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
