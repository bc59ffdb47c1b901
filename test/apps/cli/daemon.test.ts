// runDaemon's signals, in a real process: SIGHUP reloads a daemon that can, and one that
// cannot logs so and runs on (Node's default would end it); SIGTERM stops either.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const DAEMON = fileURLToPath(new URL("../../../dist/apps/cli/daemon.js", import.meta.url));

function run(withReload: boolean): Promise<{ code: number | null; out: string }> {
  const script = `
    const { runDaemon } = await import(${JSON.stringify(DAEMON)});
    const log = { info: (f, m) => console.log("info", m), warn: (f, m) => console.log("warn", m) };
    // a real daemon's sockets keep it alive; this one has a timer
    let alive;
    await runDaemon("test", () => ({
      log,
      start: async () => {
        alive = setInterval(() => {}, 1000);
        console.log("started");
      },
      stop: async () => {
        clearInterval(alive);
        console.log("stopped");
      },
      ${withReload ? 'reload: async () => console.log("reloaded"),' : ""}
    }));
  `;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let step = 0;
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      if (step === 0 && out.includes("started")) {
        step = 1;
        child.kill("SIGHUP");
      } else if (step === 1 && /reloaded|does not reload/.test(out)) {
        step = 2;
        child.kill("SIGTERM");
      }
    });
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    child.once("exit", (code) => resolve({ code, out }));
  });
}

describe("runDaemon and SIGHUP", () => {
  it("reloads a daemon that can, then stops on SIGTERM", async () => {
    const r = await run(true);
    expect(r.out).toMatch(/started\n[\s\S]*reloaded\n[\s\S]*stopped/);
    expect(r.code).toBe(0);
  });

  it("keeps a daemon that cannot reload running, saying so, then stops on SIGTERM", async () => {
    const r = await run(false);
    expect(r.out).toContain("warn chorus test does not reload its configuration: restart it");
    expect(r.out).toMatch(/stopped/);
    expect(r.code).toBe(0);
  });
});
