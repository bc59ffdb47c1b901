// Ping of N protocol v1 (x509, RSA) emulated nodes against the same-run raw NATS
// baseline (N plain subscriptions answering a reply of the same size) and against N
// protocol v2 (ed25519) nodes, all on one mTLS nats-server, alternating per run. Each
// fleet lives in its own collective so a ping reaches only its own nodes. Figures: time
// from publishing the ping to the last of the N replies, and the CPU this process (client
// plus emulated nodes, all threads) spent per reply; medians of the runs, and ratios.
// Not part of the tests. Run: bench/v1.sh [--nodes 10000] [--runs 5]
import { spawn, type ChildProcess } from "node:child_process";
import { generateKeyPairSync, sign, verify } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { pino } from "pino";
import { Emulator } from "../src/apps/emulator/index.js";
import { findNatsServer, freeLoopbackPort } from "../src/broker/index.js";
import { Client } from "../src/client/index.js";
import { closeNats, connectNats, type NatsConnection } from "../src/core/connector/index.js";
import {
  ChoriaSecurity,
  FileSecurity,
  createCA,
  createClientToken,
  createServerToken,
  generateKeyPair,
  issueCert,
  orgIssuer,
  writeSeedFile,
} from "../src/core/security/index.js";

const { values: opt } = parseArgs({
  options: { nodes: { type: "string", default: "10000" }, runs: { type: "string", default: "5" } },
});
const NODES = Number(opt.nodes);
const RUNS = Number(opt.runs);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const quiet = pino({ level: process.env.BENCH_LOG ?? "error" }, pino.destination(2));
const dir = mkdtempSync(join(tmpdir(), "chorus-bench-v1-"));
const f = (n: string) => join(dir, n);

async function certs(): Promise<void> {
  const ca = await createCA("bench ca", 2);
  writeFileSync(f("ca.pem"), ca.certPem);
  const write = async (name: string, cn: string, usage: "both" | "client", rsa: boolean) => {
    const p = await issueCert(ca, cn, { localhost: true }, 2, usage, { rsa });
    writeFileSync(f(`${name}.pem`), p.certPem);
    writeFileSync(f(`${name}.key`), p.keyPem, { mode: 0o600 });
  };
  await write("broker", "broker", "both", false);
  await write("client", "bench.mcollective", "client", true);
  await write("emulator", "emulator.mcollective", "both", true);
}

async function startBroker(): Promise<{ url: string; proc: ChildProcess }> {
  const port = await freeLoopbackPort();
  const monitor = await freeLoopbackPort();
  writeFileSync(
    f("nats.conf"),
    `listen: "127.0.0.1:${port}"\nhttp: "127.0.0.1:${monitor}"\nmax_payload: 4MB\n` +
      `tls { cert_file: "${f("broker.pem")}", key_file: "${f("broker.key")}", ca_file: "${f("ca.pem")}", verify: true }\n`,
  );
  const proc = spawn(findNatsServer(), ["-c", f("nats.conf")], { stdio: "ignore" });
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${monitor}/healthz`)).ok) break;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { url: `tls://127.0.0.1:${port}`, proc };
}

const tls = () => ({ caFile: f("ca.pem"), certFile: f("emulator.pem"), keyFile: f("emulator.key") });

type Kind = "raw" | "v1" | "v2" | "v2u";

interface Sample {
  ms: number;
  cpuUs: number;
}

/** ms from the ping to the last reply, and this process's CPU for it; throws unless all N answered. */
async function chorusPing(c: Client, name: string): Promise<Sample> {
  const cpu = process.cpuUsage();
  const r = await c.ping({ windowed: true, windowMs: 500, timeoutMs: 30_000 });
  const used = process.cpuUsage(cpu);
  if (r.replies.length !== NODES) throw new Error(`${name}: ${r.replies.length} of ${NODES} replies`);
  return { ms: Math.max(...r.replies.map((x) => x.ms)), cpuUs: used.user + used.system };
}

