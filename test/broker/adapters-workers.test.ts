import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import * as srcBroker from "../../src/broker/index.js";
import type { AdapterOutput, StreamAdapter, StreamAdapterOptions } from "../../src/broker/index.js";
import type { AdapterSettings } from "../../src/core/config/index.js";
import { lineLogger } from "../../src/core/util/index.js";
import { encodeRegistrationMessage } from "../../src/services/registration/index.js";
import { startNats, type TestNats } from "../helpers/nats.js";

// Ingest worker threads only run from the built JS (worker threads cannot load the
// TypeScript sources), so these use dist/: run `npm run build` after changing src/.
const builtUrl = new URL("../../dist/broker/index.js", import.meta.url);
const builtWorker = new URL("../../dist/broker/adapter-worker.js", import.meta.url);

const settings = (o: Partial<AdapterSettings>): AdapterSettings => ({
  name: "t",
  type: "jetstream",
  ingestTopic: "in.workers",
  ingestProtocol: "request",
  ingestWorkers: 0,
  streamTopic: "out.%s",
  // one publisher, so the stream's order is the order records left the decoder
  streamWorkers: 1,
  queueLen: 10_000,
  ...o,
});

const SENDERS = 200;
const ROUNDS = 3;
const JUNK = ["", "{}", "[1,2]", "\u0000\u0001", '{"protocol":"x","data":"eA==","headers":{}}'];

const registration = (identity: string, round: number) =>
  encodeRegistrationMessage({
    payload: Buffer.from(JSON.stringify({ id: identity, round })),
    identity,
    collective: "mcollective",
    credential: { token: "jwt", sign: () => Buffer.alloc(64) },
  });

