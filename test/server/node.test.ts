import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { registerBuiltinAgents } from "../../src/server/index.js";
import {
  MAX_MESSAGE_BYTES,
  StatusCode,
  decodeTransport,
  emptyFilter,
  encodeSecureRequest,
  encodeTransport,
  nowNanos,
  type Filter,
} from "../../src/core/protocol/index.js";
import {
  generateKeyPair,
  orgIssuer,
  verify,
  verifyStats,
  type ChoriaSecurity,
} from "../../src/core/security/index.js";
import {
  AgentRegistry,
  NodeRuntime,
  RequestDecoder,
  type Authorizer,
  type DecodeResult,
} from "../../src/server/index.js";
import {
  COLLECTIVE,
  TEST_DDL,
  buildRequest,
  makeFixture,
  parseReply,
  rawToken,
  sleep,
  type Fixture,
} from "./helpers.js";

let fx: Fixture;
let serverSec: ChoriaSecurity;

beforeAll(() => {
  fx = makeFixture();
  serverSec = fx.serverSecurity("node1.example");
});
afterAll(() => fx.cleanup());

function registry(): AgentRegistry {
  const r = new AgentRegistry();
  registerBuiltinAgents(r);
  r.register(TEST_DDL, {
    echo: (req) => ({ message: req.data.message, count: req.data.count }),
    boom: () => {
      throw new Error("kaboom");
    },
    slow: async (req) => {
      await sleep(1500);
      return { aborted: req.signal.aborted };
    },
  });
  return r;
}

function node(identity = "node1.example", extra: Partial<ConstructorParameters<typeof NodeRuntime>[0]> = {}) {
  return new NodeRuntime({
    identity,
    collectives: [COLLECTIVE],
    registry: extra.registry ?? registry(),
    credential: { token: serverSec.token, sign: (d) => serverSec.sign(d) },
    facts: { os: "linux", cpus: 4 },
    classes: ["base", "web"],
    ...extra,
  });
}

function decoder(): RequestDecoder {
  return new RequestDecoder({ security: serverSec });
}

