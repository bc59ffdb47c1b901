import { mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AdapterOutput } from "../../../src/broker/index.js";
import { parseConfig } from "../../../src/core/config/index.js";
import { decodeRequest, decodeSecureRequest, decodeTransport } from "../../../src/core/protocol/index.js";
import {
  FileContentSource,
  RegistrationPublisher,
  decodeRegistrationPayload,
  encodeRegistrationMessage,
  inventoryContentPayload,
  registrationSettings,
  type InventoryData,
} from "../../../src/services/registration/index.js";
import { generateKeyPair, sign, verify } from "../../../src/core/security/index.js";
import { Server } from "../../../src/server/index.js";
import { nanos } from "../../../src/services/streams/index.js";
import { startSecureFleet, type SecureFleet } from "../../helpers/fleet.js";
import { connectAs } from "../lifecycle/connect.js";
import { readFileSync } from "node:fs";

const inv = (identity: string): InventoryData => ({
  agents: ["rpcutil"],
  classes: ["base"],
  facts: { identity, os: "linux" },
  status: { identity },
  collectives: ["mcollective"],
  build_info: { version: "0.1.0" },
  machines: [],
});

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("registration payloads", () => {
  it("inventory_content is gzip-compressed by default and plain on request", () => {
    const z = JSON.parse(inventoryContentPayload(inv("n1")).toString()) as Record<string, unknown>;
    expect(z.protocol).toBe("choria:registration:inventorycontent:1");
    expect(z.zcontent).toBeTypeOf("string");
    expect(z.content).toBeUndefined();
    expect(decodeRegistrationPayload(inventoryContentPayload(inv("n1"))).content).toEqual(inv("n1"));
    const plain = decodeRegistrationPayload(inventoryContentPayload(inv("n1"), false));
    expect(plain.raw.content).toBeTypeOf("string");
    expect(plain.content).toEqual(inv("n1"));
  });

  it("file_content carries the file, its mtime and whether it changed", () => {
    const dir = mkdtempSync(join(tmpdir(), "chorus-reg-"));
    try {
      const f = join(dir, "data.json");
      writeFileSync(f, '{"a":1}');
      utimesSync(f, 1_700_000_000, 1_700_000_000);
      const src = new FileContentSource(f);
      const first = decodeRegistrationPayload(src.payload() as Buffer);
      expect(first.raw).toMatchObject({
        protocol: "choria:registration:filecontent:1",
        file: f,
        mtime: 1_700_000_000,
        updated: false,
      });
      expect((first.content as Buffer).toString()).toBe('{"a":1}');
      utimesSync(f, 1_700_000_100, 1_700_000_100);
      expect(decodeRegistrationPayload(src.payload() as Buffer).raw.updated).toBe(true);
      expect(new FileContentSource(join(dir, "missing")).payload()).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("is sent as a signed Choria request for agent registration with reply to dev.null", () => {
    const kp = generateKeyPair();
    const bytes = encodeRegistrationMessage({
      payload: Buffer.from("{}"),
      identity: "n1.example.net",
      collective: "mcollective",
      credential: { token: "jwt", sign: (d) => sign(kp.seedHex, d) },
    });
    const { transport, inner } = decodeTransport(bytes);
    expect(transport.headers).toMatchObject({ reply: "dev.null", sender: "n1.example.net" });
    const sec = decodeSecureRequest(inner);
    expect(verify(kp.publicHex, sec.requestBytes, sec.signature)).toBe(true);
    const { request, message } = decodeRequest(sec.requestBytes);
    expect(request).toMatchObject({
      agent: "registration",
      sender: "n1.example.net",
      caller: "choria=n1.example.net",
    });
    expect(message.toString()).toBe("{}");
  });

  it("publishes every interval and at once when the payload size changes", async () => {
    const sent: string[] = [];
    let facts = "x";
    const p = new RegistrationPublisher({
      identity: "n1",
      collective: "mcollective",
      intervalMs: 10_000,
      splay: false,
      changeCheckMs: 20,
      sources: [() => Buffer.from(facts)],
      credential: { token: "t", sign: () => Buffer.alloc(64) },
      publish: (s) => sent.push(s),
    });
    p.start();
    await until("first publish", () => sent.length === 1, 2000);
    await new Promise((r) => setTimeout(r, 100));
    expect(sent).toHaveLength(1); // same size: nothing new
    facts = "xyz";
    await until("size trigger", () => sent.length === 2, 2000);
    p.stop();
    expect(sent[0]).toBe("mcollective.broadcast.agent.registration");
  });

  it("reads go-choria's settings", () => {
    const s = registrationSettings(
      parseConfig(
        [
          "registration = inventory_content, file_content",
          "registerinterval = 60",
          "registration_splay = false",
          "plugin.choria.registration.file_content.data = /etc/reg.json",
          "plugin.choria.registration.inventory_content.compression = false",
        ].join("\n"),
        "/x/server.conf",
      ),
    );
    expect(s).toMatchObject({
      kinds: ["inventory_content", "file_content"],
      intervalMs: 60_000,
      splay: false,
      inventoryCompression: false,
      fileContentFile: "/etc/reg.json",
    });
    expect(registrationSettings(parseConfig("", "/x/s.conf")).kinds).toEqual([]);
    expect(() => registrationSettings(parseConfig("registration = agentlist", "/x/s.conf"))).toThrow(
      /not supported/,
    );
  });
});

const ADAPTER = [
  "plugin.choria.adapters = reg",
  "plugin.choria.adapter.reg.type = jetstream",
  "plugin.choria.adapter.reg.ingest.topic = mcollective.broadcast.agent.registration",
  "plugin.choria.adapter.reg.ingest.protocol = request",
  "plugin.choria.adapter.reg.stream.topic = choria.registration.%s",
  "plugin.choria.adapter.reg.stream.workers = 4",
].join("\n");

describe("registration through the broker adapter into a stream", () => {
  let fleet: SecureFleet;
  let admin: NatsConnection;
  beforeAll(async () => {
    fleet = await startSecureFleet({ servers: ["reg1.example.net"], brokerConfig: ADAPTER });
    admin = await connectAs(fleet.setup, "broker");
    const jsm = await jetstreamManager(admin);
    // the last 5 registrations of every node
    await jsm.streams.add({
      name: "CHORIA_REGISTRATION",
      subjects: ["choria.registration.>"],
      max_msgs_per_subject: 5,
      max_age: nanos(3_600_000),
    });
  }, 60_000);
  afterAll(async () => {
    await admin?.close();
    await fleet?.stop();
  });

  it("keeps the last 5 registrations of each of 100 nodes; garbage is counted and skipped", async () => {
    const adapter = fleet.broker.adapters?.adapters[0];
    expect(adapter).toBeDefined();
    const before = adapter!.stats;
    // 100 emulated nodes on the emulator's connection, each publishing as itself
    const nc = await connectAs(fleet.setup, "emulator");
    const token = readFileSync(join(fleet.setup.dir, "credentials", "emulator.jwt"), "utf8").trim();
    const seed = readFileSync(join(fleet.setup.dir, "credentials", "emulator.seed"), "utf8").trim();
    const nodes = Array.from({ length: 100 }, (_, i) => `node${i}.example.net`);
    const publishers = nodes.map(
      (identity) =>
        new RegistrationPublisher({
          identity,
          collective: "mcollective",
          sources: [() => inventoryContentPayload(inv(identity))],
          credential: { token, sign: (d) => sign(seed, d) },
          publish: (s, d) => nc.publish(s, d),
        }),
    );
    for (let round = 0; round < 7; round++) for (const p of publishers) p.publishAll();
    for (const junk of ["not json", '{"protocol":"io.choria.protocol.v2.transport"}', ""]) {
      nc.publish("mcollective.broadcast.agent.registration", Buffer.from(junk));
    }
    await nc.flush();
    await until("700 stored", () => adapter!.stats.published - before.published >= 700);
    expect(adapter!.stats.bad - before.bad).toBe(3);
    expect(adapter!.stats.dropped).toBe(0);
    await nc.close();

    const jsm = await jetstreamManager(admin);
    const info = await jsm.streams.info("CHORIA_REGISTRATION", {
      subjects_filter: "choria.registration.>",
    });
    const per = info.state.subjects ?? {};
    for (const n of nodes) expect(per[`choria.registration.${n}`], n).toBe(5);
    const last = await jsm.streams.getMessage("CHORIA_REGISTRATION", {
      last_by_subj: "choria.registration.node42.example.net",
    });
    const out = JSON.parse(Buffer.from(last!.data).toString()) as AdapterOutput;
    expect(out).toMatchObject({
      protocol: "choria:adapters:jetstream:output:1",
      sender: "node42.example.net",
    });
    expect(out.requestid).toHaveLength(27);
    expect(decodeRegistrationPayload(Buffer.from(out.data)).content).toEqual(inv("node42.example.net"));
  }, 60_000);

  it("a real server's inventory registration arrives via the adapter", async () => {
    const server = await Server.fromConfigFile(fleet.setup.serverConfigs["reg1.example.net"] as string, {
      logger: pino({ level: "silent" }),
      lifecycle: false,
      registration: {
        kinds: ["inventory_content"],
        intervalMs: 60_000,
        splay: false,
        inventoryCompression: true,
        fileContentCompression: true,
        changeCheckMs: 0,
      },
    });
    await server.start();
    try {
      const jsm = await jetstreamManager(admin);
      let msg: Awaited<ReturnType<typeof jsm.streams.getMessage>> = null;
      await until("server registration", async () => {
        msg = await jsm.streams
          .getMessage("CHORIA_REGISTRATION", { last_by_subj: "choria.registration.reg1.example.net" })
          .catch(() => null);
        return msg !== null;
      });
      const out = JSON.parse(Buffer.from(msg!.data).toString()) as AdapterOutput;
      const content = decodeRegistrationPayload(Buffer.from(out.data)).content as InventoryData;
      expect(content.agents).toContain("rpcutil");
      expect(content.facts).toMatchObject({ os: "linux" });
      expect(content.collectives).toEqual(["mcollective"]);
    } finally {
      await server.stop();
    }
  }, 30_000);
});
