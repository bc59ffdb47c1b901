import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { StreamAdapter, type AdapterOutput } from "../../src/broker/index.js";
import { brokerSettings, parseConfig, type AdapterSettings } from "../../src/core/config/index.js";
import {
  encodeMessage,
  encodeReply,
  encodeSecureReply,
  encodeTransport,
  newRequestId,
  nowNanos,
} from "../../src/core/protocol/index.js";
import { encodeRegistrationMessage } from "../../src/services/registration/index.js";
import { startNats, type TestNats } from "../helpers/nats.js";

const settings = (o: Partial<AdapterSettings> = {}): AdapterSettings => ({
  name: "t",
  type: "jetstream",
  ingestTopic: "in.test",
  ingestProtocol: "request",
  ingestWorkers: 1,
  streamTopic: "out.%s",
  streamWorkers: 2,
  queueLen: 100,
  ...o,
});

const regMessage = (identity: string) =>
  encodeRegistrationMessage({
    payload: Buffer.from(`{"id":"${identity}"}`),
    identity,
    collective: "mcollective",
    credential: { token: "jwt", sign: () => Buffer.alloc(64) },
  });

async function until(what: string, cond: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("stream adapters", () => {
  let nats: TestNats;
  let nc: NatsConnection;
  let adapter: StreamAdapter | undefined;
  let store = "";
  beforeAll(async () => {
    store = mkdtempSync(join(tmpdir(), "chorus-adapter-js-"));
    nats = await startNats(`jetstream { store_dir: ${JSON.stringify(store)} }`);
    nc = await connect({ servers: nats.url });
  }, 30_000);
  afterAll(async () => {
    await nc?.close();
    await nats?.stop();
    rmSync(store, { recursive: true, force: true });
  });
  beforeEach(async () => {
    await adapter?.stop(0);
    adapter = undefined;
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete("OUT").catch(() => undefined);
  });

  const addStream = async () =>
    (await jetstreamManager(nc)).streams.add({ name: "OUT", subjects: ["out.>"], max_msgs_per_subject: 5 });

  it("converts reply-protocol messages with the sender and request id", async () => {
    await addStream();
    adapter = new StreamAdapter(settings({ ingestProtocol: "reply", type: "choria_streams" }));
    adapter.start(nc);
    const rid = newRequestId();
    const reply = encodeReply({
      message: encodeMessage('{"ok":true}'),
      request: rid,
      sender: "web1.example.net",
      agent: "rpcutil",
      time: nowNanos(),
    });
    nc.publish("in.test", encodeTransport(encodeSecureReply(reply), { sender: "web1.example.net" }));
    await until("published", () => adapter!.stats.published === 1);
    const m = await (
      await jetstreamManager(nc)
    ).streams.getMessage("OUT", { last_by_subj: "out.web1.example.net" });
    const out = JSON.parse(Buffer.from(m!.data).toString()) as AdapterOutput;
    expect(out).toMatchObject({
      protocol: "choria:adapters:choria_streams:output:1",
      data: '{"ok":true}',
      sender: "web1.example.net",
      requestid: rid,
    });
    expect(Math.abs(out.time - Date.now() / 1000)).toBeLessThan(10);
  });

  it("counts and skips garbage, including requests when it expects replies", async () => {
    await addStream();
    adapter = new StreamAdapter(settings({ ingestProtocol: "reply" }));
    adapter.start(nc);
    for (const junk of ["", "{}", "[1,2]", "\u0000\u0001", '{"protocol":"x","data":"eA==","headers":{}}']) {
      nc.publish("in.test", Buffer.from(junk));
    }
    nc.publish("in.test", regMessage("n1"));
    await nc.flush();
    await until("all seen", () => adapter!.stats.received === 6);
    expect(adapter.stats).toMatchObject({ bad: 6, published: 0, dropped: 0 });
    expect(await adapter.metrics.registry.metrics()).toContain(
      'choria_adapter_bad_messages_total{adapter="t"} 6',
    );
  });

  it("buffers while the stream is unavailable and delivers everything once it is back", async () => {
    adapter = new StreamAdapter(settings(), { retryMs: 50, publishTimeoutMs: 500 });
    adapter.start(nc);
    for (let i = 0; i < 20; i++) nc.publish("in.test", regMessage(`n${i}`));
    await nc.flush();
    await until("publish attempts fail", () => adapter!.stats.received === 20 && adapter!.stats.errors > 0);
    expect(adapter.stats.published).toBe(0);
    await addStream();
    await until("all stored", () => adapter!.stats.published === 20);
    expect(adapter.stats).toMatchObject({ dropped: 0, failed: 0, queued: 0 });
    expect((await (await jetstreamManager(nc)).streams.info("OUT")).state.messages).toBe(20);
  });

  it("drops (and counts) what does not fit the bounded buffer, loses nothing else", async () => {
    adapter = new StreamAdapter(settings({ queueLen: 5, streamWorkers: 1 }), {
      retryMs: 50,
      publishTimeoutMs: 500,
    });
    adapter.start(nc);
    for (let i = 0; i < 20; i++) nc.publish("in.test", regMessage(`n${i}`));
    await nc.flush();
    await until("received", () => adapter!.stats.received === 20);
    expect(adapter.stats.dropped).toBeGreaterThanOrEqual(14);
    await addStream();
    await until("buffer drained", () => adapter!.stats.published + adapter!.stats.dropped === 20);
    expect(adapter.stats.published).toBeGreaterThanOrEqual(5);
    expect(await adapter.metrics.registry.metrics()).toMatch(
      /choria_adapter_dropped_total\{adapter="t"\} 1[45]/,
    );
  });
});

describe("adapter and stream settings", () => {
  const broker = (lines: string[]) =>
    brokerSettings(
      parseConfig(["plugin.choria.broker_network = true", ...lines].join("\n"), "/x/broker.conf"),
    );

  it("reads go-choria's adapter keys with their defaults", () => {
    const s = broker([
      "plugin.choria.adapters = reg",
      "plugin.choria.adapter.reg.type = jetstream",
      "plugin.choria.adapter.reg.ingest.topic = mcollective.broadcast.agent.registration",
      "plugin.choria.adapter.reg.stream.topic = choria.registration.%s",
    ]);
    expect(s.adapters).toEqual([
      {
        name: "reg",
        type: "jetstream",
        ingestTopic: "mcollective.broadcast.agent.registration",
        ingestProtocol: "request",
        // inline decoding unless configured: go-choria's 10 are goroutines, not threads
        ingestWorkers: 0,
        streamTopic: "choria.registration.%s",
        streamWorkers: 10,
        queueLen: 10_000,
      },
    ]);
    expect(
      broker([
        "plugin.choria.adapters = reg",
        "plugin.choria.adapter.reg.type = jetstream",
        "plugin.choria.adapter.reg.ingest.topic = x",
        "plugin.choria.adapter.reg.ingest.workers = 4",
        "plugin.choria.adapter.reg.stream.topic = y.%s",
      ]).adapters[0]?.ingestWorkers,
    ).toBe(4);
    expect(s.streams).toMatchObject({
      eventRetentionMs: 86_400_000,
      advisoryRetentionMs: 168 * 3_600_000,
      leaderElectionTtlMs: 60_000,
      manage: true,
    });
  });

  it("refuses adapters it cannot run, with the key at fault", () => {
    const base = ["plugin.choria.adapters = a", "plugin.choria.adapter.a.stream.topic = x.%s"];
    expect(() => broker([...base, "plugin.choria.adapter.a.type = nats_stream"])).toThrow(/not supported/);
    expect(() => broker([...base, "plugin.choria.adapter.a.type = jetstream"])).toThrow(
      /ingest.topic is required/,
    );
    expect(() =>
      broker([
        ...base,
        "plugin.choria.adapter.a.type = jetstream",
        "plugin.choria.adapter.a.ingest.topic = x",
        "plugin.choria.adapter.a.ingest.protocol = carrier-pigeon",
      ]),
    ).toThrow(/request or reply/);
    expect(() =>
      broker([
        ...base,
        "plugin.choria.adapter.a.type = jetstream",
        "plugin.choria.adapter.a.ingest.topic = x",
        "plugin.choria.adapter.a.ingest.workers = -1",
      ]),
    ).toThrow(/ingest.workers must be 0 or more/);
    expect(() => broker(["plugin.choria.network.stream.leader_election_ttl = 2h"])).toThrow(
      /between 1s and 1h/,
    );
  });
});
