import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { createServer, connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Readable } from "node:stream";
import { connect } from "@nats-io/transport-node";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { BrokerError } from "../../src/broker/index.js";
import { NATS_WRAPPER_NAME, writeNatsWrapper } from "../../src/broker/nats-wrapper.js";
import { procInfo } from "../../src/broker/orphan.js";
import { BrokerSupervisor } from "../../src/broker/supervisor.js";
import { freePort, natsServerBinary } from "../helpers/nats.js";
import { processAlive, testBrokerSettings, waitFor } from "./helpers.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const BIN = join(ROOT, "bin/chorus.js");

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "chorus-orphan-test-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A child process killed (SIGKILL) at cleanup if it is still running. */
function track(child: ChildProcess): ChildProcess {
  cleanups.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  return child;
}

function exitOf(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null)
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tcpConnect({ port, host: "127.0.0.1" });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

async function healthy(monitorPort: number): Promise<boolean> {
  try {
    const res = await fetch(`http://127.0.0.1:${monitorPort}/healthz`);
    await res.body?.cancel();
    return res.ok;
  } catch {
    return false;
  }
}

/** Collects a stream's text; `has` checks for a substring. */
function collect(stream: Readable | null): { text: () => string; has: (s: string) => boolean } {
  let text = "";
  stream?.setEncoding("utf8");
  stream?.on("data", (d: string) => (text += d));
  return { text: () => text, has: (s) => text.includes(s) };
}

describe("nats-server does not outlive its supervisor", () => {
  beforeAll(() => {
    // This suite runs the built CLI, as an operator would.
    const built = join(ROOT, "dist/broker/supervisor.js");
    const newest = Math.max(
      ...["supervisor.ts", "orphan.ts", "nats-wrapper.ts"].map(
        (f) => statSync(join(ROOT, "src/broker", f)).mtimeMs,
      ),
    );
    if (!existsSync(built) || statSync(built).mtimeMs < newest)
      throw new Error(
        "dist/ is older than src/broker: run `npm run build` first (this test runs bin/chorus.js)",
      );
  });

  it("SIGKILL of `chorus broker run` takes nats-server, its temp runtime dir and pidfile with it", async () => {
    const dir = tempDir();
    const port = await freePort();
    const conf = join(dir, "broker.conf");
    // No runtime_dir: a fresh temporary one, and the pidfile in the per-user directory.
    writeFileSync(
      conf,
      [
        "identity = broker.test",
        "plugin.choria.broker_network = true",
        `plugin.choria.network.client_port = ${port}`,
      ]
        .map((l) => `${l}\n`)
        .join(""),
    );
    const sup = track(spawn(process.execPath, [BIN, "broker", "run", "--config", conf], { stdio: "pipe" }));
    const log = collect(sup.stderr);
    await waitFor(() => log.has('"broker ready"') || sup.exitCode !== null, 8000, "broker ready");
    const natsPid = Number(/"natsPid":(\d+)/.exec(log.text())?.[1]);
    expect(natsPid, log.text()).toBeGreaterThan(1);
    expect(await portOpen(port)).toBe(true);

    // nats-server runs under the wrapper, which runs under the supervisor.
    const nats = procInfo(natsPid);
    const wrapper = procInfo(nats?.ppid ?? 0);
    expect(wrapper?.ppid).toBe(sup.pid);
    expect(wrapper?.argv[1]).toMatch(new RegExp(`/${NATS_WRAPPER_NAME}$`));
    const conf2 = nats?.argv[nats.argv.indexOf("-c") + 1] as string;
    const runtimeDir = dirname(conf2);
    const pidFile = join(
      tmpdir(),
      `chorus-broker-${process.getuid?.()}`,
      `nats-server-127.0.0.1-${port}.pid`,
    );
    expect(readFileSync(pidFile, "utf8").trim()).toBe(String(natsPid));

    sup.kill("SIGKILL");
    await exitOf(sup);
    await waitFor(
      () => !processAlive(natsPid),
      5000,
      "nats-server to exit after its supervisor was SIGKILLed",
    );
    expect(await portOpen(port)).toBe(false);
    await waitFor(
      () => !existsSync(runtimeDir) && !existsSync(pidFile),
      2000,
      "runtime dir and pidfile removal",
    );
  });
});

