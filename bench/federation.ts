// Added latency of federation: the same rpcutil ping to one emulated node, sent directly
// on the collective's broker and through one federation broker (a `chorus federation run`
// equivalent in a child process) from a client on the federation network, alternating,
// in the same run. Figures: per-request median and p99 both ways and their difference
// (a round trip crosses the federation broker twice: request and reply), the broker's own
// processing time per message (choria_federation_time), and a 1 000-node direct request
// both ways (time to the last reply, replies/s). Not part of the tests.
// Run: bench/federation.sh [--nodes 1000] [--requests 1000] [--runs 5]
import { spawn, type ChildProcess } from "node:child_process";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { pino } from "pino";
import { Client } from "../src/client/index.js";
import { encodeTransport } from "../src/core/protocol/index.js";
import {
  FederationBroker,
  federationTrace,
  transformReply,
  transformRequest,
} from "../src/services/federation/index.js";
import { freePort } from "../test/helpers/nats.js";
import { startFederatedNetworks, type FederatedNetworks } from "../test/services/federation/fixture.js";

const { values: opt } = parseArgs({
  options: {
    nodes: { type: "string", default: "1000" },
    requests: { type: "string", default: "1000" },
    runs: { type: "string", default: "5" },
    child: { type: "string" },
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
  const flags = process.env.BENCH_CHILD_FLAGS?.split(" ").filter((f) => f !== "") ?? [];
  const proc = spawn(process.execPath, [...flags, process.argv[1] as string, "--child", cfg], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise<void>((resolve, reject) => {
    proc.stdout?.on("data", (b: Buffer) => {
      if (b.toString().includes("ready")) resolve();
    });
    proc.once("exit", (code) => reject(new Error(`federation broker exited ${code}`)));
  });
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
  try {
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
    const ms = { direct: [] as number[], fed: [] as number[] };
    const p0 = await processing(metrics);
    for (let i = 0; i < REQUESTS; i++) {
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
    hotTransform();
    const hot = hotTransform();
    const dm = median(ms.direct);
    const fm = median(ms.fed);
    const d99 = pct(ms.direct, 0.99);
    const f99 = pct(ms.fed, 0.99);
    const ad = median(all.direct);
    const af = median(all.fed);
    const lines = [
      `rpcutil ping to 1 node, ${REQUESTS} sequential requests each way (alternating):`,
      `  direct on the collective:    median ${dm.toFixed(3)} ms  p99 ${d99.toFixed(3)} ms`,
      `  through federation:          median ${fm.toFixed(3)} ms  p99 ${f99.toFixed(3)} ms`,
      `  added per round trip:        median ${(fm - dm).toFixed(3)} ms  p99 ${(f99 - d99).toFixed(3)} ms  (ratio ${(fm / dm).toFixed(2)})`,
      `  added per message (2/trip):  median ${((fm - dm) / 2).toFixed(3)} ms`,
      `  federation broker processing per message (choria_federation_time): mean ${perMsgUs.toFixed(1)} µs, median ${(p1.median * 1e6).toFixed(1)} µs`,
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
    proc?.kill("SIGTERM");
    await net.stop();
  }
}

(opt.child !== undefined ? child(opt.child) : main()).then(
  () => {
    if (opt.child === undefined) process.exit(0);
  },
  (err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