/** The raw baseline: N subscriptions answering a fixed reply of the v1 reply's size. */
async function rawFleet(url: string, replyBytes: number): Promise<NatsConnection[]> {
  const conns = await Promise.all(
    Array.from({ length: 10 }, (_, k) => connectNats({ servers: [url], name: `raw-${k}`, ...tls() })),
  );
  const reply = new Uint8Array(replyBytes).fill(120);
  for (let i = 0; i < NODES; i++) {
    const nc = conns[i % conns.length] as NatsConnection;
    nc.subscribe("raw.ping", {
      callback: (err, m) => {
        if (!err && m.reply) nc.publish(m.reply, reply);
      },
    });
  }
  await Promise.all(conns.map((c) => c.flush()));
  return conns;
}

async function rawPing(nc: NatsConnection): Promise<Sample> {
  const cpu = process.cpuUsage();
  const inbox = `raw.reply.${Math.random().toString(36).slice(2)}`;
  const t0 = performance.now();
  let last = 0;
  let n = 0;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`raw: ${n} of ${NODES} replies`)), 30_000);
    nc.subscribe(inbox, {
      max: NODES,
      callback: () => {
        last = performance.now();
        if (++n === NODES) {
          clearTimeout(timer);
          resolve();
        }
      },
    });
    nc.publish("raw.ping", new Uint8Array(64), { reply: inbox });
  });
  // the same 500 ms quiet window the Chorus pings wait out, so CPU is compared like for like
  await new Promise((r) => setTimeout(r, 500));
  const used = process.cpuUsage(cpu);
  return { ms: last - t0, cpuUs: used.user + used.system };
}

/** Plain crypto in the same run: what one RSA-2048 and one ed25519 sign and verify cost here. */
function cryptoBaseline(): string[] {
  const per = (n: number, fn: () => unknown) => {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) fn();
    return ((performance.now() - t0) * 1000) / n;
  };
  const data = Buffer.alloc(400, 7);
  const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const ed = generateKeyPairSync("ed25519");
  const rsaSig = sign("sha256", data, rsa.privateKey);
  const edSig = sign(null, data, ed.privateKey);
  const rows: [string, number, number][] = [
    [
      "RSA-2048 PKCS#1 v1.5 SHA-256",
      per(300, () => sign("sha256", data, rsa.privateKey)),
      per(3000, () => verify("sha256", data, rsa.publicKey, rsaSig)),
    ],
    [
      "ed25519",
      per(3000, () => sign(null, data, ed.privateKey)),
      per(3000, () => verify(null, data, ed.publicKey, edSig)),
    ],
  ];
  return [
    "| plain crypto, same run | sign (µs) | verify (µs) |",
    "|---|---:|---:|",
    ...rows.map(([k, sg, vf]) => `| ${k} | ${sg.toFixed(1)} | ${vf.toFixed(1)} |`),
  ];
}

