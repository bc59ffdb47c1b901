// The receiver in-process against a real TLS + JWT broker with JetStream and real SQLite:
// exactly-once storage through duplicates and redeliveries, drops, direct mode, the HTTP API.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { AckPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ReceiverApi } from "../../../src/client/index.js";
import { loadSeedFile } from "../../../src/core/security/index.js";
import { REPLIES_STREAM, ReceiverService, type RequestStatus } from "../../../src/services/receiver/index.js";
import {
  CALLER,
  metric,
  newRequestId,
  recordBytes,
  recordSubjectFor,
  receiverFleet,
  replyBytes,
  replySubjectFor,
  silent,
  tamperedReplyBytes,
  until,
  type ReceiverFleet,
} from "./fixture.js";

let f: ReceiverFleet;
const running: ReceiverService[] = [];

beforeAll(async () => {
  f = await receiverFleet();
}, 30_000);
afterEach(async () => {
  for (const r of running.splice(0)) await r.stop();
});
afterAll(async () => {
  await f?.stop();
});

async function receiver(over: Record<string, unknown> = {}): Promise<ReceiverService> {
  const r = ReceiverService.fromFile(f.writeConfig(over), {
    logger: silent,
    watchIntervalMs: 50,
    watchWaitMs: 300,
  });
  running.push(r);
  await r.start();
  return r;
}

const api = (r: ReceiverService, path: string) => {
  const a = r.httpAddress as { port: number };
  return fetch(`http://127.0.0.1:${a.port}${path}`);
};

async function publishReplies(id: string, senders: string[], o: { statuscode?: number } = {}): Promise<void> {
  const subject = replySubjectFor(id);
  for (const s of senders) f.pub.publish(subject, replyBytes(id, s, o));
  await f.pub.flush();
}