describe("NodeRuntime pipeline", () => {
  it("answers a signed rpcutil ping with a signed reply whose hash and signature verify", async () => {
    const n = node();
    const req = buildRequest({ caller: fx.client, agent: "rpcutil", body: { action: "ping" } });
    const out = await n.handle(decoder().decode(req.bytes));
    expect(out?.subject).toBe(req.replyTo);
    const r = parseReply(out!.data);
    expect(r.hashOk).toBe(true);
    expect(r.sender).toBe("node1.example");
    expect(r.transportSender).toBe("node1.example");
    expect(r.requestId).toBe(req.id);
    expect(r.agent).toBe("rpcutil");
    // The client checks the sender JWT is a trusted server token for the sender and its key signed the reply.
    const claims = fx.clientSecurity.verifyServerToken(r.senderJwt!);
    expect(claims.identity).toBe("node1.example");
    expect(verify(claims.public_key, r.replyBytes, r.signature!)).toBe(true);
    expect(r.body).toMatchObject({ action: "ping", statuscode: 0, statusmsg: "OK" });
    expect(typeof r.body!.data.pong).toBe("number");
    expect(n.stats).toMatchObject({ total: 1, validated: 1, passed: 1, replies: 1, unvalidated: 0 });
    expect(n.stats.agents).toEqual({ rpcutil: 1 });
  });

  it("leaves replies unsigned when signReplies is false", async () => {
    const n = node("node1.example", { signReplies: false });
    const req = buildRequest({ caller: fx.client, agent: "rpcutil", body: { action: "ping" } });
    const r = parseReply((await n.handle(decoder().decode(req.bytes)))!.data);
    expect(r.signature).toBeUndefined();
    expect(r.hashOk).toBe(true);
  });

  it("validates inputs: missing is status 3, invalid is status 4, defaults are filled", async () => {
    const n = node();
    const d = decoder();
    const send = async (data: Record<string, unknown>) =>
      parseReply(
        (await n.handle(
          d.decode(
            buildRequest({ caller: fx.client, agent: "testagent", body: { action: "echo", data } }).bytes,
          ),
        ))!.data,
      ).body!;
    const missing = await send({});
    expect(missing.statuscode).toBe(StatusCode.MissingData);
    expect(missing.statusmsg).toMatch(/message.*required/);
    const invalid = await send({ message: "NOT LOWER" });
    expect(invalid.statuscode).toBe(StatusCode.InvalidData);
    const wrongType = await send({ message: "hi", count: "x" });
    expect(wrongType.statuscode).toBe(StatusCode.InvalidData);
    const unknownInput = await send({ message: "hi", nope: 1 });
    expect(unknownInput.statuscode).toBe(StatusCode.InvalidData);
    const ok = await send({ message: "hello there", process_results: true });
    expect(ok).toEqual({
      action: "echo",
      statuscode: 0,
      statusmsg: "OK",
      data: { message: "hello there", count: 1, extra: "dflt" },
    });
  });

  it("unknown action gives status 2, including DDL actions without a handler", async () => {
    const n = node();
    const d = decoder();
    for (const action of ["nosuch", "undeclared_handler"]) {
      const req = buildRequest({ caller: fx.client, agent: "testagent", body: { action } });
      const body = parseReply((await n.handle(d.decode(req.bytes)))!.data).body!;
      expect(body.statuscode).toBe(StatusCode.UnknownAction);
      expect(body.statusmsg).toBe(`Unknown action ${action} for agent testagent`);
    }
  });

  it("a body that is not mcorpc JSON gets status 4", async () => {
    const n = node();
    const req = buildRequest({ caller: fx.client, agent: "testagent", body: "{not json" });
    const body = parseReply((await n.handle(decoder().decode(req.bytes)))!.data).body!;
    expect(body.statuscode).toBe(StatusCode.InvalidData);
  });

  it("a handler that throws gives status 5 with its message", async () => {
    const n = node();
    const errors: string[] = [];
    n.events = { handlerError: (err) => errors.push((err as Error).message) };
    const req = buildRequest({ caller: fx.client, agent: "testagent", body: { action: "boom" } });
    const body = parseReply((await n.handle(decoder().decode(req.bytes)))!.data).body!;
    expect(body).toMatchObject({ statuscode: StatusCode.UnknownError, statusmsg: "kaboom" });
    expect(errors).toEqual(["kaboom"]);
  });

  it("a handler past the DDL timeout sends no reply and is counted", async () => {
    const n = node();
    const req = buildRequest({ caller: fx.client, agent: "testagent", body: { action: "slow" } });
    const t0 = Date.now();
    const out = await n.handle(decoder().decode(req.bytes));
    expect(out).toBeUndefined();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(950);
    expect(Date.now() - t0).toBeLessThan(1450);
    expect(n.stats.dropped.timeout).toBe(1);
    expect(n.stats.replies).toBe(0);
  });

  it("the authorizer can refuse with status 1; discovery is never authorized", async () => {
    const deny: Authorizer = { authorize: () => false };
    const n = node("node1.example", { authorizer: deny });
    const d = decoder();
    const req = buildRequest({ caller: fx.client, agent: "rpcutil", body: { action: "ping" } });
    const body = parseReply((await n.handle(d.decode(req.bytes)))!.data).body!;
    expect(body.statuscode).toBe(StatusCode.Aborted);
    expect(body.statusmsg).toMatch(/not authorized/);
    const disco = buildRequest({
      caller: fx.client,
      agent: "discovery",
      body: Buffer.from("ping").toString("base64"),
    });
    const r = parseReply((await n.handle(d.decode(disco.bytes)))!.data);
    expect(r.message.toString()).toBe("pong");
  });

  it("drops requests outside the TTL window and counts ttlexpired", async () => {
    const n = node();
    const d = decoder();
    const old = buildRequest({
      caller: fx.client,
      agent: "rpcutil",
      body: { action: "ping" },
      ttl: 60,
      time: nowNanos() - 61e9,
    });
    const future = buildRequest({
      caller: fx.client,
      agent: "rpcutil",
      body: { action: "ping" },
      ttl: 60,
      time: nowNanos() + 61e9,
    });
    expect(await n.handle(d.decode(old.bytes))).toBeUndefined();
    expect(await n.handle(d.decode(future.bytes))).toBeUndefined();
    expect(n.stats.ttlexpired).toBe(2);
    const fresh = buildRequest({
      caller: fx.client,
      agent: "rpcutil",
      body: { action: "ping" },
      ttl: 60,
      time: nowNanos() - 50e9,
    });
    expect(await n.handle(d.decode(fresh.bytes))).toBeDefined();
  });

  it("drops unknown agents and other collectives", async () => {
    const n = node();
    const d = decoder();
    expect(
      await n.handle(
        d.decode(buildRequest({ caller: fx.client, agent: "nope", body: { action: "x" } }).bytes),
      ),
    ).toBeUndefined();
    expect(
      await n.handle(
        d.decode(
          buildRequest({ caller: fx.client, agent: "rpcutil", body: { action: "ping" }, collective: "other" })
            .bytes,
        ),
      ),
    ).toBeUndefined();
    expect(n.stats.dropped.unknown_agent).toBe(1);
    expect(n.stats.dropped.wrong_collective).toBe(1);
  });
});

