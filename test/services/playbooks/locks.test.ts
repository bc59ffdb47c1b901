import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closeNats, connectNats, type NatsConnection } from "../../../src/core/connector/index.js";
import { addGovernor, createBucket, governorInfo } from "../../../src/services/streams/index.js";
import {
  PlaybookError,
  lockKey,
  openDataStores,
  takeLocks,
  KvStore,
  type DataStore,
  type Playbook,
  type PlaybookEvent,
} from "../../../src/services/playbooks/index.js";
import { startNats, type TestNats } from "../../helpers/nats.js";

let nats: TestNats;
let nc: NatsConnection;
const jsStore = mkdtempSync(join(tmpdir(), "chorus-pblocks-js-"));

beforeAll(async () => {
  nats = await startNats(`jetstream { store_dir: "${jsStore}" }`);
  nc = await connectNats({ servers: [nats.url], name: "playbook-locks-test", reconnect: false });
  await createBucket(nc, "PB_LOCKS");
});

afterAll(async () => {
  if (nc) await closeNats(nc);
  await nats?.stop();
  rmSync(jsStore, { recursive: true, force: true });
});

function book(locks: string[], name = "deploy"): Playbook {
  return {
    metadata: { name, version: "1.0.0" },
    uses: {},
    inputs: {},
    nodes: {},
    data_stores: { locks: { type: "kv", bucket: "PB_LOCKS" }, mem: { type: "memory" } },
    locks,
    pre_book: [],
    tasks: [],
    on_success: [],
    on_fail: [],
    post_book: [],
    source: "deploy.yaml",
  };
}

async function stores(pb: Playbook, conn: NatsConnection = nc): Promise<Record<string, DataStore>> {
  return openDataStores(pb.data_stores, { nc: conn });
}

async function locked(p: Promise<unknown>): Promise<PlaybookError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PlaybookError);
  return err as PlaybookError;
}

