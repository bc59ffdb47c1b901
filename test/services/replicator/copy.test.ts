// Copies between two real nats-servers (JetStream, loopback): the modes, start options,
// subject mapping, headers, resume and repair. One pair of brokers for the whole file;
// each test uses its own streams.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { headers as natsHeaders } from "@nats-io/transport-node";
import { jetstream, type JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "../../../src/core/connector/index.js";
import { Replicator, parseSourceHeader } from "../../../src/services/replicator/index.js";
import {
  startPair,
  type BrokerPair,
  type JsBroker,
  publishMany,
  readAll,
  replicatorConfig,
  until,
} from "./fixture.js";
import { pino } from "pino";

const silent = pino({ level: "silent" });
let pair: BrokerPair;
let src: JsBroker;
let dst: JsBroker;
let sNc: NatsConnection;
let sJsm: JetStreamManager;
let dJsm: JetStreamManager;

beforeAll(async () => {
  pair = await startPair();
  ({ src, dst, sNc, sJsm, dJsm } = pair);
}, 30_000);

afterAll(async () => {
  await pair?.stop();
});

function replicator(stream: string, extra: string, name = "TEST"): Replicator {
  return new Replicator(
    replicatorConfig(
      [
        `name: ${name}`,
        "streams:",
        `  - stream: ${stream}`,
        `    source_url: ${src.url}`,
        `    target_url: ${dst.url}`,
        ...extra
          .split("\n")
          .filter((l) => l.trim() !== "")
          .map((l) => `    ${l}`),
      ].join("\n"),
    ),
    { logger: silent, healthIntervalMs: 500 },
  );
}

async function count(jsm: JetStreamManager, stream: string): Promise<number> {
  return (await jsm.streams.info(stream).catch(() => undefined))?.state.messages ?? 0;
}

describe("replicator copies", () => {
  it("in order, with the source's headers, Choria-SR-Source and a deterministic id, into a created and mapped target", async () => {
    await sJsm.streams.add({ name: "ORD", subjects: ["cell.events.>"] });
    const js = jetstream(sNc);
    for (let i = 1; i <= 50; i++) {
      const h = natsHeaders();
      h.set("X-Kind", `k${i % 3}`);
      h.set("Nats-Msg-Id", `orig-${i}`);
      await js.publish(`cell.events.n${i % 5}`, JSON.stringify({ i }), { headers: h });
    }
    const r = replicator(
      "ORD",
      "target_stream: ORD_COPY\ntarget_subject_prefix: centre\ntarget_subject_remove: cell.",
    );
    await r.start();
    try {
      await until(async () => (await count(dJsm, "ORD_COPY")) === 50, 15_000, "50 copies");
      const info = await dJsm.streams.info("ORD_COPY");
      expect(info.config.subjects).toEqual(["centre.events.>"]);
      const msgs = await readAll(dJsm, "ORD_COPY");
      expect(msgs.map((m) => parseSourceHeader(m.source)?.seq)).toEqual(
        Array.from({ length: 50 }, (_, i) => i + 1),
      );
      const first = msgs[0];
      expect(first?.subject).toBe("centre.events.n1");
      expect(first?.headers["X-Kind"]).toBe("k1");
      expect(first?.headers["Choria-SR-Original-Msg-Id"]).toBe("orig-1");
      expect(first?.headers["Nats-Msg-Id"]).toMatch(/^sr:TEST:ORD:\d+:1$/);
      const src1 = parseSourceHeader(first?.source);
      expect(src1).toMatchObject({ stream: "ORD", seq: 1, replicator: "TEST", name: "ord" });
      expect(JSON.parse(first?.data ?? "{}")).toEqual({ i: 1 });
      expect(r.status()).toEqual([{ name: "ord", stream: "ORD", active: true, copied: 50 }]);
      const metrics = await r.metrics.registry.metrics();
      expect(metrics).toMatch(
        /choria_stream_replicator_replicator_copied_messages\{stream="ORD",replicator="TEST",worker="ord"\} 50/,
      );
    } finally {
      await r.stop();
    }
  }, 30_000);

  it("from a start sequence, from the end, and not what is older than max_age", async () => {
    await sJsm.streams.add({ name: "START", subjects: ["start.>"] });
    await publishMany(sNc, 20, (i) => `start.${i}`);
    const fromSeq = replicator(
      "START",
      "name: fromseq\ntarget_stream: START_SEQ\ntarget_subject_prefix: fromseq\nstart_sequence: 15",
    );
    const atEnd = replicator(
      "START",
      "name: atend\ntarget_stream: START_END\ntarget_subject_prefix: atend\nstart_at_end: true",
    );
    await fromSeq.start();
    await atEnd.start();
    try {
      await until(async () => (await count(dJsm, "START_SEQ")) === 6, 10_000, "6 copies from 15");
      await publishMany(sNc, 3, (i) => `start.${i}`, undefined, 100);
      await until(async () => (await count(dJsm, "START_END")) === 3, 10_000, "3 new ones");
      await until(async () => (await count(dJsm, "START_SEQ")) === 9, 10_000, "9 copies from 15");
    } finally {
      await fromSeq.stop();
      await atEnd.stop();
    }
    const old = replicator(
      "START",
      "name: maxage\ntarget_stream: START_AGE\ntarget_subject_prefix: maxage\nmax_age: 1h\nstart_delta: 1d",
    );
    await old.start();
    try {
      await until(async () => (await count(dJsm, "START_AGE")) === 23, 10_000, "23 copies (all recent)");
    } finally {
      await old.stop();
    }
    await new Promise((r) => setTimeout(r, 1200));
    await publishMany(sNc, 2, (i) => `start.${i}`, undefined, 200);
    const young = replicator(
      "START",
      "name: young\ntarget_stream: START_YOUNG\ntarget_subject_prefix: young\nmax_age: 1s",
    );
    await young.start();
    try {
      await until(async () => (await count(dJsm, "START_YOUNG")) === 2, 10_000, "only the 2 young ones");
      await new Promise((r) => setTimeout(r, 300));
      expect(await count(dJsm, "START_YOUNG")).toBe(2);
      expect(await young.metrics.registry.metrics()).toMatch(/too_old_messages\{[^}]*\} 23/);
    } finally {
      await young.stop();
    }
  }, 40_000);

  it("in parallel keyed by a subject token: many keys at once, each key in order", async () => {
    await sJsm.streams.add({ name: "PAR", subjects: ["par.>"] });
    const N = 5000;
    await publishMany(sNc, N, (i) => `par.node${i % 37}.x`);
    const r = replicator("PAR", "target_stream: PAR_COPY\nparallel: { subject_token: 2, workers: 16 }");
    await r.start();
    try {
      await until(async () => (await count(dJsm, "PAR_COPY")) === N, 20_000, `${N} copies`);
      const msgs = await readAll(dJsm, "PAR_COPY");
      const seqs = msgs.map((m) => parseSourceHeader(m.source)?.seq as number);
      expect(new Set(seqs).size).toBe(N);
      const last = new Map<string, number>();
      let outOfStreamOrder = 0;
      let prev = 0;
      for (const [i, m] of msgs.entries()) {
        const key = m.subject.split(".")[1] as string;
        const seq = seqs[i] as number;
        expect(seq).toBeGreaterThan(last.get(key) ?? 0);
        last.set(key, seq);
        if (seq < prev) outOfStreamOrder++;
        prev = seq;
      }
      // keys really ran side by side: the target's order is not the stream's
      expect(outOfStreamOrder).toBeGreaterThan(0);
    } finally {
      await r.stop();
    }
  }, 40_000);

  it("in parallel keyed by a header", async () => {
    await sJsm.streams.add({ name: "PARH", subjects: ["parh.>"] });
    const js = jetstream(sNc);
    for (let i = 0; i < 600; i++) {
      const h = natsHeaders();
      h.set("Cell", `c${i % 7}`);
      await js.publish("parh.x", JSON.stringify({ i }), { headers: h });
    }
    const r = replicator("PARH", "target_stream: PARH_COPY\nparallel: { header: Cell, workers: 8 }");
    await r.start();
    try {
      await until(async () => (await count(dJsm, "PARH_COPY")) === 600, 20_000, "600 copies");
      const msgs = await readAll(dJsm, "PARH_COPY");
      const last = new Map<string, number>();
      for (const m of msgs) {
        const seq = parseSourceHeader(m.source)?.seq as number;
        expect(seq).toBeGreaterThan(last.get(m.headers.Cell as string) ?? 0);
        last.set(m.headers.Cell as string, seq);
      }
      expect(last.size).toBe(7);
    } finally {
      await r.stop();
    }
  }, 30_000);

  it("target-initiated: resumes after the target's last copy, nothing twice", async () => {
    await sJsm.streams.add({ name: "TI", subjects: ["ti.>"] });
    await publishMany(sNc, 100, (i) => `ti.a.${i}`);
    const mk = () => replicator("TI", "target_stream: TI_COPY\ntarget_initiated: true\nfilter_subject: ti.>");
    const r1 = mk();
    await r1.start();
    await until(async () => (await count(dJsm, "TI_COPY")) === 100, 10_000, "100 copies");
    await r1.stop();
    await publishMany(sNc, 50, (i) => `ti.a.${i}`, undefined, 100);
    const r2 = mk();
    await r2.start();
    try {
      await until(async () => (await count(dJsm, "TI_COPY")) === 150, 10_000, "150 copies");
      await new Promise((r) => setTimeout(r, 300));
      const seqs = (await readAll(dJsm, "TI_COPY")).map((m) => parseSourceHeader(m.source)?.seq);
      expect(seqs).toEqual(Array.from({ length: 150 }, (_, i) => i + 1));
      expect(r2.status()[0]?.copied).toBe(50);
    } finally {
      await r2.stop();
    }
  }, 30_000);

  it("repairs a deleted source consumer and recreates one left with unacked messages from its ack floor", async () => {
    await sJsm.streams.add({ name: "REP", subjects: ["rep.>"] });
    await publishMany(sNc, 200, (i) => `rep.${i % 4}`);
    const r = replicator("REP", "target_stream: REP_COPY");
    await r.start();
    try {
      await until(async () => (await count(dJsm, "REP_COPY")) === 200, 10_000, "200 copies");
      await sJsm.consumers.delete("REP", "SR_rep");
      await publishMany(sNc, 100, (i) => `rep.${i % 4}`, undefined, 200);
      await until(async () => (await count(dJsm, "REP_COPY")) === 300, 15_000, "300 copies after repair");
      expect(await r.metrics.registry.metrics()).toMatch(/consumer_recreated\{[^}]*\} [1-9]/);
    } finally {
      await r.stop();
    }
    // a consumer another instance left with unacked messages: fetched but never acked
    const c = await jetstream(sNc).consumers.get("REP", "SR_rep");
    await publishMany(sNc, 30, (i) => `rep.${i % 4}`, undefined, 300);
    const held = await c.fetch({ max_messages: 10, expires: 2000 });
    let n = 0;
    for await (const m of held) {
      n++;
      if (m.info.pending === 0 || n === 10) break;
    }
    const r2 = replicator("REP", "target_stream: REP_COPY");
    await r2.start();
    try {
      await until(async () => (await count(dJsm, "REP_COPY")) === 330, 10_000, "330 copies");
      await new Promise((r) => setTimeout(r, 300));
      const seqs = (await readAll(dJsm, "REP_COPY")).map((m) => parseSourceHeader(m.source)?.seq);
      expect(seqs).toEqual(Array.from({ length: 330 }, (_, i) => i + 1));
    } finally {
      await r2.stop();
    }
  }, 40_000);
});
