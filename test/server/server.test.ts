import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client } from "../../src/client/index.js";
import { StatusCode, broadcastSubject, directSubject, emptyFilter } from "../../src/core/protocol/index.js";
import { generateKeyPair, orgIssuer, verify } from "../../src/core/security/index.js";
import { Server, type ServerStats } from "../../src/server/index.js";
import { startNats, type TestNats } from "../helpers/nats.js";
import {
  COLLECTIVE,
  TEST_DDL,
  buildRequest,
  makeFixture,
  parseReply,
  quietLogger,
  rawToken,
  sleep,
  type BuiltRequest,
  type Fixture,
  type ParsedReply,
} from "./helpers.js";

let nats: TestNats;
let fx: Fixture;
let server: Server;
let nc: NatsConnection;

const IDENTITY = "srv1.example";

beforeAll(async () => {
  nats = await startNats();
  fx = makeFixture();
  server = new Server({
    identity: IDENTITY,
    collectives: [COLLECTIVE],
    security: fx.serverSecurity(IDENTITY),
    servers: [nats.url],
    facts: { os: "linux", role: "web", nested: { dc: "lab" } },
    classes: ["base", "web"],
    logger: quietLogger,
    statsPort: 0,
    maxMessageBytes: 64 * 1024,
  });
  server.registerAgent(TEST_DDL, {
    echo: (req) => ({ message: req.data.message }),
    boom: () => {
      throw new Error("handler exploded");
    },
    slow: async () => {
      await sleep(1500);
    },
  });
  await server.start();
  nc = await connect({ servers: nats.url });
});

afterAll(async () => {
  await nc?.close();
  await server?.stop();
  await nats?.stop();
  fx?.cleanup();
});

/** Publishes a request and collects replies on its reply subject for `waitMs`. */
async function send(req: BuiltRequest, subject: string, waitMs = 400): Promise<ParsedReply[]> {
  const got: ParsedReply[] = [];
  const sub: Subscription = nc.subscribe(req.replyTo, {
    callback: (_e, m) => void got.push(parseReply(m.data)),
  });
  await nc.flush();
  nc.publish(subject, req.bytes);
  await nc.flush();
  await sleep(waitMs);
  sub.unsubscribe();
  return got;
}

async function ping(): Promise<ParsedReply[]> {
  const req = buildRequest({ caller: fx.client, agent: "rpcutil", body: { action: "ping" } });
  return send(req, broadcastSubject(COLLECTIVE, "rpcutil"));
}

function delta(before: ServerStats, after: ServerStats): Partial<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const k of [
    "total",
    "validated",
    "unvalidated",
    "passed",
    "filtered",
    "replies",
    "ttlexpired",
  ] as const) {
    if (after[k] !== before[k]) out[k] = after[k] - before[k];
  }
  for (const [r, v] of Object.entries(after.dropped)) {
    const b = before.dropped[r as keyof typeof before.dropped];
    if (v !== b) out[`dropped.${r}`] = v - b;
  }
  return out;
}