async function main(): Promise<void> {
  await certs();
  const broker = await startBroker();
  const emulators: Emulator[] = [];
  const clients: Client[] = [];
  let raw: NatsConnection[] = [];
  try {
    // v2 credentials: an org issuer, the emulator's server token, a client token
    const org = orgIssuer(generateKeyPair());
    const ekp = generateKeyPair();
    writeSeedFile(f("emu2.seed"), ekp);
    writeFileSync(
      f("emu2.jwt"),
      createServerToken(
        { identity: "emu2", collectives: ["v2", "v2u"], publicKeyHex: ekp.publicHex, validityS: 7200 },
        org,
      ),
    );
    const ckp = generateKeyPair();
    writeSeedFile(f("client2.seed"), ckp);
    writeFileSync(
      f("client2.jwt"),
      createClientToken(
        {
          callerid: "choria=bench.mcollective",
          publicKeyHex: ckp.publicHex,
          validityS: 7200,
          permissions: { fleet_management: true },
        },
        org,
      ),
    );
    const issuers = [org.publicHex];
    process.stderr.write(`starting ${NODES} v1 nodes and ${NODES} v2 nodes...\n`);
    const v1 = new Emulator({
      nodes: NODES,
      collective: "v1",
      servers: [broker.url],
      caFile: f("ca.pem"),
      x509: { certFile: f("emulator.pem"), keyFile: f("emulator.key"), caFile: f("ca.pem") },
      logger: quiet,
      jobs: false,
    });
    const v2Files = {
      seedFile: f("emu2.seed"),
      tokenFile: f("emu2.jwt"),
      issuers,
      certFile: f("emulator.pem"),
      keyFile: f("emulator.key"),
    };
    const v2sec = new ChoriaSecurity(v2Files);
    const v2Fleet = (collective: string, signReplies: boolean) =>
      new Emulator({
        nodes: NODES,
        collective,
        servers: [broker.url],
        caFile: f("ca.pem"),
        security: v2sec,
        securityFiles: v2Files,
        issuer: org,
        signReplies,
        logger: quiet,
        jobs: false,
      });
    const v2 = v2Fleet("v2", true);
    // v2 with unsigned replies, as v1's: separates the reply signature from the rest of v2
    const v2u = v2Fleet("v2u", false);
    emulators.push(v1, v2, v2u);
    await v1.start();
    await v2.start();
    await v2u.start();
    const x509 = new FileSecurity({
      certFile: f("client.pem"),
      keyFile: f("client.key"),
      caFile: f("ca.pem"),
    });
    const c1 = new Client({ x509, servers: [broker.url], collective: "v1", logger: quiet });
    const v2Client = (collective: string) =>
      new Client({
        security: new ChoriaSecurity({
          seedFile: f("client2.seed"),
          tokenFile: f("client2.jwt"),
          issuers,
          certFile: f("client.pem"),
          keyFile: f("client.key"),
          caFile: f("ca.pem"),
        }),
        servers: [broker.url],
        collective,
        logger: quiet,
      });
    const c2 = v2Client("v2");
    const c2u = v2Client("v2u");
    clients.push(c1, c2, c2u);
    // a v1 rpcutil ping reply is about this big on the wire
    raw = await rawFleet(broker.url, 420);
    const rawClient = raw[0] as NatsConnection;
    // warm-up: connections, subscriptions, JIT, the nodes' caller-certificate caches
    await rawPing(rawClient);
    await chorusPing(c1, "v1");
    await chorusPing(c2, "v2");
    await chorusPing(c2u, "v2u");
    const s: Record<Kind, Sample[]> = { raw: [], v1: [], v2: [], v2u: [] };
    for (let run = 0; run < RUNS; run++) {
      const order: Kind[] = run % 2 === 0 ? ["raw", "v1", "v2", "v2u"] : ["v2u", "v2", "v1", "raw"];
      for (const k of order) {
        const x =
          k === "raw" ? await rawPing(rawClient) : await chorusPing({ v1: c1, v2: c2, v2u: c2u }[k], k);
        s[k].push(x);
        process.stderr.write(
          `run ${run + 1} ${k}: ${x.ms.toFixed(0)} ms, ${(x.cpuUs / NODES).toFixed(1)} µs CPU/reply\n`,
        );
      }
    }
    const ms = (k: Kind) => median(s[k].map((x) => x.ms));
    const cpu = (k: Kind) => median(s[k].map((x) => x.cpuUs)) / NODES;
    const row = (k: Kind, what: string) =>
      `| ${what} | ${ms(k).toFixed(0)} | ${(ms(k) / ms("raw")).toFixed(2)} | ${cpu(k).toFixed(1)} | ${(cpu(k) / cpu("raw")).toFixed(2)} |`;
    process.stdout.write(
      [
        `ping of ${NODES} emulated nodes on one mTLS nats-server, medians of ${RUNS} runs (${new Date().toISOString().slice(0, 10)})`,
        "",
        "| fleet | time to last reply (ms) | × raw | CPU per reply (µs, client + nodes) | × raw |",
        "|---|---:|---:|---:|---:|",
        row("raw", "raw NATS subscriptions"),
        row("v1", "protocol v1 (x509, RSA-2048)"),
        row("v2", "protocol v2 (ed25519 + JWT), signed replies (default)"),
        row("v2u", "protocol v2, sign_replies=false"),
        "",
        `v1 / v2: time ${(ms("v1") / ms("v2")).toFixed(2)}, CPU per reply ${(cpu("v1") / cpu("v2")).toFixed(2)}`,
        "",
        ...cryptoBaseline(),
        "",
      ].join("\n"),
    );
  } finally {
    for (const c of clients) await c.close();
    for (const c of raw) await closeNats(c);
    for (const e of emulators) await e.stop();
    broker.proc.kill("SIGTERM");
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
