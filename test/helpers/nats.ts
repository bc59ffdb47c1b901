import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findNatsServer, freeLoopbackPort } from "../../src/broker/index.js";

/** Finds nats-server the way Chorus does: CHORUS_NATS_SERVER, PATH, /usr/sbin. */
export const natsServerBinary = (): string => findNatsServer();

/** A free loopback TCP port (the OS picks it). */
export const freePort = freeLoopbackPort;

export interface TestNats {
  url: string;
  port: number;
  monitorPort: number;
  dir: string;
  proc: ChildProcess;
  stop(): Promise<void>;
}

/**
 * Starts a real nats-server on random loopback ports in a temp dir.
 * `extraConfig` is appended to the generated config (auth, TLS, JetStream...).
 */
export async function startNats(extraConfig = ""): Promise<TestNats> {
  const dir = mkdtempSync(join(tmpdir(), "chorus-nats-"));
  const port = await freePort();
  const monitorPort = await freePort();
  const conf = join(dir, "nats.conf");
  writeFileSync(conf, `listen: "127.0.0.1:${port}"\nhttp: "127.0.0.1:${monitorPort}"\n${extraConfig}\n`);
  const proc = spawn(natsServerBinary(), ["-c", conf], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  proc.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  await waitReady(monitorPort, proc, () => stderr);
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    monitorPort,
    dir,
    proc,
    async stop() {
      if (proc.exitCode === null) {
        const done = new Promise((r) => proc.once("exit", r));
        proc.kill("SIGTERM");
        await done;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function waitReady(monitorPort: number, proc: ChildProcess, logs: () => string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`nats-server exited: ${logs()}`);
    try {
      const res = await fetch(`http://127.0.0.1:${monitorPort}/healthz`);
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  proc.kill("SIGKILL");
  throw new Error(`nats-server did not become ready: ${logs()}`);
}
