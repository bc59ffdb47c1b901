import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client } from "../../src/client/index.js";
import type { AgentDDL } from "../../src/core/ddl/index.js";
import { serviceSubject, broadcastSubject, replyPrefix } from "../../src/core/protocol/index.js";
import { Server } from "../../src/server/index.js";
import { startNats, type TestNats } from "../helpers/nats.js";
import {
  COLLECTIVE,
  buildRequest,
  makeFixture,
  parseReply,
  quietLogger,
  sleep,
  type Fixture,
} from "./helpers.js";

const SERVICE_DDL: AgentDDL = {
  metadata: {
    name: "kvservice",
    description: "a service agent",
    author: "tests",
    license: "Apache-2.0",
    version: "1.0.0",
    url: "https://example.invalid",
    timeout: 2,
    service: true,
  },
  actions: [{ action: "who", description: "who answered", input: {}, output: {} }],
};

let nats: TestNats;
let fx: Fixture;
let nc: NatsConnection;
const servers: Server[] = [];

beforeAll(async () => {
  nats = await startNats();
  fx = makeFixture();
  for (const id of ["svc1.example", "svc2.example", "svc3.example"]) {
    const s = new Server({
      identity: id,
      collectives: [COLLECTIVE],
      security: fx.serverSecurity(id),
      servers: [nats.url],
      logger: quietLogger,
      defaultAgents: false,
    });
    s.registerAgent(SERVICE_DDL, { who: (req) => ({ identity: req.node.identity }) });
    await s.start();
    servers.push(s);
  }
  nc = await connect({ servers: nats.url });
});

afterAll(async () => {
  await nc?.close();
  for (const s of servers) await s.stop();
  await nats?.stop();
  fx?.cleanup();
});

describe("service agents", () => {
  it("one of three servers answers each request, exactly once", async () => {
    const N = 60;
    const replies = new Map<string, string[]>();
    // nodes answer only under the caller's own inbox
    const prefix = `${replyPrefix(COLLECTIVE, fx.client.callerid)}.svctest`;
    const sub = nc.subscribe(`${prefix}.>`, {
      callback: (_e, m) => {
        const r = parseReply(m.data);
        const list = replies.get(r.requestId) ?? [];
        list.push(r.sender);
        replies.set(r.requestId, list);
      },
    });
    await nc.flush();
    const ids: string[] = [];
    for (let i = 0; i < N; i++) {
      const req = buildRequest({
        caller: fx.client,
        agent: "kvservice",
        body: { action: "who" },
        replyTo: `${prefix}.${i}`,
      });
      ids.push(req.id);
      nc.publish(serviceSubject(COLLECTIVE, "kvservice"), req.bytes);
    }
    await nc.flush();
    for (let i = 0; i < 40 && replies.size < N; i++) await sleep(50);
    await sleep(300); // time for any duplicate to show up
    sub.unsubscribe();
    expect(replies.size).toBe(N);
    for (const id of ids) expect(replies.get(id)).toHaveLength(1);
    const answeredBy = new Set([...replies.values()].flat());
    // the queue group spreads the load; with 60 requests all three take part
    expect(answeredBy.size).toBeGreaterThan(1);
    const total = servers.reduce((n, s) => n + s.stats.replies, 0);
    expect(total).toBe(N);
  });

  it("the client's service mode gets one reply per request from one of the servers", async () => {
    const client = new Client({ security: fx.clientSecurity, servers: [nats.url], collective: COLLECTIVE });
    client.registerDDL(SERVICE_DDL);
    try {
      const before = servers.reduce((n, s) => n + s.stats.replies, 0);
      for (let i = 0; i < 5; i++) {
        const r = await client.request("kvservice", "who", {}, { mode: "service", timeoutMs: 2000 });
        expect(r.replies).toHaveLength(1);
        expect(r.replies[0]?.statuscode).toBe(0);
        expect(["svc1.example", "svc2.example", "svc3.example"]).toContain(r.replies[0]?.data.identity);
      }
      expect(servers.reduce((n, s) => n + s.stats.replies, 0) - before).toBe(5);
    } finally {
      await client.close();
    }
  });

  it("a service agent is not on the broadcast subject", async () => {
    const req = buildRequest({ caller: fx.client, agent: "kvservice", body: { action: "who" } });
    let got = 0;
    const sub = nc.subscribe(req.replyTo, { callback: () => void got++ });
    await nc.flush();
    nc.publish(broadcastSubject(COLLECTIVE, "kvservice"), req.bytes);
    await nc.flush();
    await sleep(300);
    sub.unsubscribe();
    expect(got).toBe(0);
  });
});
