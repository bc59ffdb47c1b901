import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ASYNC_RECORD_PROTOCOL,
  ASYNC_REPLIES_STREAM,
  Client,
  ClientError,
  publishAsyncRecord,
  type AsyncRequestRecord,
} from "../../src/client/index.js";
import type { NatsConnection } from "../../src/core/connector/index.js";
import {
  ASYNC_RECORD_WILDCARD,
  ASYNC_REPLY_WILDCARD,
  asyncRecordSubject,
  asyncReplySubject,
  decodeTransport,
} from "../../src/core/protocol/index.js";
import { startSecureFleet, type SecureFleet } from "../helpers/fleet.js";
import { startServerResponder, TEST_DDL, type Responder } from "./fleet.js";

// requestAsync as `chorus req --async` runs it: the dev setup's client (TLS, NATS JWT
// with the ACLs its token grants) against responders holding real server credentials,
// with the replies stream a receiver would create.
const NODES = ["s1.lab", "s2.lab"];
let fleet: SecureFleet;
let admin: Client;
let jsm: JetStreamManager;
const responders: Responder[] = [];

async function createRepliesStream(): Promise<void> {
  await jsm.streams.add({
    name: ASYNC_REPLIES_STREAM,
    subjects: [ASYNC_REPLY_WILDCARD, ASYNC_RECORD_WILDCARD],
    duplicate_window: 120 * 1e9,
  });
}

async function deleteStream(name: string): Promise<void> {
  await jsm.streams.delete(name).catch(() => false);
}

/** Every message in the replies stream, in stream order. */
async function streamMessages(): Promise<{ subject: string; data: Uint8Array; msgId?: string }[]> {
  const info = await jsm.streams.info(ASYNC_REPLIES_STREAM);
  const out = [];
  if (info.state.messages === 0) return [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
    const m = await jsm.streams.getMessage(ASYNC_REPLIES_STREAM, { seq });
    if (!m) continue;
    const msgId = m.header.get("Nats-Msg-Id");
    out.push({ subject: m.subject, data: m.data, ...(msgId && { msgId }) });
  }
  return out;
}

