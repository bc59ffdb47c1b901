/**
 * The attack corpus: every attack a policy-denied (or merely curious) credential made
 * work against Chorus, replayed on every run against a real nats-server and a real
 * server started from its config file. Each case asserts the attack fails, that it is
 * counted under the documented reason, and that the node keeps serving others.
 * docs/security.md ("Attacks we test") lists the same cases with their counters.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  broadcastSubject,
  decodeTransport,
  directSubject,
  encodeMessage,
  encodeRequest,
  encodeSecureRequest,
  encodeTransport,
  newRequestId,
  nowNanos,
  replyPrefix,
  replySubject,
  type Filter,
} from "../../src/core/protocol/index.js";
import { sign } from "../../src/core/security/index.js";
import { Server, type AuditEntry, type DropReason } from "../../src/server/index.js";
import { startNats, type TestNats } from "../helpers/nats.js";
import {
  COLLECTIVE,
  auditedServerConfig,
  buildRequest,
  makeFixture,
  parseReply,
  quietLogger,
  sleep,
  type BuiltRequest,
  type Caller,
  type Fixture,
} from "./helpers.js";

// long enough that a backtracking engine needs minutes for the catastrophic regex (25 chars)
const ID = "attack-target.example.net";

let fx: Fixture;
let nats: TestNats;
let nc: NatsConnection;
let server: Server;
let mallory: Caller;
let cfgDir: string;
let auditFile: string;

beforeAll(async () => {
  fx = makeFixture();
  mallory = fx.caller({ callerid: "choria=mallory" });
  // big enough for the ~950 KB broadcasts of the cache-memory attack
  nats = await startNats("max_payload: 4MB");
  nc = await connect({ servers: nats.url });
  fx.serverSecurity(ID);
  cfgDir = join(fx.dir, "attackcfg");
  // rpcutil: the tester may, mallory is denied by the default
  auditFile = join(cfgDir, "audit", "audit.log");
  const conf = auditedServerConfig(fx, cfgDir, ID, nats.url, "audit/audit.log", [
    // one hour instead of the 5 h default, to prove the key is read
    "plugin.chorus.security.max_request_ttl = 1h",
  ]);
  server = await Server.fromConfigFile(conf, { logger: quietLogger });
  await server.start();
});

afterAll(async () => {
  await server?.stop();
  await nc?.close();
  await nats?.stop();
  fx?.cleanup();
});

const dropped = (r: DropReason): number => server.stats.dropped[r];

/** Publishes `bytes` and collects what arrives on `listen` for `waitMs`. */
async function sendAndListen(
  subject: string,
  bytes: Uint8Array,
  listen: string,
  waitMs = 250,
): Promise<Uint8Array[]> {
  const got: Uint8Array[] = [];
  const sub = nc.subscribe(listen, { callback: (_e, m) => void got.push(m.data) });
  await nc.flush();
  nc.publish(subject, bytes);
  await nc.flush();
  await sleep(waitMs);
  sub.unsubscribe();
  return got;
}

/** A legitimate ping by the tester, answered within `withinMs`: the node still serves others. */
async function stillServes(withinMs = 1000): Promise<number> {
  const req = buildRequest({ caller: fx.client, agent: "rpcutil", body: { action: "ping" } });
  const t0 = performance.now();
  const got = await new Promise<Uint8Array | undefined>((resolve) => {
    const timer = setTimeout(() => resolve(undefined), withinMs);
    const sub = nc.subscribe(req.replyTo, {
      max: 1,
      callback: (_e, m) => {
        clearTimeout(timer);
        resolve(m.data);
      },
    });
    void nc.flush().then(() => nc.publish(directSubject(COLLECTIVE, ID), req.bytes));
    void sub;
  });
  expect(got, "the node no longer answers a legitimate ping").toBeDefined();
  expect(parseReply(got as Uint8Array).body?.statuscode).toBe(0);
  return performance.now() - t0;
}

/** Re-wraps a captured request transport with another reply subject (the header is unsigned). */
function rewrap(req: BuiltRequest, reply: string): Buffer {
  const { inner } = decodeTransport(req.bytes);
  return encodeTransport(inner, { reply, sender: "mallory.example" });
}

/** A request signed by `caller` with hand-written JSON fields (values Chorus' encoder refuses). */
function handSigned(caller: Caller, patch: (json: string) => string, filter?: Filter): BuiltRequest {
  const id = newRequestId();
  const base = encodeRequest({
    message: encodeMessage(JSON.stringify({ agent: "rpcutil", action: "ping", data: {} })),
    id,
    sender: "mallory.example",
    caller: caller.callerid,
    collective: COLLECTIVE,
    agent: "rpcutil",
    ttl: 60,
    time: nowNanos(),
    ...(filter && { filter }),
  });
  const requestBytes = Buffer.from(patch(base.toString("utf8")), "utf8");
  const secure = encodeSecureRequest(requestBytes, sign(caller.kp.seedHex, requestBytes), caller.token);
  const replyTo = replySubject(COLLECTIVE, caller.callerid, id);
  return { bytes: encodeTransport(secure, { reply: replyTo }), id, replyTo };
}

