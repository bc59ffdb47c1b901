// The reply store against a real SQLite file and a real PostgreSQL server: the same suite
// for both.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ReplyStore,
  StoreError,
  type ReplyRow,
  type RequestRow,
  type StoreLocation,
} from "../../../src/services/receiver/index.js";
import { startPostgres, type TestPostgres } from "../../helpers/postgres.js";

const dir = mkdtempSync(join(tmpdir(), "chorus-store-"));
let pgServer: TestPostgres;
let dbs = 0;

beforeAll(async () => {
  pgServer = await startPostgres();
}, 60_000);
afterAll(async () => {
  await pgServer?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** A fresh, empty store location of each kind. */
const kinds: [string, () => Promise<StoreLocation>][] = [
  ["sqlite", async () => ({ kind: "sqlite", path: join(dir, `store-${++dbs}.db`) })],
  [
    "postgres",
    async () => {
      const name = `store_${++dbs}`;
      const admin = await ReplyStore.open({ kind: "postgres", url: pgServer.url });
      // CREATE DATABASE takes no parameters; the name is ours, never input
      const { sql } = await import("kysely");
      await sql.raw(`create database ${name}`).execute(admin.db);
      await admin.close();
      return { kind: "postgres", url: pgServer.url.replace(/\/postgres$/, `/${name}`) };
    },
  ],
];

const T0 = Date.parse("2026-12-06T03:00:00.000Z");

function record(id: string, nodes: string[], o: Partial<RequestRow> = {}): RequestRow {
  return {
    request_id: id,
    agent: "rpcutil",
    action: "ping",
    caller: "choria=alice",
    collective: "mcollective",
    reply_to: `mcollective.reply.x.async.${id}`,
    discovered: nodes.length,
    nodes: JSON.stringify(nodes),
    created_ms: T0,
    stored_ms: T0,
    ...o,
  };
}

function reply(id: string, sender: string, statuscode = 0, at = T0 + 1000): ReplyRow {
  return {
    request_id: id,
    sender,
    statuscode,
    statusmsg: statuscode === 0 ? "OK" : "failed",
    data: JSON.stringify({ from: sender, n: [1, 2] }),
    reply_ms: at,
    stored_ms: at,
  };
}

describe.each(kinds)("reply store on %s", (_kind, fresh) => {
  it("stores each record and each (request, sender) reply once, however often written", async () => {
    const store = await ReplyStore.open(await fresh());
    try {
      const recs = [record("req1", ["a", "b"])];
      const reps = [reply("req1", "a"), reply("req1", "b", 1), reply("req1", "a")];
      expect(await store.write(recs, reps)).toEqual({ records: 1, replies: 2 });
      // a redelivered batch, and a reply that differs but has the same key
      expect(await store.write(recs, [reply("req1", "b", 0), reply("req1", "c")])).toEqual({
        records: 0,
        replies: 1,
      });
      expect(await store.counts()).toEqual({ requests: 1, replies: 3 });
      // the first copy stays
      const b = (await store.replies("req1", { limit: 10, offset: 0 })).find((r) => r.sender === "b");
      expect(b?.statuscode).toBe(1);
    } finally {
      await store.close();
    }
  });

  it("reports status: ok, failed, unexpected repliers, completion, and replies before their record", async () => {
    const store = await ReplyStore.open(await fresh());
    try {
      await store.write([], [reply("req2", "a"), reply("req2", "z", 0, T0 + 5000)]);
      const early = await store.status("req2");
      expect(early).toMatchObject({
        known: false,
        replied: 2,
        complete: false,
        unexpected: 2,
        discovered: 0,
      });
      expect(early?.last_reply).toBe(new Date(T0 + 5000).toISOString());

      await store.write([record("req2", ["a", "b", "c"])], [reply("req2", "b", 4)]);
      expect(await store.status("req2")).toEqual({
        request_id: "req2",
        agent: "rpcutil",
        action: "ping",
        caller: "choria=alice",
        collective: "mcollective",
        created: new Date(T0).toISOString(),
        discovered: 3,
        replied: 3,
        ok: 2,
        failed: 1,
        unexpected: 1,
        complete: false,
        last_reply: new Date(T0 + 5000).toISOString(),
        known: true,
      });
      await store.write([], [reply("req2", "c")]);
      expect(await store.status("req2")).toMatchObject({ replied: 4, complete: true, unexpected: 1 });
      expect(await store.status("nosuch")).toBeUndefined();

      // a request that discovered nothing is never complete
      await store.write([record("req3", [])], []);
      expect(await store.status("req3")).toMatchObject({ known: true, replied: 0, complete: false });
    } finally {
      await store.close();
    }
  });

  it("lists newest first with filters, and pages replies by sender", async () => {
    const store = await ReplyStore.open(await fresh());
    try {
      await store.write(
        [
          record("old", ["a"], { created_ms: T0 }),
          record("mid", ["a"], { created_ms: T0 + 1000, agent: "puppet" }),
          record("new", ["a"], { created_ms: T0 + 2000, caller: "choria=bob" }),
        ],
        Array.from({ length: 25 }, (_, i) =>
          reply("mid", `n${String(i).padStart(2, "0")}`, i % 5 === 0 ? 1 : 0),
        ),
      );
      const ids = (l: { request_id: string }[]) => l.map((s) => s.request_id);
      expect(ids(await store.list({ limit: 50 }))).toEqual(["new", "mid", "old"]);
      expect(ids(await store.list({ limit: 2 }))).toEqual(["new", "mid"]);
      expect(ids(await store.list({ limit: 50, caller: "choria=alice" }))).toEqual(["mid", "old"]);
      expect(ids(await store.list({ limit: 50, agent: "puppet" }))).toEqual(["mid"]);
      expect(ids(await store.list({ limit: 50, beforeMs: T0 + 2000 }))).toEqual(["mid", "old"]);

      const page1 = await store.replies("mid", { limit: 10, offset: 0 });
      const page3 = await store.replies("mid", { limit: 10, offset: 20 });
      expect(page1.map((r) => r.sender)).toEqual(Array.from({ length: 10 }, (_, i) => `n0${i}`));
      expect(page3.map((r) => r.sender)).toEqual(["n20", "n21", "n22", "n23", "n24"]);
      expect(page1[0]).toEqual({
        sender: "n00",
        statuscode: 1,
        statusmsg: "failed",
        data: { from: "n00", n: [1, 2] },
        time: new Date(T0 + 1000).toISOString(),
      });
      const failed = await store.replies("mid", { limit: 100, offset: 0, failed: true });
      expect(failed.map((r) => r.sender)).toEqual(["n00", "n05", "n10", "n15", "n20"]);
      expect(await store.replies("mid", { limit: 100, offset: 0, failed: false })).toHaveLength(20);
    } finally {
      await store.close();
    }
  });

  it("lets two stores on one database write overlapping batches at once: each row once", async () => {
    const loc = await fresh();
    // both migrate at the same time, as two receivers starting together do
    const [s1, s2] = await Promise.all([ReplyStore.open(loc), ReplyStore.open(loc)]);
    try {
      const senders = Array.from({ length: 3000 }, (_, i) => `node${i}`);
      const batches = (from: number) =>
        Array.from({ length: 10 }, (_, b) =>
          senders.slice(from + b * 200, from + b * 200 + 400).map((s) => reply("req4", s)),
        );
      // s1 writes senders 0..2199, s2 writes 800..2999: 1400 overlap, some in the same batch twice
      const w = async (s: ReplyStore, from: number) => {
        let n = 0;
        for (const b of batches(from)) n += (await s.write([], b)).replies;
        return n;
      };
      const [n1, n2] = await Promise.all([w(s1, 0), w(s2, 800)]);
      expect(n1 + n2).toBe(3000);
      expect((await s1.counts()).replies).toBe(3000);
      expect((await s2.status("req4"))?.replied).toBe(3000);
    } finally {
      await s1.close();
      await s2.close();
    }
  });
});

it("says why a store cannot be opened", async () => {
  const file = join(dir, "a-file");
  writeFileSync(file, "");
  await expect(ReplyStore.open({ kind: "sqlite", path: join(file, "x.db") })).rejects.toThrow(StoreError);
  const closed = `postgres://postgres@127.0.0.1:1/postgres`;
  await expect(ReplyStore.open({ kind: "postgres", url: closed })).rejects.toThrow(/cannot (open|migrate)/);
});
