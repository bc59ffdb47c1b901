// Added latency of federation: the same rpcutil ping to one emulated node, sent directly
// on the collective's broker and through one federation broker (a `chorus federation run`
// equivalent in a child process) from a client on the federation network, alternating,
// in the same run. Figures: per-request median and p99 both ways and their difference
// (a round trip crosses the federation broker twice: request and reply), the broker's own
// processing time per message (choria_federation_time), and a 1 000-node direct request
// both ways (time to the last reply, replies/s). The raw baseline, measured in the same
// run: plain NATS request/reply of the same sizes on two more TLS brokers, directly and
// through a plain relay process (subscribe, publish, rewrite the reply subject: the least
// any federation broker must do), so the extra hops' own cost is known and what Chorus
// adds on top of them is the difference. Not part of the tests.
// Run: bench/federation.sh [--nodes 1000] [--requests 1000] [--runs 5]
import { spawn, type ChildProcess } from "node:child_process";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { join } from "node:path";
import { pino } from "pino";
import { brokerSettings } from "../src/broker/index.js";
import { Client } from "../src/client/index.js";
import { closeNats, connectNats, type NatsConnection } from "../src/core/connector/index.js";
import { loadConfig } from "../src/core/config/index.js";
import { encodeTransport } from "../src/core/protocol/index.js";
import {
  FederationBroker,
  federationTrace,
  transformReply,
  transformRequest,
} from "../src/services/federation/index.js";
import { freePort, startNats, type TestNats } from "../test/helpers/nats.js";
import { startFederatedNetworks, type FederatedNetworks } from "../test/services/federation/fixture.js";

const { values: opt } = parseArgs({
  options: {
    nodes: { type: "string", default: "1000" },
    requests: { type: "string", default: "1000" },
    runs: { type: "string", default: "5" },
    child: { type: "string" },
    relay: { type: "string" },
  },
});
const quiet = pino({ level: process.env.BENCH_LOG ?? "silent" });

/** The federation broker in its own process, as in production. */
async function child(config: string): Promise<void> {
  const fb = FederationBroker.fromFile(config, { logger: pino({ level: "error" }, pino.destination(2)) });
  await fb.start();
  process.stdout.write("ready\n");
  process.once("SIGTERM", () => void fb.stop().then(() => process.exit(0)));
}

/**
 * The raw baseline's relay, in its own process like the federation broker: requests from
 * the front broker go to the back broker with the reply subject wrapped, replies come back
 * unwrapped. No decoding, no checks. `spec` is "frontUrl backUrl caFile".
 */
async function relay(spec: string): Promise<void> {
  const [front, back, caFile] = spec.split(" ") as [string, string, string];
  const f = await connectNats({ servers: [front], caFile, name: "relay-front" });
  const b = await connectNats({ servers: [back], caFile, name: "relay-back" });
  f.subscribe("raw.fed.request", {
    callback: (_e, m) => {
      if (m.reply) b.publish("raw.node", m.data, { reply: `raw.back.${m.reply}` });
    },
  });
  b.subscribe("raw.back.>", {
    callback: (_e, m) => f.publish(m.subject.slice("raw.back.".length), m.data),
  });
  await Promise.all([f.flush(), b.flush()]);
  process.stdout.write("ready\n");
  process.once("SIGTERM", () => void Promise.all([closeNats(f), closeNats(b)]).then(() => process.exit(0)));
}

