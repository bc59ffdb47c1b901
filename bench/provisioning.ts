// Provisioning throughput: nodes enrolled per minute by the provisioner (embedded, as
// `chorus provisioner run` runs it) with the emulator in provisioning mode, for the
// ed25519 flow and the x509 flow (CSRs signed by a core/ca store), against the same-run
// raw baseline: per node the same number of request/replies the flow makes, to a
// responder that does no work, on the same broker, with the same concurrency.
// Not part of the tests.
// Run: bench/provisioning.sh [--nodes 2000] [--x509-nodes 100] [--runs 3] [--workers 64]
// A node counts as enrolled once it answers in the main collective with its new
// credential; the clock runs from the emulator's start (its startup events) to the last.
// Profile with BENCH_NODE_FLAGS="--cpu-prof --cpu-prof-dir=DIR" (one file per thread).
import { readFileSync, rmSync, writeFileSync, mkdtempSync } from "node:fs";
import { webcrypto } from "node:crypto";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { pino } from "pino";
import { stringify, parse } from "yaml";
import { Emulator, type ProvisioningStats } from "../src/apps/emulator/index.js";
import { createDevSetup, type ProvisioningDevFiles } from "../src/apps/setup/index.js";
import { BrokerSupervisor, brokerSettings, freeLoopbackPort } from "../src/broker/index.js";
import { CertificateAuthority } from "../src/core/ca/index.js";
import { loadConfig } from "../src/core/config/index.js";
import { closeNats, connectNats, type NatsConnection } from "../src/core/connector/index.js";
import { decodeTokenUnverified, loadSeedFile, nkeySeedToEd25519Seed } from "../src/core/security/index.js";
import { ProvisionerService, loadProvisionerConfig } from "../src/services/provisioner/index.js";

const { values: opt } = parseArgs({
  options: {
    nodes: { type: "string", default: "2000" },
    "x509-nodes": { type: "string", default: "100" },
    runs: { type: "string", default: "3" },
    // nodes the provisioner works on at once (Choria's `workers`)
    workers: { type: "string", default: "64" },
    // emulator worker threads (default: the emulator's own choice)
    "emulator-workers": { type: "string" },
    "skip-x509": { type: "boolean", default: false },
  },
});
const NODES = Number(opt.nodes);
const X509_NODES = Number(opt["x509-nodes"]);
const RUNS = Number(opt.runs);
const WORKERS = Number(opt.workers);
const EM_WORKERS = opt["emulator-workers"] === undefined ? undefined : Number(opt["emulator-workers"]);
// choria_provision and rpcutil calls per node: jwt, gen25519, inventory, (gencsr), jwt, configure, restart
const RPCS = { ed25519: 6, x509: 7 } as const;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const perMin = (nodes: number, ms: number) => (nodes / ms) * 60_000;
const fmt = (x: number) => Math.round(x).toLocaleString("en");
const log = pino({ level: process.env.BENCH_LOG ?? "error" }, pino.destination(2));

/** CPU seconds of a process from /proc (user + system), for the broker's share. */
function procCpuS(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return 0;
  }
}

interface Fleet {
  dir: string;
  setup: Awaited<ReturnType<typeof createDevSetup>>;
  files: ProvisioningDevFiles;
  broker: BrokerSupervisor;
  caDir: string;
}

async function startFleet(): Promise<Fleet> {
  const dir = mkdtempSync(join(tmpdir(), "chorus-bench-prov-"));
  const setup = await createDevSetup({
    dir,
    brokerPort: await freeLoopbackPort(),
    force: true,
    serverIdentities: [],
    provisioning: true,
  });
  const broker = new BrokerSupervisor({
    settings: brokerSettings(loadConfig(setup.brokerConfig)),
    logger: (level, line) => {
      if (level === "error" || level === "fatal") process.stderr.write(`nats-server: ${line}\n`);
    },
  });
  await broker.start();
  const caDir = join(dir, "node-ca");
  await CertificateAuthority.init(caDir, {
    algorithm: "rsa",
    cn: "Chorus bench node CA",
    rootValidityDays: 365,
    intermediateValidityDays: 180,
  });
  return { dir, setup, files: setup.provisioning as ProvisioningDevFiles, broker, caDir };
}