async function waitFor(cond: () => Promise<boolean>, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Runs `fn` with a fresh client and, unless `stream` is null, a fresh stream of that
 * name (the replies stream's subjects, or only the records' for another name).
 */
async function withClient(stream: string | null, fn: (c: Client) => Promise<void>): Promise<void> {
  if (stream === ASYNC_REPLIES_STREAM) await createRepliesStream();
  else if (stream !== null) await jsm.streams.add({ name: stream, subjects: [ASYNC_RECORD_WILDCARD] });
  const c = await Client.fromConfigFile(fleet.setup.clientConfig, { discoveryTimeoutMs: 1000 });
  c.registerDDL(TEST_DDL);
  try {
    await fn(c);
  } finally {
    await c.close();
    if (stream !== null) await deleteStream(stream);
  }
}

/** Agent requests (not discovery) the responders received so far. */
function agentRequests(): number {
  return responders.reduce((n, r) => n + r.received.filter((x) => x.request.agent !== "discovery").length, 0);
}

beforeAll(async () => {
  fleet = await startSecureFleet({ servers: NODES });
  admin = await Client.fromConfigFile(fleet.setup.adminClientConfig);
  jsm = await jetstreamManager(await admin.connect());
  for (const [identity, path] of Object.entries(fleet.setup.serverConfigs)) {
    responders.push(
      await startServerResponder(path, identity, {
        // s2 fails, so the stored replies carry both outcomes
        handler: (_action, data) =>
          identity === "s2.lab"
            ? { statuscode: 1, statusmsg: "failed on purpose", data: {} }
            : { statuscode: 0, statusmsg: "OK", data: { message: data.message } },
      }),
    );
  }
}, 60_000);

afterAll(async () => {
  await Promise.all(responders.map((r) => r.stop()));
  await admin?.close();
  await fleet?.stop();
});

describe("requestAsync", () => {
  it("stores the record before the request goes out; the replies land in the stream", async () => {
    await withClient(ASYNC_REPLIES_STREAM, async (c) => {
      const r = await c.requestAsync("testagent", "echo", { message: "hi" }, { discoveryWindowed: true });
      expect(r.sent).toBe(true);
      expect([...r.nodes].sort()).toEqual(NODES);
      expect(r.discovered).toBe(2);
      expect(r.replyTo).toBe(asyncReplySubject(c.collective, c.callerId, r.requestId));
      expect(r.publishedMs).toBeGreaterThan(Date.now() - 10_000);
      await waitFor(async () => (await streamMessages()).length === 3);
      const [first, ...replies] = await streamMessages();
      // the record is first in the stream: a receiver knows the request before any reply
      expect(first?.subject).toBe(asyncRecordSubject(c.callerId, r.requestId));
      expect(first?.msgId).toBe(`rec-${r.requestId}`);
      const rec = JSON.parse(Buffer.from(first?.data ?? []).toString()) as AsyncRequestRecord;
      expect(rec).toMatchObject({
        protocol: ASYNC_RECORD_PROTOCOL,
        request_id: r.requestId,
        agent: "testagent",
        action: "echo",
        caller: c.callerId,
        collective: c.collective,
        reply_to: r.replyTo,
        discovered: 2,
        ttl: 60,
      });
      expect([...rec.nodes].sort()).toEqual(NODES);
      expect(Math.abs(Date.parse(rec.time) - Date.now())).toBeLessThan(10_000);
      expect(replies.map((m) => m.subject)).toEqual([r.replyTo, r.replyTo]);
      expect(replies.map((m) => decodeTransport(m.data).transport.headers.sender).sort()).toEqual(NODES);
    });
  });

  it("broadcast mode: one message with the filter, replies in the stream", async () => {
    await withClient(ASYNC_REPLIES_STREAM, async (c) => {
      const r = await c.requestAsync(
        "testagent",
        "echo",
        { message: "b" },
        { mode: "broadcast", nodes: NODES },
      );
      expect(r.sent).toBe(true);
      await waitFor(async () => (await streamMessages()).length === 3);
      const subjects = (await streamMessages()).map((m) => m.subject);
      expect(subjects[0]).toBe(asyncRecordSubject(c.callerId, r.requestId));
      expect(subjects.slice(1)).toEqual([r.replyTo, r.replyTo]);
    });
  });

  it("without the replies stream: a clear error and no request sent", async () => {
    await withClient(null, async (c) => {
      const before = agentRequests();
      const err = await c
        .requestAsync("testagent", "echo", { message: "x" }, { nodes: NODES })
        .catch((e) => e);
      expect(err).toBeInstanceOf(ClientError);
      expect((err as ClientError).code).toBe("no_replies_stream");
      expect((err as Error).message).toMatch(/CHORUS_REPLIES stream is missing.*start a receiver/);
      await new Promise((r) => setTimeout(r, 300));
      expect(agentRequests()).toBe(before);
    });
  });

  it("a record stored by another stream is refused, and nothing is sent", async () => {
    await withClient("NOT_REPLIES", async (c) => {
      const before = agentRequests();
      const err = await c
        .requestAsync("testagent", "echo", { message: "x" }, { nodes: NODES })
        .catch((e) => e);
      expect((err as ClientError).code).toBe("record_failed");
      expect((err as Error).message).toMatch(/request record was not stored/);
      await new Promise((r) => setTimeout(r, 300));
      expect(agentRequests()).toBe(before);
    });
  });

  it("a client cannot publish a record under another caller's hash", async () => {
    await withClient(ASYNC_REPLIES_STREAM, async (c) => {
      const nc: NatsConnection = await c.connect();
      const record = (caller: string, id: string): AsyncRequestRecord => ({
        protocol: ASYNC_RECORD_PROTOCOL,
        request_id: id,
        agent: "rpcutil",
        action: "ping",
        caller,
        collective: c.collective,
        reply_to: asyncReplySubject(c.collective, caller, id),
        nodes: ["s1.lab"],
        discovered: 1,
        time: new Date().toISOString(),
        ttl: 60,
      });
      const err = await publishAsyncRecord(nc, record("up=mallory", "forged1"), 2000).catch((e) => e);
      expect((err as ClientError).code).toBe("record_denied");
      expect((err as Error).message).toContain(asyncRecordSubject("up=mallory", "forged1"));
      // its own caller's record goes through on the same connection
      await publishAsyncRecord(nc, record(c.callerId, "own1"), 2000);
      expect((await streamMessages()).map((m) => m.subject)).toEqual([
        asyncRecordSubject(c.callerId, "own1"),
      ]);
    });
  });

  it("sends nothing and stores no record when nothing matched", async () => {
    await withClient(ASYNC_REPLIES_STREAM, async (c) => {
      const r = await c.requestAsync(
        "testagent",
        "echo",
        { message: "x" },
        { filter: { identity: ["/^nobody$/"] } },
      );
      expect(r).toMatchObject({ sent: false, discovered: 0, nodes: [], publishedMs: 0 });
      expect(await streamMessages()).toEqual([]);
    });
  });

  it("refuses options that need waiting for replies, before any traffic", async () => {
    await withClient(null, async (c) => {
      const before = agentRequests();
      const cases: [Record<string, unknown>, string, RegExp][] = [
        [{ batchSize: 1 }, "batchSize", /batchSize cannot be used with an asynchronous request/],
        [{ canary: 1 }, "canary", /canary cannot/],
        [{ retries: 1 }, "retries", /retries cannot/],
        [{ batchSleepMs: 5 }, "batchSleepMs", /batchSleepMs cannot/],
        [{ replyTo: "x.y" }, "replyTo", /replyTo cannot.*asynchronous reply subject/],
        [{ mode: "service" }, "mode=service", /service cannot.*no nodes to count/],
      ];
      for (const [opts, option, msg] of cases) {
        const err = await c.requestAsync("testagent", "echo", { message: "x" }, opts).catch((e) => e);
        expect(err).toBeInstanceOf(ClientError);
        expect(err).toMatchObject({ code: "bad_option", option });
        expect((err as Error).message).toMatch(msg);
      }
      expect(agentRequests()).toBe(before);
    });
  });
});
