import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runElected } from "../../../src/apps/cli/election.js";
import type { NatsConnection } from "../../../src/core/connector/index.js";
import {
  Election,
  electionLeader,
  managedStreamConfigs,
  StreamsError,
} from "../../../src/services/streams/index.js";
import { startJsBroker, type JsBroker } from "../submission/jsbroker.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let broker: JsBroker;
let admin: NatsConnection;

async function until(cond: () => boolean | Promise<boolean>, ms: number): Promise<number> {
  const start = Date.now();
  while (Date.now() - start < ms) {
    if (await cond()) return Date.now() - start;
    await sleep(20);
  }
  throw new Error(`condition not met within ${ms}ms`);
}

/** A connection with only the election_user permission, as services get. */
async function voter(id: string): Promise<NatsConnection> {
  return broker.connect(await broker.client(`choria=${id}`, { election_user: true }));
}

beforeAll(async () => {
  broker = await startJsBroker();
  admin = await broker.connect(
    await broker.client("choria=admin", { streams_admin: true, streams_user: true }),
  );
  // the broker's managed election bucket, with a 1 s TTL so failover is quick
  const cfg = managedStreamConfigs({ leaderElectionTtlMs: 1000 }).find(
    (c) => c.name === "KV_CHORIA_LEADER_ELECTION",
  )!;
  await (await jetstreamManager(admin)).streams.add(cfg);
});

afterAll(async () => {
  await broker?.stop();
});

describe("leader election", () => {
  it("elects one leader and fails over when the leader stops refreshing", async () => {
    const ncA = await voter("a");
    const ncB = await voter("b");
    const events: string[] = [];
    const a = new Election(ncA, {
      name: "svc1",
      candidate: "a",
      onWon: () => events.push("a won"),
      onLost: () => events.push("a lost"),
    });
    const b = new Election(ncB, {
      name: "svc1",
      candidate: "b",
      onWon: () => events.push("b won"),
      onLost: () => events.push("b lost"),
    });
    await a.start();
    await until(() => a.isLeader, 3000);
    await b.start();
    expect(a.ttl).toBe(1000);
    // b keeps losing while a refreshes, for well over the TTL
    await sleep(2500);
    expect(a.isLeader).toBe(true);
    expect(b.isLeader).toBe(false);
    expect(await electionLeader(ncB, "svc1")).toBe("a");
    // the leader dies without a word: its connection goes away
    await ncA.close();
    const took = await until(() => b.isLeader, 5000);
    // the value expires after the 1 s TTL and b tries every 0.75 s (plus jitter)
    expect(took).toBeLessThan(3000);
    await until(() => events.includes("a lost"), 3000);
    expect(events.slice(0, 1)).toEqual(["a won"]);
    expect(events).toContain("b won");
    expect(await electionLeader(ncB, "svc1")).toBe("b");
    await a.stop();
    await b.stop();
  }, 20_000);

  it("hands over at once when a leader stops cleanly", async () => {
    const c = new Election(await voter("c"), { name: "svc2", candidate: "c" });
    const d = new Election(await voter("d"), { name: "svc2", candidate: "d" });
    await c.start();
    await until(() => c.isLeader, 3000);
    await d.start();
    await sleep(300);
    const t0 = Date.now();
    await c.stop();
    await until(() => d.isLeader, 3000);
    // the deleted key lets d in on its next try, before the TTL would
    expect(Date.now() - t0).toBeLessThan(1500);
    await d.stop();
  }, 20_000);

  it("ties a command to leadership (chorus election run)", async () => {
    const ncE = await voter("e");
    const ncF = await voter("f");
    const ace = new AbortController();
    const acf = new AbortController();
    const states: string[] = [];
    const script = "setInterval(() => {}, 1000)";
    const e = runElected(ncE, "svc3", process.execPath, ["-e", script], {
      candidate: "e",
      signal: ace.signal,
      stdio: "ignore",
      onState: (l) => states.push(`e ${l ? "won" : "lost"}`),
    });
    await until(() => states.includes("e won"), 3000);
    const f = runElected(ncF, "svc3", process.execPath, ["-e", script], {
      candidate: "f",
      signal: acf.signal,
      stdio: "ignore",
      onState: (l) => states.push(`f ${l ? "won" : "lost"}`),
    });
    await sleep(1500);
    expect(states).toEqual(["e won"]);
    ace.abort();
    await e;
    await until(() => states.includes("f won"), 3000);
    expect(states).toEqual(["e won", "e lost", "f won"]);
    acf.abort();
    // the child was SIGTERMed when f gave up
    expect(await f).toBe(128);
  }, 20_000);

  it("checks names, TTL and the bucket", async () => {
    const nc = await voter("g");
    expect(() => new Election(nc, { name: "bad name", candidate: "g" })).toThrow(StreamsError);
    await expect(new Election(nc, { name: "x", candidate: "g", ttlMs: 500 }).start()).rejects.toThrow(
      /between 1s and 1h/,
    );
    await expect(new Election(nc, { name: "x", candidate: "g", ttlMs: 7_200_000 }).start()).rejects.toThrow(
      /between 1s and 1h/,
    );
    await expect(
      new Election(nc, { name: "x", candidate: "g", bucket: "NOPE" }).start(),
    ).rejects.toMatchObject({
      code: "denied",
    });
    await expect(
      new Election(admin, { name: "x", candidate: "g", bucket: "NOPE" }).start(),
    ).rejects.toMatchObject({
      code: "no_bucket",
    });
  });
});