let configs = 0;

function provisionerConfig(f: Fleet, flow: "ed25519" | "x509"): string {
  const base = parse(readFileSync(f.files.serviceConfig, "utf8")) as Record<string, unknown>;
  const cfg: Record<string, unknown> = {
    ...base,
    loglevel: "warn",
    workers: WORKERS,
    // startup events drive it; discovery is the fallback for a lost event
    interval: "20s",
    rpc_timeout: "20s",
    queue_ack_wait: "60s",
    leader_election: false,
    default_configuration: { "plugin.security.choria.ca": f.setup.caFile },
    ...(flow === "x509" && { features: { pki: true, ed25519: true }, ca: f.caDir }),
  };
  // a helper is a process per node: measured separately, not here
  delete cfg.helper;
  delete cfg.logfile;
  const file = join(f.dir, `provisioner-${++configs}.yaml`);
  writeFileSync(file, stringify(cfg));
  return file;
}

interface FlowResult {
  ms: number;
  /** from the emulator being up (every startup event out) to the last node enrolled */
  readyMs: number;
  /** event loop busy share: this thread (provisioner), and each emulator worker thread */
  mainLoad: number;
  workerLoad: number[];
  /** emulator start (worker threads, node state, startup events) */
  startMs: number;
  stats: ProvisioningStats;
  /** RPCs that failed or went unanswered (each retried) */
  rpcErrors: number;
  /** node attempts that failed (the node went back to the queue) */
  failedAttempts: number;
  cpuS: number;
  brokerCpuS: number;
}

let nextIndex = 1;

async function rpcErrors(p: ProvisionerService): Promise<number> {
  let n = 0;
  for (const rpc of ["jwt", "gen25519", "inventory", "gencsr", "configure", "restart"])
    n += await p.metrics.value("choria_provisioner_rpc_errors", { rpc });
  return n;
}

/** One provisioner, one emulator, `nodes` enrolled; fresh names each time (the queue deduplicates by name). */
async function runFlow(f: Fleet, flow: "ed25519" | "x509", nodes: number): Promise<FlowResult> {
  const p = new ProvisionerService(loadProvisionerConfig(provisionerConfig(f, flow)), {
    logger: log.child({ c: "provisioner" }),
    rpcBackoffMs: 200,
    stopGraceMs: 5000,
  });
  await p.start();
  const em = Emulator.fromConfigFile(f.setup.emulatorConfig, {
    nodes,
    firstIndex: nextIndex,
    ...(EM_WORKERS !== undefined && { workers: EM_WORKERS }),
    logger: log.child({ c: "emulator" }),
    // the restart at once: Choria's 2 s wait would only add a constant to every run
    provisioning: { tokenFile: f.files.tokenFile, tuning: { minDelayMs: 0, splayS: 0 } },
  });
  nextIndex += nodes;
  const cpu0 = process.cpuUsage();
  const b0 = procCpuS(f.broker.pid);
  const elu0 = performance.eventLoopUtilization();
  const t0 = performance.now();
  let stats: ProvisioningStats | undefined;
  try {
    await em.start();
    const started = performance.now();
    const deadline = started + Math.max(120_000, nodes * 200);
    for (;;) {
      stats = await em.provisioningStats();
      if (stats && stats.normal + stats.failed >= nodes) break;
      if (performance.now() > deadline)
        throw new Error(
          `${flow}: only ${stats?.normal ?? 0}/${nodes} enrolled in time: ${JSON.stringify(stats)}`,
        );
      await new Promise((r) => setTimeout(r, 25));
    }
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    const result: FlowResult = {
      ms,
      readyMs: performance.now() - started,
      mainLoad: performance.eventLoopUtilization(elu0).utilization,
      workerLoad: em.workerUtilization(),
      startMs: started - t0,
      stats: stats as ProvisioningStats,
      rpcErrors: await rpcErrors(p),
      failedAttempts: await p.metrics.value("choria_provisioner_provision_errors"),
      cpuS: (cpu.user + cpu.system) / 1e6,
      brokerCpuS: procCpuS(f.broker.pid) - b0,
    };
    if (result.stats.failed > 0) throw new Error(`${flow}: ${result.stats.failed} nodes failed to restart`);
    return result;
  } finally {
    await em.stop();
    await p.stop();
  }
}