describe("RequestDecoder rejections", () => {
  const cases: [string, () => Buffer, string][] = [
    ["malformed JSON", () => Buffer.from("{not json"), "malformed"],
    [
      "unknown protocol id",
      () => Buffer.from(JSON.stringify({ protocol: "choria:transport:9", data: "e30=", headers: {} })),
      "protocol",
    ],
    [
      "protocol v1 to a node that speaks only v2",
      () => Buffer.from(JSON.stringify({ protocol: "choria:transport:1", data: "e30=", headers: {} })),
      "wrong_protocol",
    ],
    [
      "schema violation",
      () => Buffer.from(JSON.stringify({ protocol: "io.choria.protocol.v2.transport", headers: {} })),
      "schema",
    ],
    [
      "forged signature",
      () =>
        buildRequest({
          caller: fx.client,
          agent: "rpcutil",
          body: { action: "ping" },
          signWith: generateKeyPair().seedHex,
        }).bytes,
      "bad_signature",
    ],
    [
      "token from another issuer",
      () =>
        buildRequest({
          caller: fx.caller({ issuer: orgIssuer(generateKeyPair()) }),
          agent: "rpcutil",
          body: { action: "ping" },
        }).bytes,
      "untrusted_caller",
    ],
    [
      "expired token",
      () => {
        const kp = generateKeyPair();
        const now = Math.floor(Date.now() / 1000);
        const token = rawToken(
          {
            purpose: "choria_client_id",
            callerid: "choria=old",
            sub: "choria=old",
            public_key: kp.publicHex,
            ou: "choria",
            permissions: { fleet_management: true },
            iss: `I-${fx.orgKp.publicHex}`,
            iat: now - 7200,
            nbf: now - 7200,
            exp: now - 3600,
            jti: "x1",
          },
          fx.orgKp.seedHex,
        );
        return buildRequest({
          caller: { kp, token, callerid: "choria=old" },
          agent: "rpcutil",
          body: { action: "ping" },
        }).bytes;
      },
      "expired_token",
    ],
    [
      "caller mismatch",
      () =>
        buildRequest({
          caller: fx.client,
          agent: "rpcutil",
          body: { action: "ping" },
          callerField: "choria=admin",
        }).bytes,
      "caller_mismatch",
    ],
    [
      "no fleet management",
      () =>
        buildRequest({ caller: fx.caller({ permissions: {} }), agent: "rpcutil", body: { action: "ping" } })
          .bytes,
      "no_fleet_management",
    ],
    ["oversized message", () => Buffer.alloc(MAX_MESSAGE_BYTES + 1, 0x20), "too_large"],
  ];

  for (const [name, make, reason] of cases) {
    it(`rejects ${name} as ${reason}, counts it, and keeps serving`, async () => {
      const n = node();
      const d = decoder();
      const drops: string[] = [];
      n.events = { drop: (r) => drops.push(r) };
      const res = d.decode(make());
      expect(res.ok).toBe(false);
      expect((res as { reason: string }).reason).toBe(reason);
      expect(await n.handle(res)).toBeUndefined();
      expect(n.stats.unvalidated).toBe(1);
      expect(n.stats.dropped[reason as keyof typeof n.stats.dropped]).toBe(1);
      expect(d.stats.rejected[reason as keyof typeof d.stats.rejected]).toBe(1);
      expect(drops).toEqual([reason]);
      const good = buildRequest({ caller: fx.client, agent: "rpcutil", body: { action: "ping" } });
      expect(await n.handle(d.decode(good.bytes))).toBeDefined();
      expect(n.stats).toMatchObject({ total: 2, validated: 1, unvalidated: 1, replies: 1 });
    });
  }

  it("accepts a request signed by a delegated signer for a signed_fleet_management caller", async () => {
    const signer = fx.caller({ callerid: "choria=aaa", permissions: { authentication_delegator: true } });
    const user = fx.caller({ callerid: "choria=user", permissions: { signed_fleet_management: true } });
    const built = buildRequest({
      caller: user,
      agent: "rpcutil",
      body: { action: "ping" },
      signWith: signer.kp.seedHex,
    });
    // rebuild the secure layer with the signer JWT
    const { decodeTransport, decodeSecureRequest } = await import("../../src/core/protocol/index.js");
    const t = decodeTransport(built.bytes);
    const sr = decodeSecureRequest(t.inner);
    const bytes = encodeTransport(
      encodeSecureRequest(sr.requestBytes, sr.signature, user.token, signer.token),
      t.transport.headers,
    );
    const res = decoder().decode(bytes);
    expect(res.ok).toBe(true);
    // without the signer the same caller may not make requests
    const alone = decoder().decode(
      buildRequest({ caller: user, agent: "rpcutil", body: { action: "ping" } }).bytes,
    );
    expect(alone).toMatchObject({ ok: false, reason: "no_fleet_management" });
  });

  it("refuses a secure request whose signer JWT lacks authentication_delegator, and counts it", async () => {
    const { decodeTransport, decodeSecureRequest } = await import("../../src/core/protocol/index.js");
    const user = fx.caller({ callerid: "choria=user", permissions: { signed_fleet_management: true } });
    // a fleet manager, even an org-signed one, is not a signer
    const impostor = fx.caller({ callerid: "choria=aaa", permissions: { fleet_management: true } });
    const built = buildRequest({
      caller: user,
      agent: "rpcutil",
      body: { action: "ping" },
      signWith: impostor.kp.seedHex,
    });
    const t = decodeTransport(built.bytes);
    const sr = decodeSecureRequest(t.inner);
    const bytes = encodeTransport(
      encodeSecureRequest(sr.requestBytes, sr.signature, user.token, impostor.token),
      t.transport.headers,
    );
    const d = decoder();
    const res = d.decode(bytes);
    // the decoder's word for a signer it does not trust
    expect(res).toMatchObject({ ok: false, reason: "untrusted_caller" });
    expect(d.stats.rejected.untrusted_caller).toBe(1);
    expect((res as { detail?: string }).detail ?? JSON.stringify(res)).toMatch(/delegator/);
  });
});