describe("Server over NATS", () => {
  it("answers a broadcast rpcutil ping with a signed reply", async () => {
    const replies = await ping();
    expect(replies).toHaveLength(1);
    const r = replies[0]!;
    expect(r.hashOk).toBe(true);
    const claims = fx.clientSecurity.verifyServerToken(r.senderJwt!);
    expect(claims.identity).toBe(IDENTITY);
    expect(verify(claims.public_key, r.replyBytes, r.signature!)).toBe(true);
    expect(r.body).toMatchObject({ action: "ping", statuscode: 0 });
  });

  it("answers direct requests on <c>.node.<identity>", async () => {
    const req = buildRequest({ caller: fx.client, agent: "rpcutil", body: { action: "collective_info" } });
    const [r] = await send(req, directSubject(COLLECTIVE, IDENTITY));
    expect(r?.body?.data).toEqual({ main_collective: COLLECTIVE, collectives: [COLLECTIVE] });
  });

  const expiredCaller = () => {
    const kp = generateKeyPair();
    const now = Math.floor(Date.now() / 1000);
    const token = rawToken(
      {
        purpose: "choria_client_id",
        callerid: "choria=old",
        sub: "choria=old",
        public_key: kp.publicHex,
        permissions: { fleet_management: true },
        iss: `I-${fx.orgKp.publicHex}`,
        iat: now - 7200,
        exp: now - 60,
        jti: "old",
      },
      fx.orgKp.seedHex,
    );
    return { kp, token, callerid: "choria=old" };
  };
  const rpc = { action: "ping" };
  const bad: [string, () => { bytes: Buffer; replyTo: string }, string, Record<string, number>][] = [
    [
      "malformed JSON",
      () => ({ bytes: Buffer.from("{{{"), replyTo: "x.reply" }),
      "rpcutil",
      { unvalidated: 1, "dropped.malformed": 1 },
    ],
    [
      "a wrong protocol id",
      () => ({
        bytes: Buffer.from(JSON.stringify({ protocol: "choria:transport:9", data: "e30=", headers: {} })),
        replyTo: "x.reply",
      }),
      "rpcutil",
      { unvalidated: 1, "dropped.protocol": 1 },
    ],
    [
      "a protocol v1 request to a v2-only node",
      () => ({
        bytes: Buffer.from(JSON.stringify({ protocol: "choria:transport:1", data: "e30=", headers: {} })),
        replyTo: "x.reply",
      }),
      "rpcutil",
      { unvalidated: 1, "dropped.wrong_protocol": 1 },
    ],
    [
      "a forged signature",
      () =>
        buildRequest({ caller: fx.client, agent: "rpcutil", body: rpc, signWith: generateKeyPair().seedHex }),
      "rpcutil",
      { unvalidated: 1, "dropped.bad_signature": 1 },
    ],
    [
      "a token from another issuer",
      () =>
        buildRequest({
          caller: fx.caller({ issuer: orgIssuer(generateKeyPair()) }),
          agent: "rpcutil",
          body: rpc,
        }),
      "rpcutil",
      { unvalidated: 1, "dropped.untrusted_caller": 1 },
    ],
    [
      "an expired token",
      () => buildRequest({ caller: expiredCaller(), agent: "rpcutil", body: rpc }),
      "rpcutil",
      { unvalidated: 1, "dropped.expired_token": 1 },
    ],
    [
      "a request outside the TTL window",
      () =>
        buildRequest({
          caller: fx.client,
          agent: "rpcutil",
          body: rpc,
          ttl: 30,
          time: Date.now() * 1e6 - 40e9,
        }),
      "rpcutil",
      { validated: 1, passed: 1, ttlexpired: 1 },
    ],
    [
      "an oversized message",
      () => {
        const r = buildRequest({
          caller: fx.client,
          agent: "rpcutil",
          body: { action: "ping", data: { pad: "x".repeat(70_000) } },
        });
        return r;
      },
      "rpcutil",
      { unvalidated: 1, "dropped.too_large": 1 },
    ],
    [
      "a caller mismatch",
      () => buildRequest({ caller: fx.client, agent: "rpcutil", body: rpc, callerField: "choria=root" }),
      "rpcutil",
      { unvalidated: 1, "dropped.caller_mismatch": 1 },
    ],
    [
      "an unknown agent (direct)",
      () => buildRequest({ caller: fx.client, agent: "nosuchagent", body: rpc }),
      "direct",
      { validated: 1, passed: 1, "dropped.unknown_agent": 1 },
    ],
  ];

  for (const [what, make, where, expected] of bad) {
    it(`drops ${what}, counts it and keeps serving`, async () => {
      const before = server.stats;
      const req = make();
      const subject =
        where === "direct" ? directSubject(COLLECTIVE, IDENTITY) : broadcastSubject(COLLECTIVE, where);
      const replies = await send(req as BuiltRequest, subject, 250);
      expect(replies).toEqual([]);
      expect(delta(before, server.stats)).toEqual({ total: 1, ...expected });
      expect(await ping()).toHaveLength(1);
    });
  }

  it("answers an unknown action with status 2", async () => {
    const req = buildRequest({ caller: fx.client, agent: "rpcutil", body: { action: "frobnicate" } });
    const [r] = await send(req, broadcastSubject(COLLECTIVE, "rpcutil"));
    expect(r?.body).toMatchObject({
      statuscode: StatusCode.UnknownAction,
      statusmsg: "Unknown action frobnicate for agent rpcutil",
    });
  });

  it("a throwing handler gives status 5; a slow one gives no reply and a timeout count", async () => {
    const boom = buildRequest({ caller: fx.client, agent: "testagent", body: { action: "boom" } });
    const [r] = await send(boom, broadcastSubject(COLLECTIVE, "testagent"));
    expect(r?.body).toMatchObject({ statuscode: StatusCode.UnknownError, statusmsg: "handler exploded" });

    const before = server.stats;
    const slow = buildRequest({ caller: fx.client, agent: "testagent", body: { action: "slow" } });
    expect(await send(slow, broadcastSubject(COLLECTIVE, "testagent"), 1300)).toEqual([]);
    expect(delta(before, server.stats)).toEqual({ total: 1, validated: 1, passed: 1, "dropped.timeout": 1 });
  });

  it("filters: answers only requests whose filter matches", async () => {
    const match = buildRequest({
      caller: fx.client,
      agent: "rpcutil",
      body: rpc,
      filter: {
        ...emptyFilter(),
        fact: [{ fact: "nested.dc", operator: "==", value: "lab" }],
        cf_class: ["web"],
      },
    });
    expect(await send(match, broadcastSubject(COLLECTIVE, "rpcutil"))).toHaveLength(1);
    const before = server.stats;
    const miss = buildRequest({
      caller: fx.client,
      agent: "rpcutil",
      body: rpc,
      filter: { ...emptyFilter(), cf_class: ["db"] },
    });
    expect(await send(miss, broadcastSubject(COLLECTIVE, "rpcutil"))).toEqual([]);
    expect(delta(before, server.stats)).toEqual({ total: 1, validated: 1, filtered: 1 });
  });

  it("daemon_stats reflects the counters", async () => {
    const before = server.stats;
    const req = buildRequest({ caller: fx.client, agent: "rpcutil", body: { action: "daemon_stats" } });
    const [r] = await send(req, broadcastSubject(COLLECTIVE, "rpcutil"));
    const d = r!.body!.data;
    // the daemon_stats request itself is counted before the handler reads the counters
    expect(d).toMatchObject({
      total: before.total + 1,
      validated: before.validated + 1,
      unvalidated: before.unvalidated,
      passed: before.passed + 1,
      filtered: before.filtered,
      replies: before.replies,
      ttlexpired: before.ttlexpired,
      pid: process.pid,
    });
    expect(d.agents).toEqual(["choria_util", "discovery", "rpcutil", "testagent"]);
    expect(typeof d.version).toBe("string");
    expect((d.times as Record<string, number>).utime).toBeGreaterThan(0);
  });

  it("serves agents registered after start", async () => {
    server.registerAgent(
      { ...TEST_DDL, metadata: { ...TEST_DDL.metadata, name: "late" }, actions: [TEST_DDL.actions[0]!] },
      { echo: (req, reply) => void (reply.data.message = `late ${String(req.data.message)}`) },
    );
    await server.connection!.flush();
    const req = buildRequest({
      caller: fx.client,
      agent: "late",
      body: { action: "echo", data: { message: "hi" } },
    });
    const [r] = await send(req, broadcastSubject(COLLECTIVE, "late"));
    expect(r?.body?.data).toMatchObject({ message: "late hi", extra: "dflt" });
  });

  it("works with the Chorus client: discovery and an rpcutil request", async () => {
    const client = new Client({ security: fx.clientSecurity, servers: [nats.url], collective: COLLECTIVE });
    try {
      expect(await client.discover({ timeoutMs: 500 })).toEqual([IDENTITY]);
      expect(await client.discover({ timeoutMs: 500, filter: { cf_class: ["nope"] } })).toEqual([]);
      const res = await client.request(
        "rpcutil",
        "inventory",
        {},
        { timeoutMs: 1000, discoveryTimeoutMs: 500, verifyReplySignatures: true },
      );
      expect(res.replies).toHaveLength(1);
      expect(res.replies[0]).toMatchObject({ sender: IDENTITY, statuscode: 0 });
      expect(res.replies[0]!.data).toMatchObject({
        classes: ["base", "web"],
        facts: { os: "linux" },
        upgradable: false,
      });
      expect(res.stats.dropped).toMatchObject({ signature: 0, hash: 0 });
    } finally {
      await client.close();
    }
  });

  it("exposes Prometheus metrics at /choria/metrics and /metrics", async () => {
    const port = server.statsPort!;
    const text = await (await fetch(`http://127.0.0.1:${port}/choria/metrics`)).text();
    const s = server.stats;
    expect(text).toContain(`choria_server_total{identity="${IDENTITY}"} ${s.total}`);
    expect(text).toContain(`choria_server_ttlexpired{identity="${IDENTITY}"} ${s.ttlexpired}`);
    expect(text).toMatch(/choria_server_agent_requests\{identity="srv1.example",agent="rpcutil"\} \d+/);
    expect(text).toMatch(/choria_server_dropped\{identity="srv1.example",reason="bad_signature"\} 1/);
    expect(text).toContain("process_cpu_user_seconds_total");
    expect((await fetch(`http://127.0.0.1:${port}/metrics`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${port}/other`)).status).toBe(404);
  });
});

describe("Server.fromConfigFile", () => {
  it("reads identity, facts (JSON and YAML), classes and security from a Choria config", async () => {
    const id = "cfg.example";
    fx.serverSecurity(id); // writes cfg.example.seed / .jwt into fx.dir
    writeFileSync(join(fx.dir, "facts.json"), JSON.stringify({ os: "linux", role: "db" }));
    writeFileSync(join(fx.dir, "facts.yaml"), "role: cache\nlocation:\n  dc: lab\n");
    writeFileSync(join(fx.dir, "classes.txt"), "base\n\nredis\n");
    const conf = join(fx.dir, "server.conf");
    writeFileSync(
      conf,
      [
        `identity = ${id}`,
        `collectives = ${COLLECTIVE}`,
        `plugin.choria.middleware_hosts = ${nats.url}`,
        "plugin.security.provider = choria",
        `plugin.security.choria.seed_file = ${id}.seed`,
        `plugin.security.choria.token_file = ${id}.jwt`,
        "plugin.security.issuer.names = dev",
        `plugin.security.issuer.dev.public = ${fx.orgKp.publicHex}`,
        `plugin.yaml = facts.json:facts.yaml:missing.json`,
        "classesfile = classes.txt",
        "loglevel = warn",
        // action_policy is on by default; this test is about config loading
        "plugin.actionpolicy.allow_unconfigured = true",
      ].join("\n"),
    );
    const s = await Server.fromConfigFile(conf, { logger: quietLogger });
    expect(s.identity).toBe(id);
    expect(s.node.facts).toEqual({ os: "linux", role: "cache", location: { dc: "lab" } });
    expect(s.node.classes).toEqual(["base", "redis"]);
    await s.start();
    try {
      const req = buildRequest({
        caller: fx.client,
        agent: "rpcutil",
        body: { action: "get_config_item", data: { item: "classesfile" } },
      });
      const [r] = await send(req, directSubject(COLLECTIVE, id));
      expect(r?.body?.data).toEqual({ item: "classesfile", value: "classes.txt" });
    } finally {
      await s.stop();
    }
  });

  it("installs the built-in agents unless told not to", () => {
    const sec = fx.serverSecurity("bare.example");
    const base = {
      identity: "bare.example",
      collectives: [COLLECTIVE],
      security: sec,
      servers: [nats.url],
      logger: quietLogger,
    };
    expect(new Server(base).registry.names()).toEqual(["choria_util", "discovery", "rpcutil"]);
    expect(new Server({ ...base, defaultAgents: false }).registry.names()).toEqual([]);
  });

  it("refuses a token for another identity", () => {
    const sec = fx.serverSecurity("someone.example");
    expect(
      () =>
        new Server({
          identity: "me.example",
          collectives: [COLLECTIVE],
          security: sec,
          servers: [nats.url],
          logger: quietLogger,
        }),
    ).toThrow(/token is for identity someone.example/);
    expect(
      () =>
        new Server({
          identity: "x",
          collectives: [COLLECTIVE],
          security: fx.clientSecurity,
          servers: [nats.url],
          logger: quietLogger,
        }),
    ).toThrow(/choria_server token/);
  });
});