interface RawPair {
  asker: NatsConnection;
  responder: NatsConnection;
}

/** The provisioner's and the nodes' PROVISIONING-account users: the same path the flow's RPCs take. */
async function rawPair(f: Fleet): Promise<RawPair> {
  const token = decodeTokenUnverified(readFileSync(f.files.tokenFile, "utf8").trim());
  const asker = await connectNats({
    servers: [f.setup.brokerUrl],
    name: "bench-raw-asker",
    caFile: f.setup.caFile,
    seedHex: loadSeedFile(f.files.credential.seedFile).seedHex,
    natsJwt: readFileSync(f.files.provisioningNatsJwtFile, "utf8").trim(),
    inboxPrefix: "provisioning.reply.bench",
  });
  const responder = await connectNats({
    servers: [f.setup.brokerUrl],
    name: "bench-raw-responder",
    caFile: f.setup.caFile,
    seedHex: nkeySeedToEd25519Seed(token.chpwd as string),
    natsJwt: token.chusr as string,
  });
  // answers at once: the work a node does is what the flow adds on top
  const reply = Buffer.alloc(1024, 0x61);
  responder.subscribe("provisioning.node.*", {
    callback: (err, m) => {
      if (!err) m.respond(reply);
    },
  });
  await responder.flush();
  return { asker, responder };
}

/** `nodes` nodes, `rpcs` serial request/replies each, WORKERS nodes at a time. */
async function runRaw(pair: RawPair, nodes: number, rpcs: number): Promise<number> {
  // about the size of a signed choria_provision request with its caller token
  const payload = Buffer.alloc(2048, 0x62);
  let next = 0;
  const worker = async () => {
    for (let n = next++; n < nodes; n = next++) {
      for (let r = 0; r < rpcs; r++)
        await pair.asker.request(`provisioning.node.raw-${n}`, payload, { timeout: 20_000 });
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: Math.min(WORKERS, nodes) }, worker));
  return performance.now() - t0;
}

/** RSA-2048 keys a second on this machine, as gencsr makes them (WebCrypto, every core). */
async function rsaKeysPerSecond(seconds = 3): Promise<number> {
  const alg = {
    name: "RSASSA-PKCS1-v1_5",
    modulusLength: 2048,
    publicExponent: new Uint8Array([1, 0, 1]),
    hash: "SHA-256",
  };
  const end = performance.now() + seconds * 1000;
  let n = 0;
  const one = async () => {
    while (performance.now() < end) {
      await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"]);
      n++;
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: 8 }, one));
  return (n / (performance.now() - t0)) * 1000;
}

/** The run whose time is the median (its figures go with the median rate). */
const medianRun = (rs: FlowResult[]): FlowResult =>
  [...rs].sort((a, b) => a.ms - b.ms)[Math.floor(rs.length / 2)] as FlowResult;

