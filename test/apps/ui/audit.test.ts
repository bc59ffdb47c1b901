import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuditLog, AuditReader, auditEntryOf, type AuditEntry } from "../../../src/apps/ui/index.js";
import { connectNats, type NatsConnection } from "../../../src/core/connector/index.js";
import { silentLogger, sleep } from "../../../src/core/util/index.js";
import { startNats, type TestNats } from "../../helpers/nats.js";
import { auditRecord as record } from "./records.js";

describe("auditEntryOf", () => {
  it("flattens a signer audit record: the action from the request body, the filter as CLI flags", () => {
    expect(auditEntryOf(7, record("up=alice", "rpcutil", "inventory", "deny"))).toEqual({
      seq: 7,
      time: "2023-11-14T22:13:20.000Z",
      caller: "up=alice",
      agent: "rpcutil",
      action: "inventory",
      decision: "deny",
      reason: "no acl allows it",
      site: "lab",
      requestid: "req-up=alice-rpcutil-inventory",
      collective: "mcollective",
      sender: "console.example",
      filter: "-I web1 -A rpcutil -F role==db",
    });
  });

  it("keeps the claimed caller of an unverified request and refuses what is not an audit record", () => {
    const e = auditEntryOf(
      1,
      record("unverified", "rpcutil", "ping", "deny", { claimed_callerid: "up=eve" }),
    );
    expect(e).toMatchObject({ caller: "unverified", claimedCaller: "up=eve", decision: "deny" });
    const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
    expect(auditEntryOf(2, enc({ protocol: "something.else" }))).toBeUndefined();
    expect(auditEntryOf(3, new TextEncoder().encode("{not json"))).toBeUndefined();
    expect(auditEntryOf(4, enc([1, 2]))).toBeUndefined();
    // discovery's body is "ping", not JSON: no action, still a record
    const disc = JSON.parse(new TextDecoder().decode(record("up=a", "discovery", "", "allow"))) as {
      request: { message: string };
    };
    disc.request.message = Buffer.from("ping").toString("base64");
    expect(auditEntryOf(5, enc(disc))).toMatchObject({ agent: "discovery", action: "" });
  });
});

describe("AuditLog", () => {
  const entry = (seq: number, caller: string, agent: string, decision: "allow" | "deny"): AuditEntry =>
    auditEntryOf(seq, record(caller, agent, "x", decision)) as AuditEntry;

  it("answers newest first, filtered by part of the caller, the agent and the decision, paged back", () => {
    const log = new AuditLog(100);
    log.add(entry(1, "up=alice", "rpcutil", "allow"));
    log.add(entry(2, "up=Bob", "puppet", "deny"));
    log.add(entry(3, "up=alice", "puppet", "deny"));
    log.add(entry(4, "up=bob", "rpcutil", "allow"));
    const seqs = (q: Parameters<AuditLog["query"]>[0]) => log.query(q).records.map((e) => e.seq);
    expect(seqs({})).toEqual([4, 3, 2, 1]);
    expect(seqs({ caller: "BOB" })).toEqual([4, 2]);
    expect(seqs({ agent: "puppet" })).toEqual([3, 2]);
    expect(seqs({ agent: "pupp" })).toEqual([]);
    expect(seqs({ decision: "deny", caller: "alice" })).toEqual([3]);
    expect(log.query({ limit: 2 })).toMatchObject({ matched: 4 });
    expect(seqs({ limit: 2 })).toEqual([4, 3]);
    expect(seqs({ limit: 2, before: 3 })).toEqual([2, 1]);
  });

  it("holds at most about `keep` records, dropping the oldest", () => {
    const log = new AuditLog(10);
    for (let i = 1; i <= 100; i++) log.add(entry(i, "up=a", "rpcutil", "allow"));
    expect(log.size).toBeLessThanOrEqual(11);
    expect(log.query({ limit: 1 }).records[0]?.seq).toBe(100);
    expect(Math.min(...log.query({ limit: 500 }).records.map((e) => e.seq))).toBeGreaterThan(85);
  });
});

describe("AuditReader", () => {
  let nats: TestNats;
  let nc: NatsConnection;
  let store: string;
  beforeAll(async () => {
    store = mkdtempSync(join(tmpdir(), "chorus-ui-audit-js-"));
    nats = await startNats(`jetstream { store_dir: "${store}" }`);
    nc = await connectNats({ servers: [nats.url], name: "ui-audit", logger: silentLogger });
  }, 30_000);
  afterAll(async () => {
    await nc?.close();
    await nats?.stop();
    rmSync(store, { recursive: true, force: true });
  });

  it("waits for a missing stream, then reads its newest records and follows new ones", async () => {
    const said: string[] = [];
    const log = { ...silentLogger, info: (m: unknown) => void said.push(String(m)) };
    const reader = new AuditReader({ nc, stream: "UI_AUDIT", log, keep: 3, retryMs: 100 });
    reader.start();
    try {
      for (let i = 0; i < 50 && !/no audit stream/.test(reader.note ?? ""); i++) await sleep(20);
      expect(reader.note).toMatch(/no audit stream UI_AUDIT yet/);

      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: "UI_AUDIT", subjects: ["ui.audit"] });
      const js = jetstream(nc);
      for (const who of ["a", "b", "c", "d", "e"])
        await js.publish("ui.audit", record(`up=${who}`, "rpcutil", "ping", "allow"));
      // starts from the newest `keep`
      for (let i = 0; i < 100 && reader.log.size < 3; i++) await sleep(20);
      expect(reader.note).toBeUndefined();
      expect(reader.log.query({}).records.map((e) => e.caller)).toEqual(["up=e", "up=d", "up=c"]);

      // then follows: garbage is skipped, the next record arrives
      await js.publish("ui.audit", "not a record");
      await js.publish("ui.audit", record("up=f", "puppet", "disable", "deny"));
      for (let i = 0; i < 100 && reader.log.query({ decision: "deny" }).matched === 0; i++) await sleep(20);
      expect(reader.log.query({ decision: "deny" }).records[0]).toMatchObject({
        caller: "up=f",
        agent: "puppet",
        action: "disable",
      });
      expect(reader.log.query({}).records.map((e) => e.seq)).toEqual([7, 5, 4, 3]);
      // one line for the missing stream, not one per retry
      expect(said.filter((w) => /no audit stream/.test(w))).toHaveLength(1);
    } finally {
      const t0 = Date.now();
      await reader.stop();
      expect(Date.now() - t0).toBeLessThan(2_000);
    }
  }, 30_000);
});
