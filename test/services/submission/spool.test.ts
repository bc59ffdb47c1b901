import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { NatsConnection } from "../../../src/core/connector/index.js";
import { parseConfig } from "../../../src/core/config/index.js";
import { sign as edSign, verify as edVerify } from "../../../src/core/security/index.js";
import { logLine } from "../../../src/core/util/index.js";
import {
  Spool,
  SubmissionError,
  parseSize,
  submissionSettings,
} from "../../../src/services/submission/index.js";
import { startJsBroker, type Cred, type JsBroker } from "./jsbroker.js";

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), "chorus-spool-"));
  dirs.push(d);
  return d;
};
const spoolIn = (dir: string, extra: Partial<ConstructorParameters<typeof Spool>[0]> = {}) =>
  new Spool({ dir, identity: "node1.example.net", collective: "mcollective", ...extra });

afterEach(() => {
  while (dirs.length) rmSync(dirs.pop()!, { recursive: true, force: true });
});

describe("spool storage", () => {
  it("writes one file per message in P<priority> named <unixnano>-<id>.msg", () => {
    const s = spoolIn(tmp());
    const m = s.submit({ subject: "x.y", payload: "hello", sender: "test", priority: 2, reliable: true });
    const files = readdirSync(s.priorityDir(2));
    expect(files).toEqual([`${m.created.padStart(20, "0")}-${m.id}.msg`]);
    const stored = JSON.parse(readFileSync(join(s.priorityDir(2), files[0]!), "utf8"));
    expect(stored).toMatchObject({ subject: "x.y", reliable: true, priority: 2, sender: "test", tries: 0 });
    expect(Buffer.from(stored.payload, "base64").toString()).toBe("hello");
    expect(s.stats().pending).toEqual([0, 0, 1, 0, 0]);
    // no temp files are left behind
    expect(readdirSync(s.priorityDir(2)).filter((f) => f.startsWith("."))).toEqual([]);
  });

  it("names files in submission order", () => {
    const s = spoolIn(tmp());
    const ids = Array.from(
      { length: 50 },
      (_, i) => s.submit({ subject: "o", payload: String(i), sender: "t" }).id,
    );
    const files = readdirSync(s.priorityDir(4)).sort();
    expect(files.map((f) => f.slice(21, -4))).toEqual(ids);
  });

  it("rejects bad messages", () => {
    const s = spoolIn(tmp());
    const bad = (r: Parameters<Spool["submit"]>[0], re: RegExp) => {
      expect(() => s.submit(r)).toThrow(re);
    };
    bad({ subject: "", payload: "x", sender: "s" }, /subject/);
    bad({ subject: "a.*", payload: "x", sender: "s" }, /subject/);
    bad({ subject: "a b", payload: "x", sender: "s" }, /subject/);
    bad({ subject: "a", payload: "", sender: "s" }, /payload is required/);
    bad({ subject: "a", payload: "x", sender: "" }, /sender/);
    bad({ subject: "a", payload: "x", sender: "s", priority: 5 }, /priority must be 0..4/);
    bad({ subject: "a", payload: "x", sender: "s", ttlMs: 0 }, /ttl/);
    bad({ subject: "a", payload: "x", sender: "s", ttlMs: 40 * 86_400_000 }, /31 days/);
    bad({ subject: "a", payload: "x", sender: "s", maxTries: 0 }, /max tries/);
    bad({ subject: "a", payload: "x", sender: "s", headers: { "Choria-X": "1" } }, /reserved/);
    bad({ subject: "a", payload: "x", sender: "s", headers: { "nats-x": "1" } }, /reserved/);
    bad({ subject: "a", payload: Buffer.alloc(1024 * 1024 + 1), sender: "s" }, /limit/);
  });

  it("refuses with a clear error when a priority is full", () => {
    const s = spoolIn(tmp(), { maxSpoolSize: 3 });
    for (let i = 0; i < 3; i++) s.submit({ subject: "a", payload: "x", sender: "s", priority: 1 });
    let err: unknown;
    try {
      s.submit({ subject: "a", payload: "x", sender: "s", priority: 1 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SubmissionError);
    expect(err).toMatchObject({ code: "spool_full" });
    expect((err as Error).message).toMatch(/spool is full: priority 1 already holds 3 messages/);
    // other priorities have their own limit
    s.submit({ subject: "a", payload: "x", sender: "s", priority: 0 });
  });

  it("refuses when free disk is below the floor", () => {
    const s = spoolIn(tmp(), { minFreeBytes: Number.MAX_SAFE_INTEGER });
    expect(() => s.submit({ subject: "a", payload: "x", sender: "s" })).toThrow(/not enough free disk/);
    expect(s.stats().pending).toEqual([0, 0, 0, 0, 0]);
  });

  it("reads settings from a server config", () => {
    const cfg = parseConfig(
      [
        "identity = n1",
        "collectives = c1,c2",
        "plugin.choria.submission.spool = spool",
        "plugin.choria.submission.max_spool_size = 10",
        "plugin.choria.submission.min_free_disk = 1MB",
      ].join("\n"),
      "/etc/chorus/server.conf",
    );
    expect(submissionSettings(cfg)).toEqual({
      spool: "/etc/chorus/spool",
      maxSpoolSize: 10,
      minFreeBytes: 1024 * 1024,
      identity: "n1",
      mainCollective: "c1",
    });
    expect(submissionSettings(parseConfig("identity = n1", "/x.conf")).spool).toBeUndefined();
    expect(() =>
      submissionSettings(parseConfig("plugin.choria.submission.max_spool_size = 0", "/x.conf")),
    ).toThrow(/at least 1/);
    expect(parseSize("2g")).toBe(2 * 1024 ** 3);
    expect(parseSize("lots")).toBeUndefined();
  });
});

describe("spool publishing", () => {
  let broker: JsBroker;
  let jsm: JetStreamManager;
  let serverCred: Cred;

  beforeAll(async () => {
    broker = await startJsBroker();
    const admin = await broker.connect(await broker.client("choria=admin", { streams_admin: true }));
    jsm = await jetstreamManager(admin);
    await jsm.streams.add({
      name: "SUBMISSIONS",
      subjects: ["mcollective.submission.in.>"],
      duplicate_window: 120_000_000_000,
    });
    serverCred = await broker.server("node1.example.net", ["mcollective"], { submission: true });
  });

  afterAll(async () => {
    await broker?.stop();
  });

  async function streamMsgs(subjectFilter: string) {
    const out: { subject: string; data: string; headers: Record<string, string> }[] = [];
    const info = await jsm.streams.info("SUBMISSIONS");
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const m = await jsm.streams.getMessage("SUBMISSIONS", { seq }).catch(() => null);
      if (!m || !m.subject.startsWith(subjectFilter)) continue;
      const headers: Record<string, string> = {};
      for (const [k, v] of m.header ?? []) headers[k] = v[0] ?? "";
      out.push({ subject: m.subject, data: m.string(), headers });
    }
    return out;
  }

  let nc: NatsConnection;
  beforeAll(async () => {
    nc = await broker.connect(serverCred);
  });

  it("publishes reliable messages with Choria headers to <collective>.submission.in.<subject>", async () => {
    const dir = tmp();
    const s = spoolIn(dir, {
      signer: { token: "TOKEN", sign: (d) => edSign(serverCred.kp.seedHex, d) },
    });
    const m = s.submit({
      subject: "hdr.test",
      payload: "p1",
      sender: "tester",
      reliable: true,
      priority: 1,
      sign: true,
      headers: { "X-Extra": "yes" },
    });
    await s.drainOnce(nc);
    expect(s.stats()).toMatchObject({ pending: [0, 0, 0, 0, 0], published: 1 });
    const [got] = await streamMsgs("mcollective.submission.in.hdr.test");
    expect(got!.data).toBe("p1");
    expect(got!.headers).toMatchObject({
      "Nats-Msg-Id": m.id,
      "Choria-Priority": "1",
      "Choria-Created": m.created,
      "Choria-Sender": "tester",
      "Choria-Reliable": "1",
      "Choria-Tries": "0",
      "Choria-Identity": "node1.example.net",
      "Choria-Token": "TOKEN",
      "X-Extra": "yes",
    });
    const sig = Buffer.from(got!.headers["Choria-Signature"]!, "hex");
    expect(edVerify(serverCred.kp.publicHex, Buffer.from("p1"), sig)).toBe(true);
  });

  it("sends unreliable messages once and drops them", async () => {
    const s = spoolIn(tmp());
    s.submit({ subject: "unrel", payload: "u1", sender: "t" });
    await s.drainOnce(nc);
    await nc.flush();
    expect(s.stats().pending).toEqual([0, 0, 0, 0, 0]);
    expect((await streamMsgs("mcollective.submission.in.unrel")).map((m) => m.data)).toEqual(["u1"]);
    expect(
      (await streamMsgs("mcollective.submission.in.unrel"))[0]!.headers["Choria-Reliable"],
    ).toBeUndefined();
  });

  it("drops expired messages instead of sending them", async () => {
    const s = spoolIn(tmp());
    s.submit({ subject: "expired", payload: "e", sender: "t", reliable: true, ttlMs: 1 });
    await new Promise((r) => setTimeout(r, 10));
    await s.drainOnce(nc);
    expect(s.stats()).toMatchObject({ expired: 1, published: 0, pending: [0, 0, 0, 0, 0] });
    expect(await streamMsgs("mcollective.submission.in.expired")).toEqual([]);
  });

  it("retries reliable messages with backoff, in order, and gives up after max tries", async () => {
    const s = spoolIn(tmp(), { ackTimeoutMs: 200, retryMinMs: 50, retryMaxMs: 100 });
    // no stream listens here: every reliable publish fails (no responders)
    s.submit({ subject: "x", payload: "1", sender: "t", reliable: true, maxTries: 2 });
    s.submit({ subject: "x", payload: "2", sender: "t", reliable: true, maxTries: 5 });
    const other = await broker.connect(
      await broker.server("node2.example.net", ["other"], { submission: true }),
    );
    const s2 = new Spool({
      dir: s.dir,
      identity: "node2.example.net",
      collective: "other",
      ackTimeoutMs: 200,
      retryMinMs: 50,
      retryMaxMs: 100,
    });
    await s2.drainOnce(other);
    let st = s2.stats();
    // the first failed; the second was held back to keep order
    expect(st.retries).toBe(1);
    expect(st.pending[4]).toBe(2);
    await new Promise((r) => setTimeout(r, 150));
    await s2.drainOnce(other);
    st = s2.stats();
    expect(st.exhausted).toBe(1);
    expect(st.pending[4]).toBe(1);
  });

  it("keeps undelivered messages across a restart", async () => {
    const dir = tmp();
    const a = spoolIn(dir);
    for (let i = 0; i < 5; i++)
      a.submit({ subject: "restart", payload: `r${i}`, sender: "t", reliable: true });
    await a.stop();
    const b = spoolIn(dir);
    expect(b.stats().pending[4]).toBe(5);
    await b.drainOnce(nc);
    expect((await streamMsgs("mcollective.submission.in.restart")).map((m) => m.data)).toEqual([
      "r0",
      "r1",
      "r2",
      "r3",
      "r4",
    ]);
  });

  it("lets the stream drop a resend after a crash between ack and delete", async () => {
    const s = spoolIn(tmp());
    s.submit({ subject: "dupe", payload: "once", sender: "t", reliable: true });
    const [file] = readdirSync(s.priorityDir(4));
    const saved = readFileSync(join(s.priorityDir(4), file!));
    await s.drainOnce(nc);
    // the node died after the ack but before the file was removed
    writeFileSync(join(s.priorityDir(4), file!), saved);
    await s.drainOnce(nc);
    expect(s.stats()).toMatchObject({ published: 2, duplicates: 1, pending: [0, 0, 0, 0, 0] });
    expect((await streamMsgs("mcollective.submission.in.dupe")).map((m) => m.data)).toEqual(["once"]);
  });

  it("moves corrupt files aside and reports them", async () => {
    const dir = tmp();
    const logs: string[] = [];
    const s = spoolIn(dir, { logger: { info() {}, warn() {}, error: (m) => logs.push(logLine(m)) } });
    s.submit({ subject: "corrupt", payload: "good1", sender: "t", reliable: true });
    writeFileSync(join(s.priorityDir(4), "00000000000000000001-bad.msg"), "{not json");
    writeFileSync(join(s.priorityDir(4), "00000000000000000002-half.msg"), JSON.stringify({ id: "x" }));
    s.submit({ subject: "corrupt", payload: "good2", sender: "t", reliable: true });
    await s.drainOnce(nc);
    const st = s.stats();
    expect(st.corrupt).toBe(2);
    expect(st.pending).toEqual([0, 0, 0, 0, 0]);
    expect(readdirSync(join(dir, "corrupt")).sort()).toEqual([
      "P4-00000000000000000001-bad.msg",
      "P4-00000000000000000002-half.msg",
    ]);
    expect(st.corruptFiles).toHaveLength(2);
    expect(logs.join("\n")).toMatch(/corrupt spool file .*bad\.msg \(not JSON/);
    expect((await streamMsgs("mcollective.submission.in.corrupt")).map((m) => m.data)).toEqual([
      "good1",
      "good2",
    ]);
  });

  it("drains in the background once started", async () => {
    const s = spoolIn(tmp(), { pollIntervalMs: 50 });
    s.start(nc);
    for (let i = 0; i < 20; i++)
      s.submit({ subject: "bg", payload: `b${i}`, sender: "t", reliable: true, priority: i % 5 });
    const deadline = Date.now() + 5000;
    while (s.stats().pending.some((n) => n > 0) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    await s.stop();
    expect(s.stats().published).toBe(20);
    expect(await streamMsgs("mcollective.submission.in.bg")).toHaveLength(20);
  });
});