describe("stream mode", () => {
  it("stores records and replies by request id exactly once, whatever is published twice", async () => {
    const r = await receiver({ consumer: "EXACTLY" });
    const id = newRequestId();
    const nodes = Array.from({ length: 50 }, (_, i) => `n${i}.example.net`);
    await f.publishRecord({ request_id: id, nodes });
    // every reply three times (a node retrying, a republishing proxy), the record again
    for (let i = 0; i < 3; i++) await publishReplies(id, nodes);
    // a JetStream republish of the record after a lost ack is deduplicated by the stream;
    // a plain second publish reaches the receiver and is stored once all the same
    await f.publishRecord({ request_id: id, nodes });
    f.pub.publish(recordSubjectFor(id), recordBytes({ request_id: id, nodes }));
    await until(async () => (await metric(r, "chorus_receiver_received_total", { kind: "reply" })) === 150);
    await until(async () => (await metric(r, "chorus_receiver_received_total", { kind: "record" })) === 2);
    await r.flush();
    const st = (await r.store?.status(id)) as RequestStatus;
    expect(st).toMatchObject({
      known: true,
      caller: CALLER,
      discovered: 50,
      replied: 50,
      ok: 50,
      complete: true,
    });
    expect(await r.store?.counts()).toMatchObject({ replies: 50 });
    expect(await metric(r, "chorus_receiver_stored_total", { kind: "reply" })).toBe(50);
    expect(await metric(r, "chorus_receiver_duplicates_total", { kind: "reply" })).toBe(100);
    expect(await metric(r, "chorus_receiver_duplicates_total", { kind: "record" })).toBe(1);
    // everything was acked after its commit: nothing waits for redelivery
    const jsm = await jetstreamManager(f.pub);
    await until(async () => {
      const ci = await jsm.consumers.info(REPLIES_STREAM, "EXACTLY");
      return ci.num_ack_pending === 0 && ci.num_pending === 0;
    });
  });

  it("stores messages another consumer held and never acked once they are redelivered", async () => {
    const jsm = await jetstreamManager(f.pub);
    // the consumer exists before the receiver, as after a receiver died holding messages
    await jsm.consumers.add(REPLIES_STREAM, {
      durable_name: "REDELIVER",
      ack_policy: AckPolicy.Explicit,
      ack_wait: 1_000_000_000,
      deliver_policy: (await import("@nats-io/jetstream")).DeliverPolicy.New,
    });
    const id = newRequestId();
    const nodes = Array.from({ length: 20 }, (_, i) => `r${i}`);
    await f.publishRecord({ request_id: id, nodes });
    await publishReplies(id, nodes);
    // a "receiver" that takes all 21 and dies without acking any
    const held = await jetstream(f.pub).consumers.get(REPLIES_STREAM, "REDELIVER");
    const batch = await held.fetch({ max_messages: 21, expires: 2000 });
    let n = 0;
    for await (const _m of batch) n++;
    expect(n).toBe(21);
    const r = await receiver({ consumer: "REDELIVER", ack_wait: "1s" });
    await until(async () => (await r.store?.status(id))?.complete === true, 15_000, "redelivered replies");
    expect((await r.store?.status(id))?.replied).toBe(20);
    // each of the 21 was delivered twice: to the dead holder, then to the receiver
    const ci = await jsm.consumers.info(REPLIES_STREAM, "REDELIVER");
    expect(ci.delivered.consumer_seq).toBeGreaterThanOrEqual(42);
  });

  it("drops and counts malformed replies and records and forged record subjects, and acks them", async () => {
    const r = await receiver({ consumer: "DROPS" });
    const id = newRequestId();
    const subject = replySubjectFor(id);
    f.pub.publish(subject, Buffer.from("not json"));
    f.pub.publish(subject, Buffer.from(JSON.stringify({ protocol: "choria:transport:v2", data: "!!" })));
    // a reply whose body was changed after hashing
    f.pub.publish(subject, tamperedReplyBytes(id, "n1"));
    // a reply to another request published under this one
    f.pub.publish(subject, replyBytes(id, "n2", { inner: newRequestId() }));
    f.pub.publish(replySubjectFor("bad-id"), replyBytes("bad-id", "n3"));
    const js = jetstream(f.pub);
    // a record under another caller's md5, one whose id is not its subject's, and junk
    await js.publish(recordSubjectFor(id, "choria=mallory"), recordBytes({ request_id: id, nodes: ["n1"] }));
    await js.publish(recordSubjectFor(id), recordBytes({ request_id: newRequestId(), nodes: ["n1"] }));
    await js.publish(recordSubjectFor(id), Buffer.from("{}"));
    await js.publish(recordSubjectFor(id), Buffer.from("[1"));
    // and one good reply, stored
    await publishReplies(id, ["good"]);
    await until(async () => (await r.store?.status(id))?.replied === 1);
    const dropped = async (reason: string) => metric(r, "chorus_receiver_dropped_total", { reason });
    await until(async () => (await dropped("malformed")) === 4);
    expect(await dropped("hash")).toBe(1);
    expect(await dropped("forged")).toBe(3);
    expect(await dropped("bad_id")).toBe(1);
    // none of the records was stored
    expect((await r.store?.status(id))?.known).toBe(false);
    const jsm = await jetstreamManager(f.pub);
    await until(async () => {
      const ci = await jsm.consumers.info(REPLIES_STREAM, "DROPS");
      return ci.num_ack_pending === 0 && ci.num_pending === 0 && ci.num_redelivered === 0;
    });
  });
});

describe("verify_signatures", () => {
  it("stores replies signed by their node and drops unsigned or misattributed ones", async () => {
    const r = await receiver({ consumer: "SIGNED", verify_signatures: true });
    const node = "node1.example.net";
    const cred = join(f.fleet.setup.dir, "credentials", `server-${node}`);
    const signer = {
      seedHex: loadSeedFile(`${cred}.seed`).seedHex,
      token: readFileSync(`${cred}.jwt`, "utf8").trim(),
    };
    const id = newRequestId();
    const subject = replySubjectFor(id);
    f.pub.publish(subject, replyBytes(id, node, { signer }));
    f.pub.publish(subject, replyBytes(id, "unsigned.example.net"));
    // node1's key and token, claiming to be another node
    f.pub.publish(subject, replyBytes(id, "other.example.net", { signer }));
    await f.pub.flush();
    // the new consumer also replays the earlier tests' unsigned replies: all dropped too
    await until(async () => (await r.store?.status(id))?.replied === 1);
    const jsm = await jetstreamManager(f.pub);
    await until(async () => {
      const ci = await jsm.consumers.info(REPLIES_STREAM, "SIGNED");
      return ci.num_ack_pending === 0 && ci.num_pending === 0;
    });
    const dropped = await metric(r, "chorus_receiver_dropped_total", { reason: "signature" });
    expect(dropped).toBeGreaterThanOrEqual(2);
    expect((await r.store?.replies(id, { limit: 10, offset: 0 }))?.map((x) => x.sender)).toEqual([node]);
  });
});