function spawnReady(args: string[]): Promise<ChildProcess> {
  const flags = process.env.BENCH_CHILD_FLAGS?.split(" ").filter((f) => f !== "") ?? [];
  const proc = spawn(process.execPath, [...flags, process.argv[1] as string, ...args], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise<ChildProcess>((resolve, reject) => {
    proc.stdout?.on("data", (b: Buffer) => {
      if (b.toString().includes("ready")) resolve(proc);
    });
    proc.once("exit", (code) => reject(new Error(`${args[0]} child exited ${code}`)));
  });
}

interface RawBaseline {
  direct: NatsConnection;
  viaRelay: NatsConnection;
  stop(): Promise<void>;
}

/** Two plain TLS brokers (the setup's certificate, no auth), a responder on the back one, a relay between. */
async function rawBaseline(setupDir: string): Promise<RawBaseline> {
  const s = brokerSettings(loadConfig(join(setupDir, "broker.conf")));
  if (!s.certFile || !s.keyFile || !s.caFile) throw new Error("the setup's broker has no TLS files");
  const tls = `tls { cert_file: "${s.certFile}"\n key_file: "${s.keyFile}" }`;
  const brokers: TestNats[] = [await startNats(tls), await startNats(tls)];
  const [frontB, backB] = brokers as [TestNats, TestNats];
  const url = (b: TestNats) => `tls://127.0.0.1:${b.port}`;
  const caFile = s.caFile;
  const responder = await connectNats({ servers: [url(backB)], caFile, name: "raw-node" });
  const reply = Buffer.alloc(900, 66); // about an rpcutil ping reply
  responder.subscribe("raw.node", {
    callback: (_e, m) => {
      m.respond(reply);
    },
  });
  await responder.flush();
  const proc = await spawnReady(["--relay", `${url(frontB)} ${url(backB)} ${caFile}`]);
  const direct = await connectNats({ servers: [url(backB)], caFile, name: "raw-direct" });
  const viaRelay = await connectNats({ servers: [url(frontB)], caFile, name: "raw-front" });
  return {
    direct,
    viaRelay,
    async stop() {
      proc.kill("SIGTERM");
      await Promise.all([closeNats(direct), closeNats(viaRelay), closeNats(responder)]);
      await Promise.all(brokers.map((b) => b.stop()));
    },
  };
}

const RAW_REQUEST = Buffer.alloc(1800, 65); // about an rpcutil ping's signed request

async function rawTimed(nc: NatsConnection, subject: string): Promise<number> {
  const t0 = performance.now();
  await nc.request(subject, RAW_REQUEST, { timeout: 5000 });
  return performance.now() - t0;
}

const NODES = Number(opt.nodes);
const REQUESTS = Number(opt.requests);
const RUNS = Number(opt.runs);
const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
const pct = (xs: number[], p: number) =>
  sorted(xs)[Math.min(xs.length - 1, Math.floor(xs.length * p))] as number;
const median = (xs: number[]) => pct(xs, 0.5);

async function startBroker(net: FederatedNetworks): Promise<{ proc: ChildProcess; metrics: string }> {
  const port = await freePort();
  const cfg = net.federationConfig("east", "fed-bench", `monitor_port: ${port}`);
  const proc = await spawnReady(["--child", cfg]);
  return { proc, metrics: `http://127.0.0.1:${port}/metrics` };
}

/** choria_federation_time's sum and count over every series, and the largest series median (s). */
async function processing(url: string): Promise<{ sum: number; count: number; median: number }> {
  const text = await (await fetch(url)).text();
  let sum = 0;
  let count = 0;
  let med = 0;
  for (const line of text.split("\n")) {
    const m = /^choria_federation_time(_sum|_count)?\{([^}]*)\} (\S+)$/.exec(line);
    if (!m) continue;
    const v = Number(m[3]);
    if (m[1] === "_sum") sum += v;
    else if (m[1] === "_count") count += v;
    else if (m[2]?.includes('quantile="0.5"') && Number.isFinite(v)) med = Math.max(med, v);
  }
  return { sum, count, median: med };
}

/** µs per transform in a hot loop: the broker's CPU cost per message without waits or cold caches. */
function hotTransform(): { request: number; reply: number } {
  const inner = Buffer.alloc(1800, 65); // about an rpcutil ping's signed request
  const req = encodeTransport(inner, {
    reply: `mcollective.reply.${"0".repeat(32)}.1`,
    sender: "client.example.net",
    trace: [["nats://f:4222", "client.example.net", "nats://f:4222"]],
    federation: { request: "0123456789abcdef0123456789abcdef", targets: ["mcollective.node.n1.example.net"] },
  });
  const hop = { incoming: "nats://f:4222", processor: "fed (stages)", outgoing: "nats://c:4222" };
  const n = 20_000;
  let out: Uint8Array = req;
  let t = performance.now();
  for (let i = 0; i < n; i++) out = transformRequest(req, "east", hop).data;
  const request = ((performance.now() - t) / n) * 1000;
  t = performance.now();
  for (let i = 0; i < n; i++) transformReply(out, hop);
  return { request, reply: ((performance.now() - t) / n) * 1000 };
}

/** ms for one request to `nodes`, until every reply is in. */
async function timed(c: Client, nodes: string[]): Promise<number> {
  const t0 = performance.now();
  const r = await c.request("rpcutil", "ping", {}, { nodes, timeoutMs: 20_000 });
  const ms = performance.now() - t0;
  if (r.stats.ok !== nodes.length) throw new Error(`${r.stats.ok} of ${nodes.length} replies`);
  return ms;
}

