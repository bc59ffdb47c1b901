// Shared helpers for the benchmark: statistics, /proc readers, the secured broker,
// raw NATS connections with the same credentials Chorus uses, and child processes.
import { fork } from "node:child_process";
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { connect, jwtAuthenticator } from "@nats-io/transport-node";
import { BrokerSupervisor, brokerSettings, createDevSetup, loadConfig, security } from "../dist/index.js";
import { clientSettings, serverSettings } from "../dist/core/config/index.js";

export const now = () => performance.now();
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function summarize(xs) {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return { median: NaN, min: NaN, max: NaN, n: 0 };
  const median = n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
  return { median, min: s[0], max: s[n - 1], n };
}

/** RSS and peak RSS of a process, MiB (includes all its threads). */
export function procMem(pid = process.pid) {
  try {
    const s = readFileSync(`/proc/${pid}/status`, "utf8");
    const get = (k) => {
      const m = s.match(new RegExp(`^${k}:\\s+(\\d+) kB`, "m"));
      return m ? Number(m[1]) / 1024 : NaN;
    };
    return { rss: get("VmRSS"), hwm: get("VmHWM") };
  } catch {
    return { rss: NaN, hwm: NaN };
  }
}

/** CPU ms (user + system, all threads) a process has used so far, from /proc. */
export function procCpuMs(pid = process.pid) {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = st.slice(st.lastIndexOf(")") + 2).split(" ");
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // CLK_TCK is 100 on Linux
  } catch {
    return NaN;
  }
}

export function loadavg() {
  try {
    return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).map(Number);
  } catch {
    return [NaN, NaN, NaN];
  }
}

/** createDevSetup + a supervised nats-server with TLS and JWT auth, as the tests use. */
export async function startSecuredBroker(dir, port) {
  const setup = await createDevSetup({
    dir,
    brokerPort: port,
    force: true,
    serverIdentities: ["bench1.example.net"],
  });
  const broker = new BrokerSupervisor({ settings: brokerSettings(loadConfig(setup.brokerConfig)) });
  await broker.start();
  return { setup, broker };
}

/** Credentials (servers, TLS CA, NATS JWT, nkey seed) from a Chorus config, for raw connections. */
export function rawCredentials(configFile, kind) {
  const cfg = loadConfig(configFile);
  const s = kind === "client" ? clientSettings(cfg) : serverSettings(cfg);
  const kp = security.loadSeedFile(s.seedFile);
  const natsJwt = readFileSync(s.natsJwtFile, "utf8").trim();
  return {
    servers: s.middlewareHosts,
    caFile: s.caFile,
    natsJwt,
    seed: Array.from(security.nkeySeedFromEd25519Seed(kp.seedHex, "user")),
    collective: s.mainCollective,
  };
}

/** A plain @nats-io/transport-node connection: no Chorus code on the message path. */
export function rawConnect(cred, name, extra = {}) {
  return connect({
    servers: cred.servers,
    name,
    tls: cred.caFile ? { caFile: cred.caFile } : null,
    authenticator: jwtAuthenticator(cred.natsJwt, Uint8Array.from(cred.seed)),
    maxReconnectAttempts: 0,
    ...extra,
  });
}

/**
 * A child process speaking a tiny IPC protocol: send({cmd,...}) resolves with the
 * child's answer carrying the same id.
 */
export function startChild(script, args = [], execArgv = []) {
  const child = fork(new URL(script, import.meta.url), args, {
    execArgv,
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  let seq = 0;
  const waiting = new Map();
  child.on("message", (m) => {
    const w = waiting.get(m.id);
    if (w) {
      waiting.delete(m.id);
      if (m.error) w.reject(new Error(m.error));
      else w.resolve(m);
    }
  });
  const exited = new Promise((r) => child.once("exit", r));
  child.once("exit", (code) => {
    for (const w of waiting.values()) w.reject(new Error(`${script} exited (${code})`));
    waiting.clear();
  });
  return {
    pid: child.pid,
    send(cmd, body = {}, timeoutMs = 600_000) {
      const id = ++seq;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiting.delete(id);
          reject(new Error(`${script}: ${cmd} timed out`));
        }, timeoutMs);
        waiting.set(id, {
          resolve: (v) => (clearTimeout(timer), resolve(v)),
          reject: (e) => (clearTimeout(timer), reject(e)),
        });
        child.send({ id, cmd, ...body });
      });
    },
    async stop() {
      if (child.exitCode !== null) return;
      try {
        await this.send("stop", {}, 30_000);
      } catch {
        child.kill("SIGKILL");
      }
      await exited;
    },
  };
}

/** Child-side IPC loop: handlers[cmd](msg) returns the answer body. */
export function serveParent(handlers) {
  process.on("message", async (m) => {
    try {
      const out = (await handlers[m.cmd]?.(m)) ?? {};
      process.send({ id: m.id, ...out });
      if (m.cmd === "stop") setTimeout(() => process.exit(0), 50);
    } catch (err) {
      process.send({ id: m.id, error: err?.stack ?? String(err) });
    }
  });
}