describe("direct mode", () => {
  it("shares the replies between two receivers of the queue group, each stored once", async () => {
    const store = "sqlite:direct-shared.db";
    const opts = { mode: "direct", store, choria_config: f.directClientConfig, http_listen: "" };
    const r1 = await receiver(opts);
    const r2 = await receiver(opts);
    const id = newRequestId();
    const nodes = Array.from({ length: 400 }, (_, i) => `d${i}`);
    f.pub.publish(recordSubjectFor(id), recordBytes({ request_id: id, nodes }));
    await publishReplies(id, nodes);
    await until(async () => (await r1.store?.status(id))?.complete === true);
    const got1 = await metric(r1, "chorus_receiver_received_total", { kind: "reply" });
    const got2 = await metric(r2, "chorus_receiver_received_total", { kind: "reply" });
    expect(got1 + got2).toBe(400);
    // both took part: the queue group spreads messages
    expect(got1).toBeGreaterThan(0);
    expect(got2).toBeGreaterThan(0);
    expect((await r2.store?.counts())?.replies).toBe(400);
  });
});

describe("HTTP API", () => {
  it("lists, reports status, pages replies, refuses bad ids and queries, 404s unknown requests", async () => {
    const r = await receiver({ consumer: "API" });
    const id = newRequestId();
    const nodes = ["a1", "a2", "a3", "a4"];
    await f.publishRecord({ request_id: id, nodes, agent: "puppet" });
    await publishReplies(id, ["a1", "a2"]);
    await publishReplies(id, ["a3", "zz"], { statuscode: 4 });
    await until(async () => (await r.store?.status(id))?.replied === 4);

    const st = (await (await api(r, `/v1/requests/${id}`)).json()) as RequestStatus;
    expect(st).toMatchObject({
      request_id: id,
      agent: "puppet",
      discovered: 4,
      replied: 4,
      ok: 2,
      failed: 2,
    });
    expect(st).toMatchObject({ unexpected: 1, complete: false, known: true });

    const list = (await (await api(r, "/v1/requests?agent=puppet&limit=5")).json()) as {
      requests: RequestStatus[];
    };
    expect(list.requests.map((s) => s.request_id)).toEqual([id]);
    const none = (await (await api(r, `/v1/requests?before=2001-01-01T00:00:00Z`)).json()) as {
      requests: unknown[];
    };
    expect(none.requests).toEqual([]);

    const page = async (q: string) =>
      ((await (await api(r, `/v1/requests/${id}/replies${q}`)).json()) as { replies: { sender: string }[] })
        .replies;
    expect((await page("?limit=2")).map((x) => x.sender)).toEqual(["a1", "a2"]);
    expect((await page("?limit=2&offset=2")).map((x) => x.sender)).toEqual(["a3", "zz"]);
    expect((await page("?failed=true")).map((x) => x.sender)).toEqual(["a3", "zz"]);
    const one = (await page("?limit=1"))[0];
    expect(one).toMatchObject({ sender: "a1", statuscode: 0, statusmsg: "OK", data: { pong: "a1" } });

    for (const path of [
      "/v1/requests/bad-id!",
      "/v1/requests/bad-id!/replies",
      "/v1/requests/bad-id!/watch",
      `/v1/requests/${"x".repeat(65)}`,
      "/v1/requests?limit=0",
      "/v1/requests?limit=lots",
      "/v1/requests?before=yesterday",
      `/v1/requests/${id}/replies?offset=-1`,
    ]) {
      const res = await api(r, path);
      expect(res.status, path).toBe(400);
      expect(((await res.json()) as { error: string }).error, path).toMatch(/^invalid request: /);
    }
    const unknown = newRequestId();
    for (const path of [`/v1/requests/${unknown}`, `/v1/requests/${unknown}/replies`, "/v1/nothing"]) {
      const res = await api(r, path);
      expect(res.status, path).toBe(404);
      expect(((await res.json()) as { error: string }).error).toBeTruthy();
    }
    expect(await (await api(r, "/healthz")).json()).toEqual({ ok: true });
  });

  it("watch streams status events as replies arrive and a complete event at the end", async () => {
    const r = await receiver({ consumer: "WATCH" });
    const id = newRequestId();
    const nodes = ["w1", "w2", "w3"];
    await f.publishRecord({ request_id: id, nodes });
    const res = await api(r, `/v1/requests/${id}/watch`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/event-stream");
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    let text = "";
    const events: { event: string; data: RequestStatus }[] = [];
    const read = (async () => {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        text += Buffer.from(value).toString();
        let end: number;
        while ((end = text.indexOf("\n\n")) >= 0) {
          const block = text.slice(0, end);
          text = text.slice(end + 2);
          const ev = /^event: (\w+)\ndata: (.*)$/m.exec(block);
          if (ev) events.push({ event: ev[1] as string, data: JSON.parse(ev[2] as string) as RequestStatus });
        }
      }
    })();
    await until(() => events.length >= 1);
    expect(events[0]).toMatchObject({ event: "status", data: { replied: 0, complete: false } });
    await publishReplies(id, ["w1"]);
    await until(() => events.some((e) => e.data.replied === 1));
    await publishReplies(id, ["w2", "w3"]);
    // the server ends the stream after the complete event
    await read;
    const last = events.at(-1);
    expect(last).toMatchObject({ event: "complete", data: { replied: 3, complete: true } });
    expect(events.filter((e) => e.event === "status").at(-1)?.data.complete).toBe(true);

    const gone = await api(r, `/v1/requests/${newRequestId()}/watch`);
    expect(gone.status).toBe(404);
  }, 20_000);

  it("with http_token_file, only a caller with the bearer token reads replies; the rest get 401 and are counted", async () => {
    const tokenFile = join(f.fleet.setup.dir, "api.token");
    const token = "t0ken-for-the-receiver-api-0123456789";
    writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
    const r = await receiver({ http_token_file: tokenFile });
    const id = newRequestId();
    await f.publishRecord({ request_id: id, caller: CALLER, agent: "rpcutil", nodes: ["n1"] });
    const client = r.apiClient() as ReceiverApi;
    await until(async () => (await client.status(id).catch(() => undefined)) !== undefined);
    expect((await client.status(id)).request_id).toBe(id);
    const before = await metric(r, "chorus_receiver_http_unauthorized_total");
    const a = r.httpAddress as { port: number };
    const url = `http://127.0.0.1:${a.port}/v1/requests/${id}`;
    for (const auth of [undefined, "Bearer wrong-token-wrong-token", `Basic ${token}`, "Bearer"]) {
      const res = await fetch(url, auth ? { headers: { authorization: auth } } : {});
      expect(res.status, String(auth)).toBe(401);
      expect(((await res.json()) as { error: string }).error).toMatch(/needs a bearer token/);
    }
    expect(await metric(r, "chorus_receiver_http_unauthorized_total")).toBe(before + 4);
    // health stays open for load balancers and supervisors
    expect((await fetch(`http://127.0.0.1:${a.port}/healthz`)).status).toBe(200);
    const wrong = new ReceiverApi({ url: `http://127.0.0.1:${a.port}`, token: "nope-nope-nope-nope" });
    await expect(wrong.status(id)).rejects.toThrow(/401/);
  }, 20_000);

  it("refuses to start with a token file that is missing or too short", async () => {
    const short = join(f.fleet.setup.dir, "short.token");
    writeFileSync(short, "abc\n");
    await expect(receiver({ http_token_file: short })).rejects.toThrow(/at least 16 characters/);
    await expect(receiver({ http_token_file: join(f.fleet.setup.dir, "none.token") })).rejects.toThrow(
      /http_token_file: cannot read/,
    );
  });
});