describe("delegated caller ids", () => {
  it("accepts the signer's subject-safe caller id and replies to the token caller's inbox", async () => {
    const { decodeTransport, decodeSecureRequest, replySubject, newRequestId } =
      await import("../../src/core/protocol/index.js");
    const { delegatedCallerId } = await import("../../src/core/security/index.js");
    const signer = fx.caller({ callerid: "choria=aaa", permissions: { authentication_delegator: true } });
    const user = fx.caller({
      callerid: "up=bob@example.com",
      permissions: { signed_fleet_management: true },
    });
    const id = newRequestId();
    const inbox = replySubject(COLLECTIVE, user.callerid, id);
    const wrap = (callerField: string, withSigner: boolean) => {
      const built = buildRequest({
        caller: user,
        callerField,
        id,
        replyTo: inbox,
        agent: "rpcutil",
        body: { action: "ping" },
        signWith: withSigner ? signer.kp.seedHex : user.kp.seedHex,
      });
      const t = decodeTransport(built.bytes);
      const sr = decodeSecureRequest(t.inner);
      return encodeTransport(
        encodeSecureRequest(sr.requestBytes, sr.signature, user.token, withSigner ? signer.token : undefined),
        t.transport.headers,
      );
    };
    const ok = decoder().decode(wrap("up=bob_example_com", true));
    expect(delegatedCallerId(user.callerid)).toBe("up=bob_example_com");
    expect(ok.ok).toBe(true);
    if (ok.ok) {
      expect(ok.replyTo).toBe(inbox);
      expect(ok.replyError).toBeUndefined();
    }
    // any other caller id is still refused, signer or not
    expect(decoder().decode(wrap("up=mallory", true))).toMatchObject({
      ok: false,
      reason: "caller_mismatch",
    });
  });
});

describe("signed-only callers and the signer's own agent", () => {
  it("lets a signed_fleet_management caller reach only the listed agents unsigned", () => {
    const user = fx.caller({ callerid: "up=carol", permissions: { signed_fleet_management: true } });
    const d = new RequestDecoder({ security: serverSec, signedOnlyAgents: ["aaa_signer"] });
    const sign = buildRequest({ caller: user, agent: "aaa_signer", body: { action: "sign" } });
    expect(d.decode(sign.bytes).ok).toBe(true);
    const ping = buildRequest({ caller: user, agent: "rpcutil", body: { action: "ping" } });
    expect(d.decode(ping.bytes)).toMatchObject({ ok: false, reason: "no_fleet_management" });
    // a node without the option refuses the signed-only caller everywhere
    expect(decoder().decode(sign.bytes)).toMatchObject({ ok: false, reason: "no_fleet_management" });
    // and a forged signature is still a forged signature
    const forged = buildRequest({
      caller: user,
      agent: "aaa_signer",
      body: { action: "sign" },
      signWith: fx.client.kp.seedHex,
    });
    expect(d.decode(forged.bytes)).toMatchObject({ ok: false, reason: "bad_signature" });
  });
});

