// Copy throughput of the stream replicator against a plain JetStream copier, in the same
// run, between two JetStream nats-servers on loopback: N messages (about 300 bytes, 200
// keys) are loaded into the source stream first, then each copier copies them all into a
// fresh target stream, timed from start to the last stored copy.
//   raw ordered:    a pull consumer; publish one message to the target, await its ack,
//                   ack the source message, next (what the replicator's ordered mode does)
//   raw parallel:   the same consumer, up to W publishes in flight (no order kept)
// Each raw copier is run twice: publishing with nats.js's js.publish (a request per
// message) and with plain pipelined publishes whose acks come to one inbox subscription
// (the fastest plain way; the ratio is quoted against it).
//   chorus ordered: the replicator, ordered mode (batch 100)
//   chorus parallel: the replicator, parallel by subject token, W keys at once
// Both raw copiers use the same consumer settings (max_ack_pending = batch) as the
// replicator does in that mode. Not part of the tests.
// Run: bench/replicator.sh [--messages 50000] [--workers 256] [--runs 3] [--only ordered|parallel]
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { AckPolicy, jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { createInbox, headers as natsHeaders } from "@nats-io/transport-node";
import { pino } from "pino";
import type { NatsConnection } from "../src/core/connector/index.js";
import { nanos } from "../src/services/streams/index.js";
import { Replicator } from "../src/services/replicator/index.js";
import { JsBroker, publishMany, replicatorConfig } from "../test/services/replicator/fixture.js";

const { values: opt } = parseArgs({
  options: {
    messages: { type: "string", default: "50000" },
    workers: { type: "string", default: "256" },
    runs: { type: "string", default: "3" },
    only: { type: "string" },
  },
});
const N = Number(opt.messages);
const W = Number(opt.workers);
const RUNS = Number(opt.runs);
const ORDERED_BATCH = 100;
const PARALLEL_BATCH = Math.max(1000, W * 4);
const silent = pino({ level: "silent" });

async function stored(jsm: JetStreamManager, stream: string): Promise<number> {
  return (await jsm.streams.info(stream).catch(() => undefined))?.state.messages ?? 0;
}

async function waitStored(jsm: JetStreamManager, stream: string): Promise<void> {
  while ((await stored(jsm, stream)) < N) await new Promise((r) => setTimeout(r, 20));
}

/** A plain copier: consume, publish to the target with up to `inFlight` awaiting acks, ack. */
async function raw(
  src: NatsConnection,
  dst: NatsConnection,
  dJsm: JetStreamManager,
  target: string,
  inFlight: number,
  batch: number,
  lean: boolean,
): Promise<number> {
  const sJsm = await jetstreamManager(src);
  const durable = `RAW_${target}`;
  await sJsm.consumers.add("BENCH", {
    durable_name: durable,
    ack_policy: AckPolicy.Explicit,
    max_ack_pending: batch,
    ack_wait: nanos(30_000),
  });
  await dJsm.streams.add({ name: target, subjects: [`${target.toLowerCase()}.>`] });
  const js = jetstream(dst);
  // the lean path: one inbox subscription, replies matched by id
  const inbox = createInbox();
  const waiting = new Map<string, () => void>();
  const sub = dst.subscribe(`${inbox}.*`, {
    callback: (_e, m) => {
      const id = m.subject.slice(inbox.length + 1);
      const w = waiting.get(id);
      if (w && m.data.length > 0 && !m.string().includes('"error"')) {
        waiting.delete(id);
        w();
      }
    },
  });
  const publish = (subject: string, data: Uint8Array, id: string): Promise<unknown> =>
    lean
      ? new Promise<void>((r) => {
          waiting.set(id, r);
          const h = natsHeaders();
          h.set("Nats-Msg-Id", id);
          dst.publish(subject, data, { reply: `${inbox}.${id}`, headers: h });
        })
      : js.publish(subject, data, { msgID: id });
  const t0 = performance.now();
  const c = await jetstream(src).consumers.get("BENCH", durable);
  const it = await c.consume({ max_messages: batch });
  let pending = 0;
  let received = 0;
  let wake: (() => void) | undefined;
  for await (const m of it) {
    received++;
    pending++;
    const p = publish(`${target.toLowerCase()}.${m.subject}`, m.data, `${m.seq}`).then(() => {
      m.ack();
      pending--;
      wake?.();
    });
    if (inFlight === 1) await p;
    while (pending >= inFlight) await new Promise<void>((r) => (wake = r));
    if (received === N) break;
  }
  while (pending > 0) await new Promise<void>((r) => (wake = r));
  it.stop();
  sub.unsubscribe();
  await waitStored(dJsm, target);
  const ms = performance.now() - t0;
  await sJsm.consumers.delete("BENCH", durable);
  await dJsm.streams.delete(target);
  return (N / ms) * 1000;
}

async function chorus(
  srcUrl: string,
  dstUrl: string,
  dJsm: JetStreamManager,
  target: string,
  parallel: boolean,
): Promise<number> {
  const r = new Replicator(
    replicatorConfig(`
name: BENCH
streams:
  - name: ${target.toLowerCase()}
    stream: BENCH
    source_url: ${srcUrl}
    target_url: ${dstUrl}
    target_stream: ${target}
    target_subject_prefix: ${target.toLowerCase()}
${parallel ? `    parallel: { subject_token: 2, workers: ${W} }\n    batch: ${PARALLEL_BATCH}` : `    batch: ${ORDERED_BATCH}`}
`),
    { logger: silent },
  );
  const t0 = performance.now();
  await r.start();
  await waitStored(dJsm, target);
  const ms = performance.now() - t0;
  await r.stop();
  await dJsm.streams.delete(target);
  return (N / ms) * 1000;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

async function main(): Promise<void> {
  process.stderr.write(`starting two JetStream brokers, loading ${N} messages...\n`);
  const [src, dst] = await Promise.all([JsBroker.start(), JsBroker.start()]);
  const sNc = await src.connect("bench-src");
  const dNc = await dst.connect("bench-dst");
  try {
    const sJsm = await jetstreamManager(sNc);
    const dJsm = await jetstreamManager(dNc);
    await sJsm.streams.add({ name: "BENCH", subjects: ["bench.>"] });
    const body = (i: number) => JSON.stringify({ i, pad: "x".repeat(280) });
    await publishMany(sNc, N, (i) => `bench.k${i % 200}.x`, body);
    const res: Record<string, number[]> = {
      rawOrderedJs: [],
      rawOrdered: [],
      chorusOrdered: [],
      rawParallelJs: [],
      rawParallel: [],
      chorusParallel: [],
    };
    for (let run = 0; run < RUNS; run++) {
      // alternate which goes first, so machine noise falls on both alike
      const pairs: [string, () => Promise<number>][] = [
        ["rawOrderedJs", () => raw(sNc, dNc, dJsm, `ROJ${run}`, 1, ORDERED_BATCH, false)],
        ["rawOrdered", () => raw(sNc, dNc, dJsm, `RO${run}`, 1, ORDERED_BATCH, true)],
        ["chorusOrdered", () => chorus(src.url, dst.url, dJsm, `CO${run}`, false)],
        ["rawParallelJs", () => raw(sNc, dNc, dJsm, `RPJ${run}`, W, PARALLEL_BATCH, false)],
        ["rawParallel", () => raw(sNc, dNc, dJsm, `RP${run}`, W, PARALLEL_BATCH, true)],
        ["chorusParallel", () => chorus(src.url, dst.url, dJsm, `CP${run}`, true)],
      ];
      const chosen = pairs.filter(
        ([name]) => opt.only === undefined || name.toLowerCase().includes(opt.only),
      );
      const order = run % 2 === 0 ? chosen : [...chosen].reverse();
      for (const [name, f] of order) {
        const rate = await f();
        (res[name] as number[]).push(rate);
        process.stderr.write(`run ${run + 1} ${name}: ${rate.toFixed(0)} msg/s\n`);
        // the replicator's durable consumers are left behind: remove them
        for await (const ci of sJsm.consumers.list("BENCH")) await sJsm.consumers.delete("BENCH", ci.name);
      }
    }
    const m = Object.fromEntries(Object.entries(res).map(([k, v]) => [k, median(v)])) as Record<
      string,
      number
    >;
    const lines = [
      `copy of ${N} messages (~300 B, 200 keys) between two JetStream brokers on loopback, median of ${RUNS}:`,
      `  ordered  (one in flight, batch ${ORDERED_BATCH}):   raw ${m.rawOrdered?.toFixed(0)} msg/s (js.publish ${m.rawOrderedJs?.toFixed(0)})   chorus ${m.chorusOrdered?.toFixed(0)} msg/s   ratio ${((m.chorusOrdered ?? 0) / (m.rawOrdered ?? 1)).toFixed(2)}`,
      `  parallel (${W} in flight, batch ${PARALLEL_BATCH}): raw ${m.rawParallel?.toFixed(0)} msg/s (js.publish ${m.rawParallelJs?.toFixed(0)})   chorus ${m.chorusParallel?.toFixed(0)} msg/s   ratio ${((m.chorusParallel ?? 0) / (m.rawParallel ?? 1)).toFixed(2)}`,
      `  chorus parallel / chorus ordered: ${((m.chorusParallel ?? 0) / (m.chorusOrdered ?? 1)).toFixed(1)}x`,
    ];
    process.stdout.write(`${lines.join("\n")}\n`);
  } finally {
    await sNc.close();
    await dNc.close();
    await Promise.all([src.stop(), dst.stop()]);
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