function auditLines(): AuditEntry[] {
  return readFileSync(auditFile, "utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as AuditEntry);
}

describe("attacks we test", () => {
  it("1. replay: the same signed bytes sent 5 times run once; a re-signed copy with the same id is refused", async () => {
    const req = buildRequest({ caller: fx.client, agent: "rpcutil", body: { action: "ping" } });
    const before = dropped("replayed");
    const got: Uint8Array[] = [];
    const sub = nc.subscribe(req.replyTo, { callback: (_e, m) => void got.push(m.data) });
    await nc.flush();
    for (let i = 0; i < 5; i++) nc.publish(directSubject(COLLECTIVE, ID), req.bytes);
    await nc.flush();
    await sleep(300);
    expect(got).toHaveLength(1);
    expect(dropped("replayed") - before).toBe(4);
    // same id, new signature and new time: still the same request
    const again = buildRequest({
      caller: fx.client,
      agent: "rpcutil",
      body: { action: "ping" },
      id: req.id,
    });
    nc.publish(directSubject(COLLECTIVE, ID), again.bytes);
    await nc.flush();
    await sleep(200);
    sub.unsubscribe();
    expect(got).toHaveLength(1);
    expect(dropped("replayed") - before).toBe(5);
    await server.audit?.flush();
    const replays = auditLines().filter((l) => l.request_id === req.id && l.decision === "deny");
    expect(replays).toHaveLength(5);
    expect(replays[0]?.reason).toMatch(/replay refused/);
  });

  it("2. cross-user replay: a captured request re-wrapped with the attacker's inbox is refused and audited", async () => {
    const victim = buildRequest({
      caller: fx.client,
      agent: "rpcutil",
      body: { action: "get_fact", data: { fact: "x" } },
    });
    const malloryInbox = `${replyPrefix(COLLECTIVE, mallory.callerid)}.stolen`;
    const before = dropped("reply_not_caller");
    const got = await sendAndListen(
      broadcastSubject(COLLECTIVE, "rpcutil"),
      rewrap(victim, malloryInbox),
      `${replyPrefix(COLLECTIVE, mallory.callerid)}.>`,
    );
    expect(got).toHaveLength(0);
    expect(dropped("reply_not_caller") - before).toBe(1);
    await server.audit?.flush();
    const line = auditLines().find((l) => l.request_id === victim.id);
    expect(line).toMatchObject({ caller: "choria=tester", decision: "deny" });
    expect(line?.reason).toMatch(/not under the inbox of caller choria=tester/);
    // the victim's own request, untouched, still runs once
    const own = await sendAndListen(broadcastSubject(COLLECTIVE, "rpcutil"), victim.bytes, victim.replyTo);
    expect(own).toHaveLength(1);
  });

  it("3. reply injection: a node publishes nothing into lifecycle, submission or registration subjects", async () => {
    const targets = [
      "choria.lifecycle.event.alive.injected",
      `${COLLECTIVE}.submission.in.injected`,
      `${COLLECTIVE}.broadcast.agent.registration`,
      // wildcards and the caller's prefix without a request part are no inboxes either
      `${replyPrefix(COLLECTIVE, mallory.callerid)}.>`,
      replyPrefix(COLLECTIVE, mallory.callerid),
    ];
    const before = dropped("reply_not_caller");
    for (const reply of targets) {
      const req = buildRequest({
        caller: mallory,
        agent: "rpcutil",
        body: { action: "ping" },
        replyTo: reply,
      });
      const got = await sendAndListen(directSubject(COLLECTIVE, ID), req.bytes, reply, 150);
      expect(got, `a reply reached ${reply}`).toHaveLength(0);
    }
    expect(dropped("reply_not_caller") - before).toBe(targets.length);
  });

  it("4. TTL without bound: day-old requests with ttl=1e9 or 1e308, and ttl above the configured cap, are refused", async () => {
    const before = dropped("ttl_too_long");
    const dayOld = nowNanos() - 86_400 * 1e9;
    for (const patch of [
      (j: string) => j.replace(/"ttl":60,"time":\d+/, `"ttl":1000000000,"time":${dayOld}`),
      (j: string) => j.replace(/"ttl":60,"time":\d+/, `"ttl":1e308,"time":${dayOld}`),
      // fresh, but above the 1 h cap this server's config sets
      (j: string) => j.replace(/"ttl":60,/, `"ttl":3601,`),
    ]) {
      const req = handSigned(fx.client, patch);
      const got = await sendAndListen(directSubject(COLLECTIVE, ID), req.bytes, req.replyTo, 150);
      expect(got).toHaveLength(0);
    }
    expect(dropped("ttl_too_long") - before).toBe(3);
    // at the cap it runs
    const ok = handSigned(fx.client, (j) => j.replace(/"ttl":60,/, `"ttl":3600,`));
    expect(await sendAndListen(directSubject(COLLECTIVE, ID), ok.bytes, ok.replyTo)).toHaveLength(1);
  });

  it("5. deep nesting: 15 000 levels in a signed body, a broadcast, or the transport do not silence the node", async () => {
    const deep = "[".repeat(15_000) + "]".repeat(15_000);
    const body = handSigned(mallory, (j) =>
      j.replace(
        /"message":"[^"]*"/,
        `"message":"${Buffer.from(`{"agent":"rpcutil","action":"ping","data":{"x":${deep}}}`).toString("base64")}"`,
      ),
    );
    expect(body.bytes.byteLength).toBeGreaterThan(50_000);
    const before = server.decoder.stats.rejected.too_deep;
    nc.publish(broadcastSubject(COLLECTIVE, "rpcutil"), body.bytes);
    nc.publish(directSubject(COLLECTIVE, ID), body.bytes);
    // unsigned outer layer: depth is checked before any parsing or signature work
    nc.publish(
      broadcastSubject(COLLECTIVE, "rpcutil"),
      Buffer.from(`{"protocol":"io.choria.protocol.v2.transport","data":"","headers":{"x":${deep}}}`),
    );
    await nc.flush();
    expect(await stillServes()).toBeLessThan(1000);
    expect(server.decoder.stats.rejected.too_deep - before).toBe(3);
  });

  it("5b. deep or long compound expressions are refused without recursing through them", async () => {
    const before = dropped("unsupported_filter");
    for (const expr of [
      "(".repeat(20_000) + "true" + ")".repeat(20_000),
      "!".repeat(20_000) + "true",
      Array(5000).fill("true").join(" || "),
    ]) {
      const filter: Filter = { fact: [], cf_class: [], agent: [], identity: [], compound: [[{ expr }]] };
      const r = buildRequest({ caller: mallory, agent: "rpcutil", body: { action: "ping" }, filter });
      nc.publish(broadcastSubject(COLLECTIVE, "rpcutil"), r.bytes);
    }
    await nc.flush();
    await stillServes();
    expect(dropped("unsupported_filter") - before).toBe(3);
  });

  it("6. regex denial of service: a catastrophic identity filter does not delay other users", async () => {
    const filter: Filter = {
      fact: [],
      cf_class: [],
      agent: [],
      identity: ["/^(.*)*(.*)*(.*)*(.*)*!$/"],
      compound: [],
    };
    const req = buildRequest({ caller: mallory, agent: "rpcutil", body: { action: "ping" }, filter });
    for (let i = 0; i < 3; i++) {
      const r = buildRequest({ caller: mallory, agent: "rpcutil", body: { action: "ping" }, filter });
      nc.publish(broadcastSubject(COLLECTIVE, "rpcutil"), r.bytes);
    }
    nc.publish(broadcastSubject(COLLECTIVE, "rpcutil"), req.bytes);
    await nc.flush();
    // a backtracking engine needs minutes per message on this 25-character identity
    expect(await stillServes(2000)).toBeLessThan(1000);
  });

  it("7. decoder cache memory: big broadcasts that match nothing are not kept, matched ones stay within the byte bound", async () => {
    const big = "a".repeat(400_000);
    const nobody: Filter = { fact: [], cf_class: [], agent: [], identity: ["nobody.example"], compound: [] };
    for (let i = 0; i < 40; i++) {
      const r = buildRequest({
        caller: mallory,
        agent: "rpcutil",
        body: { action: "ping", data: { pad: big, i } },
        filter: nobody,
      });
      expect(r.bytes.byteLength).toBeGreaterThan(900_000);
      nc.publish(broadcastSubject(COLLECTIVE, "rpcutil"), r.bytes);
    }
    await nc.flush();
    await stillServes(5000);
    // nothing of 40 x ~950 KB is held: only small entries remain
    expect(server.decoder.stats.cacheBytes).toBeLessThan(1024 * 1024);
    // matched (and denied) ones are cached, but never past the byte limit
    for (let i = 0; i < 60; i++) {
      const r = buildRequest({
        caller: mallory,
        agent: "rpcutil",
        body: { action: "ping", data: { pad: big, i } },
      });
      nc.publish(broadcastSubject(COLLECTIVE, "rpcutil"), r.bytes);
    }
    await nc.flush();
    await stillServes(10_000);
    expect(server.decoder.stats.cacheBytes).toBeLessThanOrEqual(server.decoder.cacheBytes);
  });

  it("8. cheap checks first: a forged deep request is refused by depth before its signature is even checked", async () => {
    const deep = '{"a":'.repeat(20_000) + "1" + "}".repeat(20_000);
    const before = server.decoder.stats.rejected.too_deep;
    const forged = Buffer.from(
      JSON.stringify({
        protocol: "io.choria.protocol.v2.secure_request",
        request: "",
        signature: "",
        caller: "x",
      }).replace('"caller":"x"', `"caller":"x","junk":${deep}`),
    );
    nc.publish(
      broadcastSubject(COLLECTIVE, "rpcutil"),
      encodeTransport(forged, { reply: replySubject(COLLECTIVE, mallory.callerid, "x") }),
    );
    await nc.flush();
    await stillServes();
    expect(server.decoder.stats.rejected.too_deep - before).toBe(1);
  });
});