describe("KV locks", () => {
  it("names keys like Choria: store locks the playbook, store/path the path", () => {
    expect(lockKey("locks", "deploy")).toEqual({ store: "locks", key: "choria/locks/playbook/deploy" });
    expect(lockKey("locks/app/web", "deploy")).toEqual({ store: "locks", key: "app/web" });
  });

  it("a lock held by another run blocks the second, naming the holder; after release it succeeds", async () => {
    const pb = book(["locks"]);
    const events: PlaybookEvent[] = [];
    const release = await takeLocks(pb, await stores(pb), { nc, owner: "alice" }, (e) => events.push(e));
    expect(events).toEqual([{ kind: "lock", lock: "locks", state: "held" }]);
    const kv = (await stores(pb)).locks as unknown as {
      kv: { get(k: string): Promise<{ json(): unknown }> };
    };
    expect((await kv.kv.get("choria/locks/playbook/deploy")).json()).toMatchObject({
      owner: "alice",
      playbook: "deploy",
      pid: process.pid,
    });

    const t0 = Date.now();
    const err = await locked(takeLocks(pb, await stores(pb), { nc, owner: "bob" }));
    expect(err.code).toBe("locked");
    expect(err.message).toMatch(/^lock locks is held by alice on \S+ \(pid \d+\) since \d{4}-/);
    expect(Date.now() - t0).toBeLessThan(1000); // waitMs 0: at once

    await release();
    await release(); // idempotent
    expect(events.at(-1)).toEqual({ kind: "lock", lock: "locks", state: "released" });
    const again = await takeLocks(pb, await stores(pb), { nc, owner: "bob" });
    await again();
  });

  it("waitMs makes the second wait and take it when the first releases", async () => {
    const pb = book(["locks/app/web"]);
    const release = await takeLocks(pb, await stores(pb), { nc, owner: "alice" });
    const events: PlaybookEvent[] = [];
    const t0 = Date.now();
    const second = takeLocks(pb, await stores(pb), { nc, owner: "bob", waitMs: 10_000 }, (e) =>
      events.push(e),
    );
    setTimeout(() => void release(), 600);
    const r2 = await second;
    expect(Date.now() - t0).toBeGreaterThanOrEqual(550);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(events.map((e) => (e.kind === "lock" ? e.state : e.kind))).toEqual(["waiting", "held"]);
    await r2();
  });

  it("a waiting run gives up after waitMs", async () => {
    const pb = book(["locks/timeout"]);
    const release = await takeLocks(pb, await stores(pb), { nc, owner: "alice" });
    const t0 = Date.now();
    const err = await locked(takeLocks(pb, await stores(pb), { nc, owner: "bob", waitMs: 700 }));
    expect(err.message).toMatch(/lock locks\/timeout is held by alice .*\(waited 0.7s\)/);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(650);
    await release();
  });

  it("the holder refreshes the lock, so it outlives its TTL while the run goes on", async () => {
    const pb = book(["locks/long"]);
    const s = await stores(pb);
    const kv = (s.locks as KvStore).kv;
    const release = await takeLocks(pb, s, { nc, owner: "alice", ttlMs: 600 });
    const first = await kv.get("long");
    await new Promise((r) => setTimeout(r, 1500));
    const err = await locked(takeLocks(pb, await stores(pb), { nc, owner: "bob", ttlMs: 600 }));
    expect(err.message).toMatch(/held by alice/);
    // rewritten several times, still saying when it was taken
    const later = await kv.get("long");
    expect(later!.revision - first!.revision).toBeGreaterThanOrEqual(4);
    expect(later!.json<{ time: string }>().time).toBe(first!.json<{ time: string }>().time);
    await release();
    expect((await kv.get("long"))?.operation).not.toBe("PUT");
  });

  it("a run that dies without releasing: its lock expires by TTL and the next run takes it over", async () => {
    const pb = book(["locks/dies"]);
    // the dying run has its own connection, closed without a release (as a killed process)
    const dying = await connectNats({ servers: [nats.url], name: "dying-run", reconnect: false });
    await takeLocks(pb, await stores(pb, dying), { nc: dying, owner: "ghost", ttlMs: 800 });
    await closeNats(dying);

    const err = await locked(takeLocks(pb, await stores(pb), { nc, owner: "bob" }));
    expect(err.message).toMatch(/held by ghost/);

    const events: PlaybookEvent[] = [];
    const t0 = Date.now();
    const release = await takeLocks(pb, await stores(pb), { nc, owner: "bob", waitMs: 5000 }, (e) =>
      events.push(e),
    );
    expect(Date.now() - t0).toBeLessThan(4000);
    const log = events.find((e) => e.kind === "log");
    expect(log?.kind === "log" && log.entry.msg).toMatch(/took over from ghost .*not refreshed/);
    await release();
  });

  it("a holder whose lock was taken from it says so, and its release leaves the new holder's key", async () => {
    const pb = book(["locks/stolen"]);
    const s = await stores(pb);
    const events: PlaybookEvent[] = [];
    const release = await takeLocks(pb, s, { nc, owner: "slow", ttlMs: 300 }, (e) => events.push(e));
    const kv = (s.locks as KvStore).kv;
    // another run overwrote it (as a take-over does): the next refresh finds a revision not its own
    await kv.put("stolen", JSON.stringify({ owner: "thief" }));
    await new Promise((r) => setTimeout(r, 400));
    const lost = events.find((e) => e.kind === "log" && e.entry.level === "error");
    expect(lost?.kind === "log" && lost.entry.msg).toMatch(
      /^lock locks\/stolen: lost, another run took it over/,
    );
    await release();
    expect((await kv.get("stolen"))?.json()).toEqual({ owner: "thief" });
    await kv.delete("stolen");
  });

  it("two runs taking over a dead run's lock at once: exactly one gets it", async () => {
    const pb = book(["locks/contested"]);
    const dying = await connectNats({ servers: [nats.url], name: "dying-run-2", reconnect: false });
    await takeLocks(pb, await stores(pb, dying), { nc: dying, owner: "ghost", ttlMs: 500 });
    await closeNats(dying);
    const results = await Promise.allSettled(
      ["x", "y"].map(async (owner) =>
        takeLocks(pb, await stores(pb), { nc, owner, waitMs: 2500, ttlMs: 600 }),
      ),
    );
    const won = results.filter((r) => r.status === "fulfilled");
    expect(won).toHaveLength(1);
    const lost = results.find((r) => r.status === "rejected");
    expect((lost?.reason as PlaybookError).message).toMatch(
      /lock locks\/contested is held by [xy] .*\(waited 2.5s\)/,
    );
    await (won[0] as PromiseFulfilledResult<() => Promise<void>>).value();
  });

  it("two runs racing for a free lock: exactly one gets it", async () => {
    const pb = book(["locks/race"]);
    const results = await Promise.allSettled(
      ["a", "b", "c", "d"].map(async (owner) => takeLocks(pb, await stores(pb), { nc, owner })),
    );
    const won = results.filter((r) => r.status === "fulfilled");
    expect(won).toHaveLength(1);
    for (const r of results) {
      if (r.status === "rejected") expect((r.reason as PlaybookError).code).toBe("locked");
    }
    await (won[0] as PromiseFulfilledResult<() => Promise<void>>).value();
  });

  it("locks on stores that cannot lock across runs, or on no store, are refused", async () => {
    const mem = await locked(takeLocks(book(["mem"]), await stores(book([])), { nc }));
    expect(mem.message).toMatch(/lock mem: data store mem is a memory store, which cannot lock across runs/);
    const none = await locked(takeLocks(book(["nope/x"]), await stores(book([])), { nc }));
    expect(none.message).toMatch(/lock nope\/x: there is no data store named nope/);
  });

  it("a failure on a later lock gives back those already taken", async () => {
    const pb = book(["locks/first", "locks/second"]);
    const blocker = await takeLocks(book(["locks/second"]), await stores(pb), { nc, owner: "other" });
    await locked(takeLocks(pb, await stores(pb), { nc, owner: "me" }));
    // locks/first was released: someone else may take it now
    const first = await takeLocks(book(["locks/first"]), await stores(pb), { nc, owner: "third" });
    await first();
    await blocker();
  });
});