async function main(): Promise<void> {
  const f = await startFleet();
  const pair = await rawPair(f);
  const rows: Record<string, number[]> = { raw6: [], ed: [], raw7: [], x509: [] };
  const flows: Record<string, FlowResult[]> = { ed: [], x509: [] };
  try {
    // warm up: JIT, the queue stream, TLS sessions
    await runRaw(pair, 200, RPCS.ed25519);
    await runFlow(f, "ed25519", Math.min(200, NODES));
    for (let run = 0; run < RUNS; run++) {
      rows.raw6!.push(await runRaw(pair, NODES, RPCS.ed25519));
      const ed = await runFlow(f, "ed25519", NODES);
      flows.ed!.push(ed);
      rows.ed!.push(ed.ms);
      if (!opt["skip-x509"]) {
        rows.raw7!.push(await runRaw(pair, X509_NODES, RPCS.x509));
        const x = await runFlow(f, "x509", X509_NODES);
        flows.x509!.push(x);
        rows.x509!.push(x.ms);
      }
      process.stderr.write(`run ${run + 1}/${RUNS} done\n`);
    }
  } finally {
    await closeNats(pair.asker);
    await closeNats(pair.responder);
  }
  const rsa = opt["skip-x509"] ? 0 : await rsaKeysPerSecond();
  await f.broker.stop();
  rmSync(f.dir, { recursive: true, force: true });

  const line = (name: string, nodes: number, ms: number[], base?: number[]) => {
    const rates = ms.map((m) => perMin(nodes, m));
    const ratio = base ? `  ratio to raw ${(median(rates) / perMin(nodes, median(base))).toFixed(3)}` : "";
    console.log(
      `${name.padEnd(52)} ${fmt(median(rates)).padStart(8)} nodes/min  (${fmt(Math.min(...rates))}-${fmt(Math.max(...rates))})  ${fmt(median(ms))} ms${ratio}`,
    );
  };
  const cores = availableParallelism();
  const detail = (name: string, nodes: number, rs: FlowResult[]) => {
    const mid = medianRun(rs);
    const s = mid.stats;
    const actions = Object.entries(s.actionMs)
      .map(([k, v]) => `${k} ${(v / (s.calls[k] ?? 1)).toFixed(1)}`)
      .join(", ");
    const pct = (x: number) => `${Math.round(100 * x)}%`;
    console.log(
      `  ${name} median run: emulator start ${fmt(mid.startMs)} ms (${fmt(perMin(nodes, mid.readyMs))} nodes/min counted from the emulator being up); this process ${mid.cpuS.toFixed(1)} CPU s, nats-server ${mid.brokerCpuS.toFixed(1)} CPU s over ${(mid.ms / 1000).toFixed(1)} s wall (${cores} cores = ${((cores * mid.ms) / 1000).toFixed(1)} CPU s)`,
    );
    console.log(
      `  ${name} event loops busy: main thread (provisioner) ${pct(mid.mainLoad)}, emulator ${mid.workerLoad.length > 0 ? `workers ${mid.workerLoad.map(pct).join(" ")}` : "in the main thread"}`,
    );
    console.log(
      `  ${name} calls: ${JSON.stringify(s.calls)}; configured more than once: ${s.reconfigured.length}; provisioner RPC errors ${mid.rpcErrors}, failed attempts ${mid.failedAttempts}`,
    );
    console.log(`  ${name} node-side ms per call (wall, includes waiting): ${actions}`);
  };

  console.log(
    `Provisioning bench: ${fmt(NODES)} nodes (ed25519 flow), ${fmt(X509_NODES)} nodes (x509 flow), ${RUNS} runs, provisioner workers ${WORKERS}; medians (min-max)`,
  );
  line(`raw baseline: ${RPCS.ed25519} request/replies per node, no work`, NODES, rows.raw6!);
  line("ed25519 flow (jwt gen25519 inventory jwt configure restart)", NODES, rows.ed!, rows.raw6);
  detail("ed25519", NODES, flows.ed!);
  if (!opt["skip-x509"]) {
    line(`raw baseline: ${RPCS.x509} request/replies per node, no work`, X509_NODES, rows.raw7!);
    line("x509 flow (+ gencsr, CSR signed by a core/ca store)", X509_NODES, rows.x509!, rows.raw7);
    detail("x509", X509_NODES, flows.x509!);
    const x = medianRun(flows.x509!);
    const gencsrMs = x.stats.actionMs.gencsr ?? 0;
    const allMs = Object.values(x.stats.actionMs).reduce((a, b) => a + b, 0);
    console.log(
      `RSA-2048 key generation here: ${rsa.toFixed(1)} keys/s on all cores (WebCrypto), so the x509 flow cannot pass ${fmt(rsa * 60)} nodes/min; gencsr is ${((100 * gencsrMs) / Math.max(1, allMs)).toFixed(0)}% of the node-side action time`,
    );
  }
  const ed = perMin(NODES, median(rows.ed!));
  console.log(
    `goal: 10,000 nodes/min on this machine (Choria's provisioner: about 1,000): ed25519 flow ${ed >= 10_000 ? "meets it" : "misses it"} at ${fmt(ed)} nodes/min`,
  );
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
