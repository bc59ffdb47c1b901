// Two replicator instances with leader elections on the source broker: exactly one copies;
// when it goes away the other takes over, and nothing is lost or copied twice.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { JetStreamManager } from "@nats-io/jetstream";
import { pino } from "pino";
import type { NatsConnection } from "../../../src/core/connector/index.js";
import { Replicator, parseSourceHeader } from "../../../src/services/replicator/index.js";
import { LEADER_ELECTION_BUCKET, createBucket } from "../../../src/services/streams/index.js";
import {
  startPair,
  type BrokerPair,
  type JsBroker,
  publishMany,
  readAll,
  replicatorConfig,
  until,
} from "./fixture.js";

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
  // the managed election bucket a Chorus broker creates, with a short TTL for the test
  // (5 s: at 2 s a busy 2-core box missed a refresh and leadership moved mid-copy)
  await createBucket(sNc, LEADER_ELECTION_BUCKET, { ttlMs: 5000, history: 1 });
}, 30_000);

afterAll(async () => {
  await pair?.stop();
});

function instance(candidate: string): Replicator {
  return new Replicator(
    replicatorConfig(`
name: HA
streams:
  - stream: HA
    source_url: ${src.url}
    target_url: ${dst.url}
    target_stream: HA_COPY
    leader_election_name: ${candidate}
    parallel: { subject_token: 2, workers: 8 }
`),
    { logger: silent, healthIntervalMs: 500 },
  );
}

const count = async () => (await dJsm.streams.info("HA_COPY").catch(() => undefined))?.state.messages ?? 0;

describe("two replicator instances", () => {
  it("exactly one copies; the other takes over when it stops, nothing lost or twice", async () => {
    await sJsm.streams.add({ name: "HA", subjects: ["ha.>"] });
    const a = instance("a");
    const b = instance("b");
    await Promise.all([a.start(), b.start()]);
    try {
      await until(() => [a, b].filter((r) => r.status()[0]?.active).length === 1, 10_000, "one leader");
      await publishMany(sNc, 3000, (i) => `ha.k${i % 20}.x`);
      await until(async () => (await count()) === 3000, 20_000, "3 000 copies");
      const [leader, follower] = a.status()[0]?.active ? [a, b] : [b, a];
      expect(leader.status()[0]?.copied).toBe(3000);
      expect(follower.status()[0]?.copied).toBe(0);
      expect(follower.status()[0]?.active).toBe(false);
      expect(await leader.metrics.registry.metrics()).toMatch(
        /choria_stream_replicator_election_leader\{[^}]*\} 1/,
      );
      expect(await follower.metrics.registry.metrics()).toMatch(
        /choria_stream_replicator_election_leader\{[^}]*\} 0/,
      );

      await leader.stop();
      await publishMany(sNc, 2000, (i) => `ha.k${i % 20}.x`, undefined, 3000);
      await until(() => follower.status()[0]?.active === true, 15_000, "the other instance to lead");
      await until(async () => (await count()) === 5000, 20_000, "5 000 copies");
      await new Promise((r) => setTimeout(r, 500));
      const seqs = (await readAll(dJsm, "HA_COPY")).map((m) => parseSourceHeader(m.source)?.seq);
      expect(new Set(seqs).size).toBe(5000);
      expect(seqs).toHaveLength(5000);
      expect(follower.status()[0]?.copied).toBe(2000);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  }, 60_000);
});