describe("governor locks", () => {
  it("count capacity: two slots let two runs in, the third is refused naming the holders", async () => {
    await addGovernor(nc, "PB_GOV", { capacity: 2, expireMs: 60_000, collective: "mcollective" });
    const pb = book(["governor:PB_GOV"]);
    const s = await stores(pb);
    const r1 = await takeLocks(pb, s, { nc, owner: "run1" });
    const r2 = await takeLocks(pb, s, { nc, owner: "run2" });
    expect((await governorInfo(nc, "PB_GOV")).active).toBe(2);
    const err = await locked(takeLocks(pb, s, { nc, owner: "run3" }));
    expect(err.code).toBe("locked");
    expect(err.message).toBe(
      "lock governor:PB_GOV: governor PB_GOV is full (all 2 slots taken): held by run1, run2",
    );

    // waiting: the third gets in when one leaves
    const events: PlaybookEvent[] = [];
    const third = takeLocks(pb, s, { nc, owner: "run3", waitMs: 10_000 }, (e) => events.push(e));
    setTimeout(() => void r1(), 400);
    const r3 = await third;
    expect(events).toEqual([
      { kind: "lock", lock: "governor:PB_GOV", state: "waiting" },
      { kind: "lock", lock: "governor:PB_GOV", state: "held" },
    ]);
    expect((await governorInfo(nc, "PB_GOV")).active).toBe(2);
    await r2();
    await r3();
    expect((await governorInfo(nc, "PB_GOV")).active).toBe(0);
  });

  it("a governor that does not exist says how to make it", async () => {
    const err = await locked(takeLocks(book(["governor:NOPE"]), {}, { nc }));
    expect(err.message).toMatch(/governor NOPE does not exist \(chorus governor add NOPE/);
  });
});
