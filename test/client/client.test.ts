import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { exitCodeFor } from "../../src/apps/cli/render/index.js";
import { Client, type RpcReply } from "../../src/client/index.js";
import { InputError } from "../../src/core/ddl/index.js";
import { buildFilter } from "../../src/core/filter/index.js";
import { directSubject, emptyFilter } from "../../src/core/protocol/index.js";
import { startNats, type TestNats } from "../helpers/nats.js";
import {
  COLLECTIVE,
  TEST_DDL,
  makeTrust,
  startResponder,
  startSniffer,
  type Responder,
  type ResponderOptions,
  type TestTrust,
} from "./fleet.js";

let nats: TestNats;
let trust: TestTrust;
let responders: Responder[] = [];
let clients: Client[] = [];

beforeAll(async () => {
  nats = await startNats();
  trust = makeTrust();
});

afterAll(async () => {
  await nats?.stop();
  trust?.cleanup();
});

afterEach(async () => {
  await Promise.all(responders.map((r) => r.stop()));
  await Promise.all(clients.map((c) => c.close()));
  responders = [];
  clients = [];
});

async function fleet(...opts: ResponderOptions[]): Promise<Responder[]> {
  const rs = await Promise.all(opts.map((o) => startResponder(nats.url, trust, o)));
  responders.push(...rs);
  return rs;
}

function client(extra: Partial<ConstructorParameters<typeof Client>[0]> = {}): Client {
  const c = new Client({
    security: trust.clientSecurity,
    servers: [nats.url],
    collective: COLLECTIVE,
    identity: "client.example",
    discoveryTimeoutMs: 1000,
    ...extra,
  });
  c.registerDDL(TEST_DDL);
  clients.push(c);
  return c;
}

describe("discovery", () => {
  it("collects every matching node for the full timeout", async () => {
    await fleet({ identity: "n1" }, { identity: "n2" }, { identity: "n3" });
    const t0 = Date.now();
    const ids = await client().discover({ timeoutMs: 800 });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(790);
    expect(ids.sort()).toEqual(["n1", "n2", "n3"]);
  });

  it("applies the filter on the nodes", async () => {
    await fleet(
      { identity: "web1", facts: { role: "web" }, classes: ["nginx"] },
      { identity: "db1", facts: { role: "db" } },
    );
    const c = client();
    expect(await c.discover({ filter: buildFilter({ facts: ["role=web"] }), timeoutMs: 500 })).toEqual([
      "web1",
    ]);
    expect(await c.discover({ filter: buildFilter({ classes: ["nginx"] }), timeoutMs: 500 })).toEqual([
      "web1",
    ]);
    expect(await c.discover({ filter: buildFilter({ identity: ["/^db/"] }), timeoutMs: 500 })).toEqual([
      "db1",
    ]);
  });

  it("windowed mode returns shortly after the last reply", async () => {
    await fleet({ identity: "n1" }, { identity: "n2", delayMs: 100 });
    const t0 = Date.now();
    const ids = await client().discover({ timeoutMs: 5000, windowed: true });
    const took = Date.now() - t0;
    expect(ids.sort()).toEqual(["n1", "n2"]);
    expect(took).toBeGreaterThanOrEqual(300);
    expect(took).toBeLessThan(2000);
  });

  it("windowed mode still waits the full timeout when nobody answers", async () => {
    const t0 = Date.now();
    expect(await client().discover({ timeoutMs: 600, windowed: true })).toEqual([]);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(590);
  });

  it("identity-only filters skip the network", async () => {
    await fleet({ identity: "n1" });
    const sniff = await startSniffer(nats.url);
    try {
      const c = client();
      await c.connect();
      const t0 = Date.now();
      const ids = await c.discover({ filter: buildFilter({ identity: ["n1", "n9", "n1"] }) });
      expect(Date.now() - t0).toBeLessThan(100);
      expect(ids).toEqual(["n1", "n9"]);
      await sniff.nc.flush();
      await new Promise((r) => setTimeout(r, 100));
      expect(sniff.subjects).toEqual([]);
    } finally {
      await sniff.stop();
    }
  });

  it("ping reports round-trip times", async () => {
    await fleet({ identity: "n1" }, { identity: "n2", delayMs: 50 });
    const r = await client().ping({ timeoutMs: 500 });
    expect(r.replies.map((x) => x.sender).sort()).toEqual(["n1", "n2"]);
    const n2 = r.replies.find((x) => x.sender === "n2");
    expect(n2?.ms).toBeGreaterThanOrEqual(45);
    expect(r.requestid).toHaveLength(27);
  });
});