async function main(): Promise<void> {
  process.stderr.write(`starting 3 brokers, ${NODES} emulated nodes and a federation broker...\n`);
  const net = await startFederatedNetworks({ east: NODES });
  const east = net.collectives.east;
  if (!east) throw new Error("no east collective");
  let proc: ChildProcess | undefined;
  let direct: Client | undefined;
  let fed: Client | undefined;
  let raw: RawBaseline | undefined;
  try {
    raw = await rawBaseline(net.fleet.setup.dir);
    const broker = await startBroker(net);
    proc = broker.proc;
    const metrics = broker.metrics;
    direct = await Client.fromConfigFile(net.fleet.setup.clientConfig, {
      servers: [east.url],
      logger: quiet,
    });
    fed = await Client.fromConfigFile(net.federatedClientConfig, { logger: quiet });
    const one = [east.nodes[0] as string];
    for (let i = 0; i < 100; i++) {
      await timed(direct, one);
      await timed(fed, one);
    }
    const t = await federationTrace(fed, one[0] as string);
    process.stderr.write(`trace: ${t.hops.map((h) => h.processor.split(" ")[0]).join(" → ")}\n`);
    for (let i = 0; i < 100; i++) {
      await rawTimed(raw.direct, "raw.node");
      await rawTimed(raw.viaRelay, "raw.fed.request");
    }
    const ms = {
      direct: [] as number[],
      fed: [] as number[],
      rawDirect: [] as number[],
      rawRelay: [] as number[],
    };
    const p0 = await processing(metrics);
    for (let i = 0; i < REQUESTS; i++) {
      // all four kinds interleaved, so machine noise falls on each alike
      ms.rawDirect.push(await rawTimed(raw.direct, "raw.node"));
      ms.rawRelay.push(await rawTimed(raw.viaRelay, "raw.fed.request"));
      if (i % 2 === 0) {
        ms.direct.push(await timed(direct, one));
        ms.fed.push(await timed(fed, one));
      } else {
        ms.fed.push(await timed(fed, one));
        ms.direct.push(await timed(direct, one));
      }
    }
    const p1 = await processing(metrics);
    const perMsgUs = ((p1.sum - p0.sum) / (p1.count - p0.count)) * 1e6;
    const all = { direct: [] as number[], fed: [] as number[] };
    await timed(direct, east.nodes);
    await timed(fed, east.nodes);
    const p2 = await processing(metrics);
    for (let run = 0; run < RUNS; run++) {
      for (const [name, c] of run % 2 === 0
        ? ([
            ["direct", direct],
            ["fed", fed],
          ] as const)
        : ([
            ["fed", fed],
            ["direct", direct],
          ] as const)) {
        const x = await timed(c, east.nodes);
        all[name].push(x);
        process.stderr.write(`run ${run + 1} ${name}: ${x.toFixed(0)} ms\n`);
      }
    }
    const p3 = await processing(metrics);
    const loadedUs = ((p3.sum - p2.sum) / (p3.count - p2.count)) * 1e6;
    hotTransform();
    const hot = hotTransform();
    const dm = median(ms.direct);
    const fm = median(ms.fed);
    const rd = median(ms.rawDirect);
    const rr = median(ms.rawRelay);
    const rawAdded = (rr - rd) / 2;
    const fedAdded = (fm - dm) / 2;
    const d99 = pct(ms.direct, 0.99);
    const f99 = pct(ms.fed, 0.99);
    const ad = median(all.direct);
    const af = median(all.fed);
    const lines = [
      `rpcutil ping to 1 node, ${REQUESTS} sequential requests each way (alternating):`,
      `  direct on the collective:    median ${dm.toFixed(3)} ms  p99 ${d99.toFixed(3)} ms`,
      `  through federation:          median ${fm.toFixed(3)} ms  p99 ${f99.toFixed(3)} ms`,
      `  added per round trip:        median ${(fm - dm).toFixed(3)} ms  p99 ${(f99 - d99).toFixed(3)} ms  (ratio ${(fm / dm).toFixed(2)})`,
      `  added per message (2/trip):  median ${fedAdded.toFixed(3)} ms`,
      `raw baseline, same run: plain NATS request/reply (1.8 KB / 0.9 KB) on two more TLS brokers:`,
      `  direct:                      median ${rd.toFixed(3)} ms`,
      `  through a plain relay:       median ${rr.toFixed(3)} ms`,
      `  added per message (2/trip):  median ${rawAdded.toFixed(3)} ms  (the extra hops alone)`,
      `  federation added / relay added: ${(fedAdded / rawAdded).toFixed(2)}; federation's own share per message: ${(fedAdded - rawAdded).toFixed(3)} ms`,
      `  federation broker processing per message (choria_federation_time): mean ${perMsgUs.toFixed(1)} µs, median ${(p1.median * 1e6).toFixed(1)} µs`,
      `  the same during the ${NODES}-node requests below (messages back to back): mean ${loadedUs.toFixed(1)} µs`,
      `  transform alone, hot loop in this process: request ${hot.request.toFixed(1)} µs, reply ${hot.reply.toFixed(1)} µs`,
      `rpcutil ping to all ${NODES} nodes (direct mode), median of ${RUNS} runs, to the last reply:`,
      `  direct:             ${ad.toFixed(0)} ms  (${((NODES / ad) * 1000).toFixed(0)} replies/s)`,
      `  through federation: ${af.toFixed(0)} ms  (${((NODES / af) * 1000).toFixed(0)} replies/s)`,
      `  ratio federation / direct: ${(af / ad).toFixed(2)}`,
    ];
    process.stdout.write(`${lines.join("\n")}\n`);
  } finally {
    await direct?.close();
    await fed?.close();
    await raw?.stop();
    proc?.kill("SIGTERM");
    await net.stop();
  }
}

(opt.child !== undefined ? child(opt.child) : opt.relay !== undefined ? relay(opt.relay) : main()).then(
  () => {
    if (opt.child === undefined && opt.relay === undefined) process.exit(0);
  },
  (err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