describe("many nodes, one decoder", () => {
  it("verifies identical bytes once however many nodes receive them", async () => {
    const reg = registry(); // shared by every node, as an emulator would
    const nodes = Array.from({ length: 200 }, (_, i) => node(`n${i}.example`, { registry: reg }));
    const d = decoder();
    const req = buildRequest({ caller: fx.client, agent: "rpcutil", body: { action: "ping" } });
    const before = verifyStats.count;
    const first = d.decode(req.bytes);
    const perMessage = verifyStats.count - before;
    expect(perMessage).toBeGreaterThanOrEqual(1);
    const results: DecodeResult[] = [first];
    for (let i = 1; i < nodes.length; i++) results.push(d.decode(Buffer.from(req.bytes)));
    expect(verifyStats.count - before).toBe(perMessage);
    expect(d.stats).toMatchObject({ messages: 200, cacheHits: 199, verifications: 1 });
    const replies = await Promise.all(nodes.map((n, i) => n.handle(results[i]!)));
    expect(new Set(replies.map((r) => parseReply(r!.data).sender)).size).toBe(200);
  });

  it("caches rejections too, so bad bytes cost one check", () => {
    const d = decoder();
    const bad = buildRequest({
      caller: fx.client,
      agent: "rpcutil",
      body: { action: "ping" },
      signWith: generateKeyPair().seedHex,
    });
    const before = verifyStats.count;
    d.decode(bad.bytes);
    const once = verifyStats.count - before;
    for (let i = 0; i < 50; i++)
      expect(d.decode(bad.bytes)).toMatchObject({ ok: false, reason: "bad_signature" });
    expect(verifyStats.count - before).toBe(once);
  });

  it("bounds the cache", () => {
    const d = new RequestDecoder({ security: serverSec, cacheSize: 3 });
    const reqs = Array.from({ length: 5 }, () =>
      buildRequest({ caller: fx.client, agent: "rpcutil", body: { action: "ping" } }),
    );
    for (const r of reqs) d.decode(r.bytes);
    d.decode(reqs[4]!.bytes); // recent: still cached
    d.decode(reqs[0]!.bytes); // evicted: verified again
    expect(d.stats).toMatchObject({ cacheHits: 1, verifications: 6 });
  });

  it("filters select the right node", async () => {
    const reg = registry();
    const mk = (identity: string, facts: Record<string, unknown>, classes: string[]) =>
      node(identity, { registry: reg, facts, classes });
    const nodes = [
      mk("web1.example", { os: "linux", role: "web", cpus: 8 }, ["web"]),
      mk("web2.example", { os: "linux", role: "web", cpus: 2 }, ["web", "canary"]),
      mk("db1.example", { os: "freebsd", role: "db", cpus: 16 }, ["db"]),
    ];
    const d = decoder();
    const who = async (f: Partial<Filter>) => {
      const req = buildRequest({
        caller: fx.client,
        agent: "rpcutil",
        body: { action: "ping" },
        filter: { ...emptyFilter(), ...f },
      });
      const decoded = d.decode(req.bytes);
      const out = await Promise.all(nodes.map((n) => n.handle(decoded)));
      return nodes.filter((_, i) => out[i] !== undefined).map((n) => n.identity);
    };
    expect(await who({})).toEqual(["web1.example", "web2.example", "db1.example"]);
    expect(await who({ identity: ["db1.example"] })).toEqual(["db1.example"]);
    expect(await who({ identity: ["/^web/"] })).toEqual(["web1.example", "web2.example"]);
    expect(await who({ cf_class: ["canary"] })).toEqual(["web2.example"]);
    expect(await who({ fact: [{ fact: "cpus", operator: ">=", value: "8" }] })).toEqual([
      "web1.example",
      "db1.example",
    ]);
    expect(await who({ fact: [{ fact: "os", operator: "==", value: "linux" }], cf_class: ["web"] })).toEqual([
      "web1.example",
      "web2.example",
    ]);
    expect(await who({ agent: ["rpcutil", "testagent"] })).toHaveLength(3);
    expect(await who({ agent: ["puppet"] })).toEqual([]);
    expect(nodes[2]!.stats).toMatchObject({ filtered: 4, passed: 4 });
    // compound expressions run on the node; one that does not parse is dropped and counted
    expect(await who({ compound: [[{ expr: 'with("role=web") and facts.cpus > 4' }]] })).toEqual([
      "web1.example",
    ]);
    expect(await who({ compound: [[{ expr: "facts.os ==" }]] })).toEqual([]);
    expect(nodes[0]!.stats.dropped.unsupported_filter).toBe(1);
  });
});