describe("orphan takeover at start", () => {
  it("stops an orphaned nats-server named by the pidfile and starts on the same ports", async () => {
    const dir = tempDir();
    const settings = await testBrokerSettings(dir);
    // The orphan: a nats-server no supervisor runs, on the broker's ports, in the pidfile.
    mkdirSync(join(dir, "run"), { recursive: true });
    const orphanConf = join(dir, "orphan.conf");
    writeFileSync(
      orphanConf,
      `listen: "127.0.0.1:${settings.clientPort}"\nhttp: "127.0.0.1:${settings.monitorPort}"\n`,
    );
    const orphan = track(spawn(natsServerBinary(), ["-c", orphanConf], { stdio: "ignore" }));
    const orphanExit = exitOf(orphan);
    await waitFor(() => healthy(settings.monitorPort), 5000, "orphan nats-server");
    const logs: string[] = [];
    const sup = new BrokerSupervisor({ settings, logger: (level, line) => logs.push(`${level} ${line}`) });
    cleanups.push(() => sup.stop());
    expect(sup.pidFile).toBe(join(dir, "run", "nats-server.pid"));
    writeFileSync(sup.pidFile, `${orphan.pid}\n`);

    await sup.start();
    expect(logs).toContain(
      `warn taking over an orphaned nats-server (pid ${orphan.pid}, from ${sup.pidFile}): stopping it`,
    );
    expect(await orphanExit).toEqual({ code: 1, signal: null }); // nats-server's SIGTERM exit
    expect(sup.up).toBe(true);
    expect(sup.pid).not.toBe(orphan.pid);
    expect(readFileSync(sup.pidFile, "utf8")).toBe(`${sup.pid}\n`);
    const nc = await connect({ servers: sup.clientUrl });
    cleanups.push(() => nc.close());
    expect(nc.info?.server_name).toBe("broker.test"); // the orphan had no name: this is ours

    const pid = sup.pid as number;
    await sup.stop();
    expect(processAlive(pid)).toBe(false);
    expect(existsSync(sup.pidFile)).toBe(false);
  });

  it("removes a stale pidfile and leaves the process it names alone", async () => {
    const dir = tempDir();
    const settings = await testBrokerSettings(dir);
    mkdirSync(join(dir, "run"), { recursive: true });
    const other = track(spawn("sleep", ["30"], { stdio: "ignore" }));
    const sup = new BrokerSupervisor({ settings });
    cleanups.push(() => sup.stop());
    writeFileSync(sup.pidFile, `${other.pid}\n`); // a pid reused by another program
    await sup.start();
    expect(processAlive(other.pid as number)).toBe(true);
    expect(readFileSync(sup.pidFile, "utf8")).toBe(`${sup.pid}\n`);
    await sup.stop();

    writeFileSync(sup.pidFile, "99999999\n"); // a dead pid
    await sup.start();
    expect(readFileSync(sup.pidFile, "utf8")).toBe(`${sup.pid}\n`);
  });

  it("refuses to start beside a broker whose supervisor is alive, and leaves it running", async () => {
    const dir = tempDir();
    const settings = await testBrokerSettings(dir);
    const first = new BrokerSupervisor({ settings });
    cleanups.push(() => first.stop());
    await first.start();
    const pid = first.pid as number;

    const second = new BrokerSupervisor({ settings });
    const err = await second.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(BrokerError);
    expect((err as BrokerError).code).toBe("already_running");
    expect((err as Error).message).toContain(`nats-server pid ${pid}`);
    expect(first.up).toBe(true);
    expect(first.pid).toBe(pid);
    expect(readFileSync(first.pidFile, "utf8")).toBe(`${pid}\n`);
    expect(existsSync(join(dir, "run", NATS_WRAPPER_NAME))).toBe(true);
    expect(existsSync(first.configPath)).toBe(true);
  });

  it("a failed start removes the runtime dir it created", async () => {
    const dir = tempDir();
    const s = await testBrokerSettings(dir);
    const settings = { ...s, runtimeDir: undefined };

    // Something else holds the client port: nats-server cannot listen.
    const squatter = createServer().listen(settings.clientPort, "127.0.0.1");
    cleanups.push(() => new Promise<void>((r) => squatter.close(() => r())));
    const sup = new BrokerSupervisor({ settings });
    await expect(sup.start()).rejects.toThrow(/exited during startup[\s\S]*address already in use/);
    expect(existsSync(dirname(sup.configPath))).toBe(false);
    expect(existsSync(sup.pidFile)).toBe(false);

    // Something else answers on the monitoring port: its /healthz must not pass for ours.
    const fakeMonitor = createHttpServer((_q, r) => r.end("{}")).listen(settings.monitorPort, "127.0.0.1");
    cleanups.push(() => new Promise<void>((r) => fakeMonitor.close(() => r())));
    await waitFor(() => healthy(settings.monitorPort), 2000, "fake monitor");
    const sup2 = new BrokerSupervisor({ settings: { ...settings, clientPort: await freePort() } });
    const err = await sup2.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err as BrokerError).code).toBe("port_in_use");
    expect(existsSync(dirname(sup2.configPath))).toBe(false);
  });

  it("restarts cleanly when only the wrapper is SIGKILLed (its nats-server is not left holding the ports)", async () => {
    const dir = tempDir();
    const sup = new BrokerSupervisor({
      settings: await testBrokerSettings(dir),
      backoff: { initialMs: 100 },
    });
    cleanups.push(() => sup.stop());
    await sup.start();
    const natsPid = sup.pid as number;
    const wrapperPid = procInfo(natsPid)?.ppid as number;
    expect(procInfo(wrapperPid)?.argv[1]).toMatch(new RegExp(`/${NATS_WRAPPER_NAME}$`));
    process.kill(wrapperPid, "SIGKILL");
    await waitFor(() => sup.restarts === 1 && sup.up, 8000, "restart");
    // Reparented, so once dead it may linger as a zombie until init reaps it.
    expect(processAlive(natsPid) && procInfo(natsPid)?.state !== "Z").toBe(false);
    expect(sup.pid).not.toBe(natsPid);
  });

  it("signals sent to sup.pid reach the real nats-server (SIGHUP reloads)", async () => {
    const dir = tempDir();
    const logs: string[] = [];
    const sup = new BrokerSupervisor({
      settings: await testBrokerSettings(dir),
      logger: (_level, line) => logs.push(line),
    });
    cleanups.push(() => sup.stop());
    await sup.start();
    expect(procInfo(sup.pid as number)?.argv[0]).toBe(natsServerBinary());
    process.kill(sup.pid as number, "SIGHUP");
    await waitFor(() => logs.some((l) => l.includes("Reloaded server configuration")), 5000, "reload");
    expect(sup.up).toBe(true);
  });
});

