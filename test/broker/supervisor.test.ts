import { once } from "node:events";
import { createServer as createHttpServer } from "node:http";
import { createServer, type AddressInfo } from "node:net";
import { Counter, Registry } from "prom-client";
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterEach, describe, expect, it } from "vitest";
import { BrokerError, BrokerMetrics, BrokerSupervisor, findNatsServer } from "../../src/broker/index.js";
import { freePort } from "../helpers/nats.js";
import { processAlive, testBrokerSettings, waitFor } from "./helpers.js";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "chorus-sup-test-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function echoOnce(nc: NatsConnection, subject: string, payload: string): Promise<string> {
  const sub = nc.subscribe(subject, { max: 1 });
  await nc.flush();
  nc.publish(subject, payload);
  for await (const m of sub) return m.string();
  return "";
}

describe("BrokerSupervisor", () => {
  it("restarts a SIGKILLed nats-server and clients reconnect", async () => {
    const dir = tempDir();
    const logs: string[] = [];
    const events: string[] = [];
    const sup = new BrokerSupervisor({
      settings: await testBrokerSettings(dir),
      logger: (level, line) => logs.push(`${level} ${line}`),
      backoff: { initialMs: 100 },
    });
    cleanups.push(() => sup.stop());
    sup.on("started", () => events.push("started"));
    sup.on("exited", (e) => events.push(`exited:${e.signal ?? e.code}:${e.expected}`));
    sup.on("restarted", (e) => events.push(`restarted:${e.restarts}`));
    await sup.start();
    expect(sup.up).toBe(true);
    expect(logs.some((l) => l.startsWith("info ") && l.includes("Server is ready"))).toBe(true);
    // The config holds secrets, so it is private.
    expect(statSync(sup.configPath).mode & 0o777).toBe(0o600);

    const nc = await connect({ servers: sup.clientUrl, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    cleanups.push(() => nc.close());
    expect(await echoOnce(nc, "before", "one")).toBe("one");

    const reconnected = (async () => {
      for await (const st of nc.status()) if (st.type === "reconnect") return true;
      return false;
    })();
    const firstPid = sup.pid as number;
    process.kill(firstPid, "SIGKILL");
    await waitFor(() => sup.restarts === 1 && sup.up, 15_000, "restart");
    expect(sup.pid).not.toBe(firstPid);
    expect(processAlive(firstPid)).toBe(false);
    expect(events).toEqual(["started", "exited:SIGKILL:false", "restarted:1"]);

    // The client reconnects on its own; once it does pub/sub works again.
    expect(await reconnected).toBe(true);
    expect(await echoOnce(nc, "after", "two")).toBe("two");
  });

  it("stop() terminates nats-server and leaves no process or temp config", async () => {
    const dir = tempDir();
    const s = await testBrokerSettings(dir);
    const sup = new BrokerSupervisor({ settings: { ...s, runtimeDir: undefined } });
    const exits: boolean[] = [];
    sup.on("exited", (e) => exits.push(e.expected));
    await sup.start();
    const pid = sup.pid as number;
    const conf = sup.configPath;
    expect(existsSync(conf)).toBe(true);
    await sup.stop();
    expect(processAlive(pid)).toBe(false);
    expect(sup.pid).toBeUndefined();
    expect(sup.up).toBe(false);
    expect(existsSync(conf)).toBe(false);
    expect(exits).toEqual([true]);
    await sup.stop(); // idempotent
  });

  it("stop() falls back to SIGKILL when SIGTERM is ignored", async () => {
    const dir = tempDir();
    // A stand-in "nats-server" that serves /healthz and ignores SIGTERM.
    const fake = join(dir, "fake-nats-server");
    writeFileSync(
      fake,
      `#!/usr/bin/env node
process.on("SIGTERM", () => {});
const conf = require("fs").readFileSync(process.argv[3], "utf8");
const port = Number(/http: "127\\.0\\.0\\.1:(\\d+)"/.exec(conf)[1]);
require("http").createServer((q, r) => r.end("{}")).listen(port, "127.0.0.1");
console.log("[1] fake [INF] Server is ready");
`,
      { mode: 0o755 },
    );
    const sup = new BrokerSupervisor({
      settings: await testBrokerSettings(dir),
      binary: fake,
      stopGraceMs: 300,
    });
    await sup.start();
    const pid = sup.pid as number;
    const t0 = Date.now();
    await sup.stop();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(processAlive(pid)).toBe(false);
  });

  it("a failed start reports nats-server's last log lines and leaves nothing running", async () => {
    const dir = tempDir();
    const s = await testBrokerSettings(dir);
    const sup = new BrokerSupervisor({
      settings: s,
      trustFragment: "resolver: MEMORY\nresolver_preload: { nonsense",
    });
    const err = await sup.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(BrokerError);
    expect((err as BrokerError).code).toBe("exited");
    expect((err as Error).message).toMatch(/nats-server exited during startup[\s\S]*last log lines/);
    expect(sup.pid).toBeUndefined();
  });

  it("a server that never becomes ready times out with a clear error", async () => {
    const dir = tempDir();
    const fake = join(dir, "silent-nats-server");
    writeFileSync(fake, `#!/bin/sh\necho "[1] fake [INF] starting slowly"\nexec sleep 30\n`, { mode: 0o755 });
    const sup = new BrokerSupervisor({
      settings: await testBrokerSettings(dir),
      binary: fake,
      readyTimeoutMs: 500,
    });
    await expect(sup.start()).rejects.toThrow(
      /not ready within 500ms; last log lines:\n {2}\[1\] fake \[INF\] starting slowly/,
    );
    expect(sup.pid).toBeUndefined();
  });

  it("restart delays back off exponentially", async () => {
    const dir = tempDir();
    const s = await testBrokerSettings(dir);
    // Runs nats-server once, then a binary that always dies, so every restart fails.
    const real = findNatsServer();
    const marker = join(dir, "ran-once");
    const flaky = join(dir, "flaky-nats-server");
    writeFileSync(
      flaky,
      `#!/bin/sh\nif [ -e ${marker} ]; then echo "[1] x [FTL] broken"; exit 1; fi\ntouch ${marker}\nexec ${real} "$@"\n`,
      { mode: 0o755 },
    );
    const sup = new BrokerSupervisor({ settings: s, binary: flaky, backoff: { initialMs: 50, maxMs: 400 } });
    cleanups.push(() => sup.stop());
    const failures: number[] = [];
    sup.on("restartFailed", (e) => failures.push(e.delayMs));
    await sup.start();
    process.kill(sup.pid as number, "SIGKILL");
    await waitFor(() => failures.length >= 4, 10_000, "failed restarts");
    // delayMs is the wait before the next attempt: 100, 200, 400, then capped at 400.
    expect(failures.slice(0, 4)).toEqual([100, 200, 400, 400]);
    expect(sup.up).toBe(false);
  });

  it("resets the backoff after a healthy period", async () => {
    const dir = tempDir();
    const delays: number[] = [];
    const sup = new BrokerSupervisor({
      settings: await testBrokerSettings(dir),
      backoff: { initialMs: 50, resetAfterMs: 300 },
      logger: (_l, line) => {
        const m = /restarting nats-server in (\d+)ms/.exec(line);
        if (m) delays.push(Number(m[1]));
      },
    });
    cleanups.push(() => sup.stop());
    await sup.start();
    process.kill(sup.pid as number, "SIGKILL");
    await waitFor(() => sup.restarts === 1 && sup.up, 10_000, "first restart");
    process.kill(sup.pid as number, "SIGKILL"); // quickly again: backoff doubles
    await waitFor(() => sup.restarts === 2 && sup.up, 10_000, "second restart");
    await new Promise((r) => setTimeout(r, 500)); // healthy for longer than resetAfterMs
    process.kill(sup.pid as number, "SIGKILL");
    await waitFor(() => sup.restarts === 3 && sup.up, 10_000, "third restart");
    expect(delays).toEqual([50, 100, 50]);
  });

  it("picks another monitoring port when the one it picked is taken before nats-server binds it", async () => {
    const dir = tempDir();
    const settings = { ...(await testBrokerSettings(dir)), monitorPort: 0 };
    // two thieves: a plain listener (nats-server fails to bind) and an HTTP server that
    // answers /healthz (the supervisor sees someone else's server)
    const tcp = createServer().listen(0, "127.0.0.1");
    const http = createHttpServer((_req, res) => res.end("ok")).listen(0, "127.0.0.1");
    await Promise.all([once(tcp, "listening"), once(http, "listening")]);
    cleanups.push(() => {
      tcp.close();
      http.close();
    });
    const taken = [(tcp.address() as AddressInfo).port, (http.address() as AddressInfo).port];
    const picks: number[] = [];
    const logs: string[] = [];
    const sup = new BrokerSupervisor({
      settings,
      logger: (level, line) => logs.push(`${level} ${line}`),
      pickPort: async () => {
        const p = taken[picks.length] ?? (await freePort());
        picks.push(p);
        return p;
      },
    });
    cleanups.push(() => sup.stop());
    await sup.start();
    expect(picks).toHaveLength(3);
    expect(sup.monitorUrl).toBe(`http://127.0.0.1:${picks[2]}`);
    expect(logs.filter((l) => l.includes("was taken before nats-server bound it"))).toHaveLength(2);
    expect((await fetch(`${sup.monitorUrl}/healthz`)).ok).toBe(true);
  });

  it("gives up after three taken monitoring ports", async () => {
    const dir = tempDir();
    const settings = { ...(await testBrokerSettings(dir)), monitorPort: 0 };
    const tcp = createServer().listen(0, "127.0.0.1");
    await once(tcp, "listening");
    cleanups.push(() => void tcp.close());
    let picks = 0;
    const sup = new BrokerSupervisor({
      settings,
      logger: () => undefined,
      pickPort: () => {
        picks++;
        return Promise.resolve((tcp.address() as AddressInfo).port);
      },
    });
    cleanups.push(() => sup.stop());
    await expect(sup.start()).rejects.toThrow(/address already in use/);
    expect(picks).toBe(3);
    expect(sup.pid).toBeUndefined();
  });

  it("reports a missing binary with install advice", () => {
    const old = { env: process.env.CHORUS_NATS_SERVER, path: process.env.PATH };
    try {
      delete process.env.CHORUS_NATS_SERVER;
      expect(() => findNatsServer("/nonexistent/nats-server")).toThrow(
        /"\/nonexistent\/nats-server" from plugin\.choria\.network\.nats_server/,
      );
      process.env.CHORUS_NATS_SERVER = "/nonexistent/x";
      expect(() => findNatsServer()).toThrow(/from CHORUS_NATS_SERVER/);
      delete process.env.CHORUS_NATS_SERVER;
      process.env.PATH = "/nonexistent";
      if (!existsSync("/usr/sbin/nats-server")) {
        expect(() => findNatsServer()).toThrow(/install the Debian package nats-server/);
      } else {
        expect(findNatsServer()).toBe("/usr/sbin/nats-server");
      }
    } finally {
      process.env.PATH = old.path;
      if (old.env === undefined) delete process.env.CHORUS_NATS_SERVER;
      else process.env.CHORUS_NATS_SERVER = old.env;
    }
  });
});

describe("BrokerMetrics", () => {
  it("exposes choria_network_* from /varz plus supervisor state", async () => {
    const dir = tempDir();
    const sup = new BrokerSupervisor({ settings: await testBrokerSettings(dir) });
    cleanups.push(() => sup.stop());
    await sup.start();
    const metrics = new BrokerMetrics({ port: await freePort(), identity: "broker.test", source: sup });
    cleanups.push(() => metrics.stop());
    await metrics.start();
    const nc = await connect({ servers: sup.clientUrl });
    cleanups.push(() => nc.close());
    nc.subscribe("m.x");
    await nc.flush();

    const scrape = async () => {
      const res = await fetch(`http://127.0.0.1:${metrics.port}/metrics`);
      expect(res.status).toBe(200);
      return res.text();
    };
    const body = await scrape();
    expect(body).toMatch(/^choria_network_connections\{identity="broker\.test"\} 1$/m);
    for (const name of [
      "choria_network_total_connections",
      "choria_network_in_msgs",
      "choria_network_out_msgs",
      "choria_network_in_bytes",
      "choria_network_out_bytes",
      "choria_network_slow_consumers",
      "choria_network_subscriptions",
      "choria_network_mem_bytes",
      "choria_network_cpu_percent",
    ]) {
      expect(body).toMatch(new RegExp(`^${name}\\{identity="broker\\.test"\\} \\d`, "m"));
    }
    expect(body).toMatch(/^chorus_broker_up\{identity="broker\.test"\} 1$/m);
    expect(body).toMatch(/^chorus_broker_restarts_total\{identity="broker\.test"\} 0$/m);
    expect((await fetch(`http://127.0.0.1:${metrics.port}/nope`)).status).toBe(404);

    await sup.stop();
    const down = await scrape();
    expect(down).toMatch(/^chorus_broker_up\{identity="broker\.test"\} 0$/m);
    expect(down).not.toMatch(/^choria_network_connections\{/m);
  });

  it("counts restarts", async () => {
    const source = { monitorUrl: "http://127.0.0.1:1", up: false, restarts: 0 };
    const m = new BrokerMetrics({ port: 0, identity: "x", source });
    source.restarts = 3;
    expect(await m.render()).toMatch(/^chorus_broker_restarts_total\{identity="x"\} 3$/m);
    source.restarts = 4;
    expect(await m.render()).toMatch(/^chorus_broker_restarts_total\{identity="x"\} 4$/m);
  });

  it("serves the adapters' metrics beside the broker's", async () => {
    const adapters = new Registry();
    new Counter({ name: "choria_adapter_test_total", help: "t", registers: [adapters] }).inc(7);
    const source = {
      monitorUrl: "http://127.0.0.1:1",
      up: false,
      restarts: 0,
      adapters: { registry: adapters },
    };
    const m = new BrokerMetrics({ port: 0, identity: "x", source });
    const text = await m.render();
    expect(text).toMatch(/^choria_adapter_test_total 7$/m);
    expect(text).toMatch(/^chorus_broker_restarts_total\{identity="x"\} 0$/m);
  });
});