describe("raw agents", () => {
  it("a raw handler that throws is dropped and counted, late failures stay quiet", async () => {
    const reg = registry();
    const ddl = { ...TEST_DDL, metadata: { ...TEST_DDL.metadata, name: "rawthing", timeout: 0.2 } };
    let calls = 0;
    reg.registerRaw(ddl, async (msg) => {
      calls++;
      if (msg.toString() === "now") throw new Error("raw failure");
      await sleep(400);
      throw new Error("late failure");
    });
    const n = node("node1.example", { registry: reg });
    const d = decoder();
    expect(
      await n.handle(d.decode(buildRequest({ caller: fx.client, agent: "rawthing", body: "now" }).bytes)),
    ).toBeUndefined();
    expect(
      await n.handle(d.decode(buildRequest({ caller: fx.client, agent: "rawthing", body: "later" }).bytes)),
    ).toBeUndefined();
    await sleep(400);
    expect(calls).toBe(2);
    expect(n.stats.dropped).toMatchObject({ reply_error: 1, timeout: 1 });
  });
});

describe("handler context", () => {
  it("aborts req.signal at the DDL timeout and passes caller details", async () => {
    const reg = new AgentRegistry();
    const ddl = { ...TEST_DDL, metadata: { ...TEST_DDL.metadata, name: "ctx", timeout: 0.2 } };
    let seen: { caller?: string; aborted?: boolean; collective?: string; node?: string } = {};
    let aborted!: Promise<void>;
    reg.register(ddl, {
      slow: (req) => {
        seen = { caller: req.caller, collective: req.collective, node: req.node.identity };
        aborted = new Promise((resolve) => req.signal.addEventListener("abort", () => resolve()));
        return new Promise(() => undefined); // never finishes
      },
    });
    const n = node("ctx.example", { registry: reg });
    const out = await n.handle(
      decoder().decode(buildRequest({ caller: fx.client, agent: "ctx", body: { action: "slow" } }).bytes),
    );
    expect(out).toBeUndefined();
    await aborted;
    expect(seen).toEqual({ caller: "choria=tester", collective: COLLECTIVE, node: "ctx.example" });
  });

  it("refuses handlers for actions the DDL does not declare, and duplicate agents", () => {
    const reg = new AgentRegistry();
    expect(() => reg.register(TEST_DDL, { nosuch: () => undefined })).toThrow(/no such action/);
    reg.register(TEST_DDL, {});
    expect(() => reg.register(TEST_DDL, {})).toThrow(/already registered/);
    reg.register(TEST_DDL, {}, { replace: true });
  });
});

describe("NodeRuntime federated replies", () => {
  it("copies the federation data and the hops a request took onto its reply", async () => {
    const n = node();
    const req = buildRequest({ caller: fx.client, agent: "rpcutil", body: { action: "ping" } });
    const t = JSON.parse(Buffer.from(req.bytes).toString()) as {
      headers: Record<string, unknown>;
    };
    t.headers.federation = { request: "fed-1", reply: req.replyTo, targets: ["node1.example"] };
    t.headers.trace = [["nats://a", "fed1", "nats://b"]];
    const out = await n.handle(decoder().decode(Buffer.from(JSON.stringify(t))));
    const { transport } = decodeTransport(out!.data);
    expect(transport.headers.federation).toEqual({
      request: "fed-1",
      reply: req.replyTo,
      targets: ["node1.example"],
    });
    expect(transport.headers.trace).toEqual([["nats://a", "fed1", "nats://b"]]);
  });

  it("leaves an unfederated reply without federation headers", async () => {
    const n = node();
    const req = buildRequest({ caller: fx.client, agent: "rpcutil", body: { action: "ping" } });
    const { transport } = decodeTransport((await n.handle(decoder().decode(req.bytes)))!.data);
    expect(transport.headers.federation).toBeUndefined();
    expect(transport.headers.trace).toBeUndefined();
  });
});
