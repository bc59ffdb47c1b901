import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client } from "../../src/client/index.js";
import {
  decodeRequest,
  decodeSecureRequest,
  decodeTransport,
  encodeMessage,
  encodeReply,
  encodeSecureReply,
  encodeTransport,
  nowNanos,
  serviceSubject,
} from "../../src/core/protocol/index.js";
import { startNats, type TestNats } from "../helpers/nats.js";
import { COLLECTIVE, TEST_DDL, makeTrust, startSniffer, type TestTrust } from "./fleet.js";

let nats: TestNats;
let trust: TestTrust;
const members: NatsConnection[] = [];

/** A service agent member: a queue subscriber that answers with its name. */
async function member(name: string, seen: string[]): Promise<void> {
  const nc = await connect({ servers: nats.url });
  members.push(nc);
  nc.subscribe(serviceSubject(COLLECTIVE, "testagent"), {
    queue: "testagent",
    callback: (err, msg) => {
      if (err) return;
      const { inner, transport } = decodeTransport(msg.data);
      const { request } = decodeRequest(decodeSecureRequest(inner).requestBytes);
      seen.push(`${name}:${JSON.stringify(request.filter)}`);
      const reply = encodeReply({
        message: encodeMessage(JSON.stringify({ statuscode: 0, statusmsg: "OK", data: { message: name } })),
        request: request.id,
        sender: name,
        agent: "testagent",
        time: nowNanos(),
      });
      nc.publish(
        transport.headers.reply as string,
        encodeTransport(encodeSecureReply(reply), { sender: name }),
      );
    },
  });
  await nc.flush();
}

beforeAll(async () => {
  nats = await startNats();
  trust = makeTrust();
});
afterAll(async () => {
  await Promise.all(members.map((m) => m.drain()));
  await nats?.stop();
  trust?.cleanup();
});

describe("service requests", () => {
  it("one message to the service queue, no discovery, the first reply ends it", async () => {
    const seen: string[] = [];
    await member("svc-a", seen);
    await member("svc-b", seen);
    const sniffer = await startSniffer(nats.url);
    const c = new Client({
      security: trust.clientSecurity,
      servers: [nats.url],
      collective: COLLECTIVE,
      discoveryTimeoutMs: 1000,
    });
    c.registerDDL(TEST_DDL);
    try {
      const t0 = performance.now();
      const r = await c.request(
        "testagent",
        "echo",
        { message: "hi" },
        { mode: "service", filter: { identity: ["x"] } },
      );
      expect(performance.now() - t0).toBeLessThan(1000);
      expect(r.replies).toHaveLength(1);
      expect(r.stats.ok).toBe(1);
      expect(r.stats.discoverMs).toBe(0);
      await sniffer.nc.flush();
      expect(sniffer.subjects).toEqual([serviceSubject(COLLECTIVE, "testagent")]);
      // a queue group: exactly one member got it, and no filter travelled with it
      expect(seen).toHaveLength(1);
      expect(seen[0]).toMatch(/"identity":\[\]/);
      await expect(
        c.request("testagent", "echo", { message: "hi" }, { mode: "service", batchSize: 2 }),
      ).rejects.toThrow(/need direct mode/);
      // option combinations that cannot work are refused before anything is sent
      const sent = sniffer.subjects.length;
      await expect(
        c.request("testagent", "echo", { message: "hi" }, { mode: "broadcast", limit: 2 }),
      ).rejects.toThrow(/^limit needs direct mode \(not broadcast or service\)$/);
      await expect(
        c.request("testagent", "echo", { message: "hi" }, { nodes: ["a"], replyTo: "x.y", retries: 1 }),
      ).rejects.toThrow(/^replyTo cannot be combined with batchSize, canary or retries$/);
      await sniffer.nc.flush();
      expect(sniffer.subjects).toHaveLength(sent);
    } finally {
      await sniffer.stop();
      await c.close();
    }
  });
});