async function until(what: string, cond: () => boolean, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("adapter ingest worker threads", () => {
  let nats: TestNats;
  let nc: NatsConnection;
  let built: typeof srcBroker;
  let store = "";
  const adapters: StreamAdapter[] = [];
  const logs: string[] = [];
  const logger = lineLogger((level, msg) => logs.push(`${level} ${msg}`));

  beforeAll(async () => {
    // A missing build must fail here, not quietly test the inline path.
    expect(existsSync(fileURLToPath(builtWorker)), "dist/ is missing: run npm run build").toBe(true);
    built = (await import(builtUrl.href)) as typeof srcBroker;
    store = mkdtempSync(join(tmpdir(), "chorus-adapter-workers-"));
    nats = await startNats(`jetstream { store_dir: ${JSON.stringify(store)} }`);
    nc = await connect({ servers: nats.url });
  }, 30_000);
  afterAll(async () => {
    await nc?.close();
    await nats?.stop();
    rmSync(store, { recursive: true, force: true });
  });
  beforeEach(async () => {
    logs.length = 0;
    const jsm = await jetstreamManager(nc);
    for (const name of ["INLINE", "POOLED"]) await jsm.streams.delete(name).catch(() => undefined);
    await jsm.streams.add({ name: "INLINE", subjects: ["inline.>"], max_msgs_per_subject: 10 });
    await jsm.streams.add({ name: "POOLED", subjects: ["pooled.>"], max_msgs_per_subject: 10 });
  });
  afterEach(async () => {
    await Promise.all(adapters.splice(0).map((a) => a.stop(0)));
  });

  const start = (s: Partial<AdapterSettings>, o: StreamAdapterOptions = {}) => {
    const a = new built.StreamAdapter(settings(s), { logger, ...o });
    a.start(nc);
    adapters.push(a);
    return a;
  };

  /** Sends ROUNDS registrations from each of SENDERS nodes, round by round, with junk between rounds. */
  async function sendFleet(): Promise<void> {
    for (let round = 0; round < ROUNDS; round++) {
      for (let i = 0; i < SENDERS; i++) nc.publish("in.workers", registration(`node${i}.example.net`, round));
      for (const j of JUNK) nc.publish("in.workers", Buffer.from(j));
    }
    await nc.flush();
  }

  /** Every stored record of a stream, per sender, in stream order, without the wall-clock time. */
  async function records(stream: string): Promise<Map<string, Omit<AdapterOutput, "time">[]>> {
    const jsm = await jetstreamManager(nc);
    const n = (await jsm.streams.info(stream)).state.messages;
    const c = await jetstream(nc).consumers.get(stream);
    const out = new Map<string, Omit<AdapterOutput, "time">[]>();
    let got = 0;
    while (got < n) {
      const batch = await c.fetch({ max_messages: n - got, expires: 5000 });
      for await (const m of batch) {
        const { time, ...rest } = m.json<AdapterOutput>();
        expect(Math.abs(time - Date.now() / 1000)).toBeLessThan(60);
        const key = m.subject.slice(m.subject.indexOf(".") + 1);
        out.set(key, [...(out.get(key) ?? []), rest]);
        got++;
      }
    }
    return out;
  }

  const rounds = (recs: Omit<AdapterOutput, "time">[] | undefined) =>
    (recs ?? []).map((r) => (JSON.parse(r.data) as { round: number }).round);

  it("stores every sender's registrations exactly as inline decoding does, in order, and counts garbage", async () => {
    const inline = start({ name: "inline", streamTopic: "inline.%s", ingestWorkers: 0 });
    const pooled = start({ name: "pooled", streamTopic: "pooled.%s", ingestWorkers: 2 });
    expect(inline.ingestPool).toBeUndefined();
    expect(pooled.ingestPool?.size).toBe(Math.min(2, availableParallelism()));
    await sendFleet();
    const total = SENDERS * ROUNDS;
    await until("all stored", () => inline.stats.published === total && pooled.stats.published === total);
    await until("garbage counted", () => pooled.stats.bad === JUNK.length * ROUNDS);
    // the workers did the decoding, and got the same garbage right
    expect(pooled.ingestPool?.byWorkers).toBe(total + JUNK.length * ROUNDS);
    expect(pooled.stats).toMatchObject({
      bad: inline.stats.bad,
      dropped: 0,
      decoding: 0,
      ingestWorkerFailures: 0,
    });
    expect(inline.stats.bad).toBe(JUNK.length * ROUNDS);
    expect(await pooled.metrics.registry.metrics()).toContain(
      `choria_adapter_bad_messages_total{adapter="pooled"} ${JUNK.length * ROUNDS}`,
    );

    const a = await records("INLINE");
    const b = await records("POOLED");
    expect(a.size).toBe(SENDERS);
    expect(b).toEqual(a);
    for (let i = 0; i < SENDERS; i++) {
      const sender = `node${i}.example.net`;
      expect(rounds(b.get(sender))).toEqual([0, 1, 2]);
      expect(b.get(sender)?.[0]).toMatchObject({
        protocol: "choria:adapters:jetstream:output:1",
        sender,
        data: JSON.stringify({ id: sender, round: 0 }),
      });
    }
  });

  // Crashes, stalls and the reorder buffer are the generic pool's (test/core/util/pool.test.ts,
  // with a worker made to misbehave); here a stall limit no worker can meet makes the
  // adapter's workers fail for real, to check what the adapter does about it.
  it("gives up on workers slower than the stall limit, decodes their messages inline, loses none and keeps order", async () => {
    const pooled = start(
      { name: "pooled", streamTopic: "pooled.%s", ingestWorkers: 2 },
      { ingestStallMs: 0 },
    );
    const pool = pooled.ingestPool;
    if (!pool || pool.size < 2) throw new Error("needs two ingest workers");
    await until("workers loaded", () => pool.ready === 2);
    // a fleet's worth keeps the workers busy across several stall checks; one more if none fired
    let fleets = 0;
    while (fleets < 10 && pooled.stats.ingestWorkerFailures === 0) {
      await sendFleet();
      fleets++;
      await until("all stored", () => pooled.stats.published === fleets * SENDERS * ROUNDS);
    }
    expect(pooled.stats.ingestWorkerFailures).toBeGreaterThan(0);
    expect(pooled.stats).toMatchObject({ bad: fleets * JUNK.length * ROUNDS, dropped: 0, decoding: 0 });
    expect(await pooled.metrics.registry.metrics()).toMatch(
      /choria_adapter_ingest_worker_failures_total\{adapter="pooled"\} [1-9]/,
    );
    expect(logs.some((l) => /^warn .*ingest worker failed \(no progress for .*worker replaced/.test(l))).toBe(
      true,
    );
    // in arrival order: rounds 0, 1, 2 of each fleet (the stream keeps the last 10 per sender)
    const b = await records("POOLED");
    expect(b.size).toBe(SENDERS);
    const want = Array.from({ length: fleets * ROUNDS }, (_, j) => j % ROUNDS).slice(-10);
    for (let i = 0; i < SENDERS; i++) expect(rounds(b.get(`node${i}.example.net`))).toEqual(want);
  });

  it("disables the pool after repeated failures and keeps decoding inline", async () => {
    const pooled = start(
      { name: "pooled", streamTopic: "pooled.%s", ingestWorkers: 2 },
      { ingestStallMs: 0 },
    );
    const pool = pooled.ingestPool;
    if (!pool) throw new Error("no ingest pool");
    let sent = 0;
    for (let i = 0; i < 30 && !pool.disabled; i++) {
      await until("workers loaded", () => pool.ready === pool.size);
      await sendFleet();
      sent += SENDERS * ROUNDS;
      await until("stored", () => pooled.stats.published === sent);
    }
    expect(pool.disabled).toBe(true);
    expect(pool.size).toBe(0);
    expect(pooled.stats.ingestWorkerFailures).toBe(3);
    expect(logs.some((l) => /^error .*too many failures, decoding inline/.test(l))).toBe(true);
    const before = pool.byWorkers;
    await sendFleet();
    await until("all stored", () => pooled.stats.published === sent + SENDERS * ROUNDS);
    expect(pooled.stats.dropped).toBe(0);
    expect(pool.byWorkers).toBe(before);
  });

  it("caps the pool at the CPU count and says so", () => {
    const a = start({ name: "many", streamTopic: "pooled.%s", ingestWorkers: 64 });
    expect(a.ingestPool?.size).toBe(Math.min(64, availableParallelism()));
    expect(logs).toContain(
      `warn adapter many: ingest.workers = 64 capped at ${availableParallelism()}, the number of CPUs available`,
    );
  });

  it("decodes inline, with a warning, when running from the TypeScript sources", () => {
    const a = new srcBroker.StreamAdapter(settings({ ingestWorkers: 2 }), { logger });
    a.start(nc);
    adapters.push(a);
    expect(a.ingestPool).toBeUndefined();
    expect(logs.some((l) => /^warn .*needs the built JS/.test(l))).toBe(true);
  });
});