describe("requests", () => {
  it("direct: discovers, signs once, publishes to each node and stops when all answered", async () => {
    const rs = await fleet({ identity: "n1" }, { identity: "n2" }, { identity: "n3" });
    const sniff = await startSniffer(nats.url);
    const streamed: RpcReply[] = [];
    const published: string[] = [];
    try {
      const c = client();
      const r = await c.request(
        "testagent",
        "echo",
        { message: "hello world" },
        {
          discoveryTimeoutMs: 500,
          discoveryWindowed: true,
          onReply: (x) => streamed.push(x),
          onPublish: (t) => published.push(...t),
        },
      );
      expect(r.replies.map((x) => x.sender).sort()).toEqual(["n1", "n2", "n3"]);
      expect(streamed).toHaveLength(3);
      expect(published.sort()).toEqual(["n1", "n2", "n3"]);
      for (const reply of r.replies) {
        expect(reply.statuscode).toBe(0);
        expect(reply.statusmsg).toBe("OK");
        // "extra" comes from the DDL output default
        expect(reply.data).toEqual({ message: "hello world", extra: "dflt" });
        expect(Math.abs(reply.time.getTime() - Date.now())).toBeLessThan(5000);
      }
      expect(r.stats).toMatchObject({
        discovered: 3,
        responses: 3,
        ok: 3,
        failed: 0,
        noResponses: [],
        unexpected: [],
      });
      expect(r.stats.requestid).toHaveLength(27);
      expect(r.stats.discoverMs).toBeGreaterThan(0);
      // all three answered: no waiting for the 500 + 2000 ms timeout
      expect(r.stats.requestMs).toBeLessThan(1000);
      expect(exitCodeFor(r.stats)).toBe(0);

      const direct = rs.map((x) =>
        x.received.filter((m) => m.subject === directSubject(COLLECTIVE, x.identity)),
      );
      for (const d of direct) expect(d).toHaveLength(1);
      // the very same signed bytes went to every node
      const first = Buffer.from(direct[0]![0]!.data);
      for (const d of direct) expect(Buffer.from(d[0]!.data).equals(first)).toBe(true);
      expect(direct[0]![0]!.request).toMatchObject({
        agent: "testagent",
        collective: COLLECTIVE,
        caller: "choria=tester",
        sender: "client.example",
        ttl: 60,
      });
      await sniff.nc.flush();
      expect(sniff.subjects.filter((s) => s.includes(".node.")).sort()).toEqual([
        "mcollective.node.n1",
        "mcollective.node.n2",
        "mcollective.node.n3",
      ]);
    } finally {
      await sniff.stop();
    }
  });

  it("direct with nodes: no discovery, missing nodes listed as no responses", async () => {
    await fleet({ identity: "n1" }, { identity: "n2" });
    const sniff = await startSniffer(nats.url);
    try {
      const r = await client().request(
        "testagent",
        "echo",
        { message: "hi" },
        { nodes: ["n1", "n2", "ghost2", "ghost1"], timeoutMs: 500 },
      );
      expect(r.stats).toMatchObject({
        discovered: 4,
        responses: 2,
        ok: 2,
        noResponses: ["ghost1", "ghost2"],
        discoverMs: 0,
      });
      expect(r.stats.requestMs).toBeGreaterThanOrEqual(450);
      expect(exitCodeFor(r.stats)).toBe(2);
      expect(sniff.subjects.some((s) => s.includes("broadcast"))).toBe(false);
    } finally {
      await sniff.stop();
    }
  });

  it("counts failed replies", async () => {
    await fleet({ identity: "n1" }, { identity: "n2" });
    const r = await client().request("testagent", "fail", {}, { nodes: ["n1", "n2"] });
    expect(r.stats).toMatchObject({ responses: 2, ok: 0, failed: 2 });
    expect(r.replies[0]).toMatchObject({ statuscode: 1, statusmsg: "failed on purpose", data: {} });
    expect(exitCodeFor(r.stats)).toBe(2);
  });

  it("broadcast: one message carrying the filter; nodes filter themselves", async () => {
    const rs = await fleet(
      { identity: "web1", facts: { role: "web" } },
      { identity: "web2", facts: { role: "web" } },
      { identity: "db1", facts: { role: "db" } },
    );
    const r = await client().request(
      "testagent",
      "echo",
      { message: "hi" },
      { mode: "broadcast", filter: buildFilter({ facts: ["role=web"] }), discoveryTimeoutMs: 400 },
    );
    expect(r.replies.map((x) => x.sender).sort()).toEqual(["web1", "web2"]);
    expect(r.stats).toMatchObject({ discovered: 2, responses: 2, noResponses: [] });
    // db1 answers nothing, so the request may return before it has read the broadcast
    const got = () => rs.every((x) => x.received.some((m) => m.request.agent === "testagent"));
    for (let i = 0; i < 50 && !got(); i++) await new Promise((res) => setTimeout(res, 50));
    for (const x of rs) {
      const agentMsgs = x.received.filter((m) => m.request.agent === "testagent");
      expect(agentMsgs).toHaveLength(1);
      expect(agentMsgs[0]!.subject).toBe("mcollective.broadcast.agent.testagent");
      expect(agentMsgs[0]!.request.filter?.fact).toEqual([{ fact: "role", operator: "==", value: "web" }]);
    }
  });

  it("discovered nothing: nothing is published, exit code 1", async () => {
    await fleet({ identity: "n1", facts: { role: "db" } });
    const r = await client().request(
      "testagent",
      "echo",
      { message: "hi" },
      { filter: buildFilter({ facts: ["role=web"] }), discoveryTimeoutMs: 300 },
    );
    expect(r.stats).toMatchObject({ discovered: 0, responses: 0 });
    expect(exitCodeFor(r.stats)).toBe(1);
    expect(responders[0]!.received.filter((m) => m.request.agent === "testagent")).toEqual([]);
  });

  it("drops and counts replies whose hash does not match", async () => {
    await fleet({ identity: "good" }, { identity: "bad", behaviour: "bad_hash" });
    const r = await client().request(
      "testagent",
      "echo",
      { message: "hi" },
      { nodes: ["good", "bad"], timeoutMs: 500 },
    );
    expect(r.replies.map((x) => x.sender)).toEqual(["good"]);
    expect(r.stats.dropped.hash).toBe(1);
    expect(r.stats.noResponses).toEqual(["bad"]);
  });

  it("rejects forged or mismatched reply signatures only when verification is on", async () => {
    await fleet(
      { identity: "good" },
      { identity: "forged", behaviour: "forged_signature" },
      { identity: "impostor", behaviour: "wrong_identity_token" },
      { identity: "unsigned", behaviour: "unsigned" },
    );
    const nodes = ["good", "forged", "impostor", "unsigned"];
    const c = client();
    const strict = await c.request(
      "testagent",
      "echo",
      { message: "hi" },
      { nodes, timeoutMs: 500, verifyReplySignatures: true },
    );
    expect(strict.replies.map((x) => x.sender)).toEqual(["good"]);
    expect(strict.stats.dropped.signature).toBe(3);
    expect(strict.stats.noResponses).toEqual(["forged", "impostor", "unsigned"]);

    const lax = await c.request("testagent", "echo", { message: "hi" }, { nodes, timeoutMs: 500 });
    expect(lax.replies.map((x) => x.sender).sort()).toEqual(["forged", "good", "impostor", "unsigned"]);
    expect(lax.stats.dropped.signature).toBe(0);
  });

  it("the client-wide verifyReplySignatures option applies to discovery too", async () => {
    await fleet({ identity: "good" }, { identity: "forged", behaviour: "forged_signature" });
    const ids = await client({ verifyReplySignatures: true }).discover({ timeoutMs: 400 });
    expect(ids).toEqual(["good"]);
  });

  it("validates inputs against the DDL before publishing anything", async () => {
    await fleet({ identity: "n1" });
    const sniff = await startSniffer(nats.url);
    try {
      const c = client();
      await c.connect();
      const cases: [Record<string, unknown>, RegExp][] = [
        [{ message: "hi", bogus: 1 }, /input "bogus" is not an input of this action/],
        [{ message: 42 }, /input "message" must be a string/],
        [{}, /input "message" is required/],
        [{ message: "Hi;" }, /input "message" does not match/],
        [{ message: "hi", count: "3" }, /input "count" must be an integer/],
      ];
      for (const [data, re] of cases) {
        const err = await c.request("testagent", "echo", data, { nodes: ["n1"] }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(InputError);
        expect((err as Error).message).toMatch(re);
      }
      await expect(c.request("testagent", "nope", {}, { nodes: ["n1"] })).rejects.toThrow(/no action "nope"/);
      await expect(c.request("nosuchagent", "x", {}, { nodes: ["n1"] })).rejects.toThrow(
        /no DDL found for agent "nosuchagent"/,
      );
      await sniff.nc.flush();
      await new Promise((r) => setTimeout(r, 100));
      expect(sniff.subjects).toEqual([]);
      expect(responders[0]!.received).toEqual([]);
    } finally {
      await sniff.stop();
    }
  });

  it("does not modify the caller's data and sends DDL input defaults", async () => {
    const rs = await fleet({ identity: "n1" });
    const ddl = structuredClone(TEST_DDL);
    ddl.actions[0]!.input.count!.default = 7;
    const data = { message: "hi" };
    const c = client();
    await c.request("testagent", "echo", data, { nodes: ["n1"], ddl });
    expect(data).toEqual({ message: "hi" });
    const req = rs[0]!.received.find((m) => m.request.agent === "testagent");
    expect(JSON.parse(req!.body)).toEqual({
      agent: "testagent",
      action: "echo",
      data: { message: "hi", count: 7 },
    });
  });

  it("uses the built-in rpcutil DDL", async () => {
    await fleet({
      identity: "n1",
      handler: () => ({ statuscode: 0, statusmsg: "OK", data: { pong: 12345 } }),
    });
    const r = await client().request("rpcutil", "ping", {}, { nodes: ["n1"] });
    expect(r.replies[0]?.data).toEqual({ pong: 12345 });
  });

  it("an abort signal ends collection early with the replies so far", async () => {
    await fleet({ identity: "n1" });
    const c = client();
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 300);
    const t0 = Date.now();
    const r = await c.request(
      "testagent",
      "echo",
      { message: "hi" },
      { nodes: ["n1", "ghost"], timeoutMs: 10_000, signal: ac.signal },
    );
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(r.replies.map((x) => x.sender)).toEqual(["n1"]);
    expect(r.stats.noResponses).toEqual(["ghost"]);

    const d = new AbortController();
    setTimeout(() => d.abort(), 200);
    const t1 = Date.now();
    expect(await c.discover({ timeoutMs: 10_000, signal: d.signal })).toEqual(["n1"]);
    expect(Date.now() - t1).toBeLessThan(2000);

    // aborted before publishing: nothing is sent
    const agentMsgs = () => responders[0]!.received.filter((m) => m.request.agent === "testagent").length;
    const before = agentMsgs();
    const r2 = await c.request(
      "testagent",
      "echo",
      { message: "hi" },
      { filter: { fact: [{ fact: "role", operator: "==", value: "x" }] }, signal: AbortSignal.abort() },
    );
    expect(r2.stats.responses).toBe(0);
    await new Promise((r) => setTimeout(r, 100));
    expect(agentMsgs()).toBe(before);
  });

  it("close is idempotent and later calls fail clearly", async () => {
    const c = client();
    await c.connect();
    await c.close();
    await c.close();
    await expect(c.discover({ filter: emptyFilter(), timeoutMs: 100 })).rejects.toThrow(/closed/);
  });

  it("a connection failure is one clear error", async () => {
    const c = client({ servers: ["nats://127.0.0.1:1"] });
    await expect(c.discover({ timeoutMs: 100 })).rejects.toThrow(/cannot connect to nats:\/\/127.0.0.1:1/);
  });

  it("a request ends at its timeout, or its signal, while the broker does not answer the flush", async () => {
    // a broker frozen with SIGSTOP never sends the PONG a flush waits for; nats.js keeps
    // such a flush pending forever, even across close(), so the request must not await it alone
    const own = await startNats();
    try {
      const c = client({ servers: [own.url] });
      await c.connect();
      own.proc.kill("SIGSTOP");
      const t0 = Date.now();
      const r = await c.request("testagent", "echo", { message: "hi" }, { nodes: ["n1"], timeoutMs: 500 });
      expect(r.stats.responses).toBe(0);
      expect(Date.now() - t0).toBeLessThan(5000);

      const ac = new AbortController();
      const t1 = Date.now();
      const pending = c.request(
        "testagent",
        "echo",
        { message: "hi" },
        { nodes: ["n1"], timeoutMs: 60_000, signal: ac.signal },
      );
      setTimeout(() => ac.abort(), 200);
      const r2 = await pending;
      expect(r2.stats.interrupted).toBe(true);
      expect(Date.now() - t1).toBeLessThan(5000);
    } finally {
      own.proc.kill("SIGCONT");
      await own.stop();
    }
  });
});