describe("the nats-server wrapper", () => {
  // Stands in for nats-server: reports the signals it gets, exits 3 on SIGTERM unless told to ignore it.
  function fakeServer(dir: string, ignoreTerm: boolean): string {
    const fake = join(dir, "fake-nats-server");
    writeFileSync(
      fake,
      `#!/usr/bin/env node
for (const s of ["SIGHUP", "SIGUSR1", "SIGUSR2", "SIGINT"]) process.on(s, () => console.log("got " + s));
process.on("SIGTERM", () => { console.log("got SIGTERM"); if (${ignoreTerm ? "false" : "true"}) process.exit(3); });
console.log("ready");
setInterval(() => {}, 1000);
`,
      { mode: 0o755 },
    );
    return fake;
  }

  function runWrapper(dir: string, supervisorPid: number, cleanupDir: string, fake: string) {
    const wrapper = writeNatsWrapper(dir);
    const child = track(
      spawn("/bin/sh", [wrapper, String(supervisorPid), "1", cleanupDir, "", fake], {
        stdio: ["pipe", "pipe", "pipe", "pipe"],
      }),
    );
    const out = collect(child.stdout);
    const report = collect(child.stdio[3] as Readable);
    return { child, out, exit: exitOf(child), childPid: () => Number(report.text().trim()) };
  }

  it("forwards TERM, INT, HUP, USR1 and USR2 and exits with the child's status", async () => {
    const dir = tempDir();
    const keep = join(dir, "keep");
    mkdirSync(keep);
    const w = runWrapper(dir, process.pid, keep, fakeServer(dir, false));
    await waitFor(() => w.out.has("ready") && w.childPid() > 1, 5000, "fake server");
    for (const sig of ["SIGHUP", "SIGUSR1", "SIGUSR2", "SIGINT"] as const) {
      process.kill(w.child.pid as number, sig);
      await waitFor(() => w.out.has(`got ${sig}`), 3000, `forwarded ${sig}`);
    }
    process.kill(w.child.pid as number, "SIGTERM");
    expect(await w.exit).toEqual({ code: 3, signal: null });
    expect(w.out.has("got SIGTERM")).toBe(true);
    expect(processAlive(w.childPid())).toBe(false);
    expect(existsSync(keep)).toBe(true); // the supervisor is alive: its directory stays
  });

  it("stops the child when the lifeline closes, with SIGKILL after the grace period", async () => {
    const dir = tempDir();
    const gone = join(dir, "gone");
    mkdirSync(gone);
    const w = runWrapper(dir, 99999999, gone, fakeServer(dir, true));
    await waitFor(() => w.out.has("ready") && w.childPid() > 1, 5000, "fake server");
    const t0 = Date.now();
    w.child.stdin?.destroy(); // what the kernel does when the supervisor dies
    await waitFor(() => w.out.has("got SIGTERM"), 3000, "SIGTERM on lifeline EOF");
    expect(await w.exit).toEqual({ code: 137, signal: null });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    expect(processAlive(w.childPid())).toBe(false);
    expect(existsSync(gone)).toBe(false); // the supervisor is dead: its directory goes
  });
});
