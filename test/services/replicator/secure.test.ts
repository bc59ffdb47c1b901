// A cell and a centre as Chorus deploys them: two dev setups, each with its own org
// issuer, NATS operator, CA and credentials, each broker in operator mode with TLS and
// managed Streams. The replicator logs in to each side with that side's credential and
// CA, copies the cell's lifecycle events into the centre under a prefix, and sends
// heartbeats; a credential of the wrong side is refused.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { pino } from "pino";
import { BrokerSupervisor, brokerSettings } from "../../../src/broker/index.js";
import { createDevSetup, type DevSetup } from "../../../src/apps/setup/index.js";
import { loadConfig } from "../../../src/core/config/index.js";
import { connectNats, type NatsConnection } from "../../../src/core/connector/index.js";
import { replyPrefix } from "../../../src/core/protocol/index.js";
import { loadSeedFile } from "../../../src/core/security/index.js";
import { Replicator, parseSourceHeader } from "../../../src/services/replicator/index.js";
import { freePort } from "../../helpers/nats.js";
import { quietLog, readAll, replicatorConfig, until } from "./fixture.js";

const silent = pino({ level: "silent" });

interface Site {
  setup: DevSetup;
  broker: BrokerSupervisor;
  nc: NatsConnection;
  jsm: JetStreamManager;
}

let dir: string;
let cell: Site;
let centre: Site;

async function site(name: string, port: number): Promise<Site> {
  const setup = await createDevSetup({
    dir: join(dir, name),
    brokerPorts: [port],
    callerId: `choria=${name}-admin`,
  });
  const broker = new BrokerSupervisor({
    settings: brokerSettings(loadConfig(setup.brokerConfig)),
    logger: () => undefined,
  });
  await broker.start();
  const cred = (f: string) => join(setup.dir, "credentials", f);
  const nc = await connectNats({
    servers: [setup.brokerUrl],
    name: `${name}-admin`,
    caFile: setup.caFile,
    seedHex: loadSeedFile(cred("broker.seed")).seedHex,
    natsJwt: readFileSync(cred("broker.jwt.nats"), "utf8").trim(),
    inboxPrefix: replyPrefix(setup.collective, "choria=broker.chorus.local"),
    logger: quietLog,
  });
  return { setup, broker, nc, jsm: await jetstreamManager(nc) };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "chorus-sr-secure-"));
  const ports = new Set<number>();
  while (ports.size < 2) ports.add(await freePort());
  const [a, b] = [...ports] as [number, number];
  [cell, centre] = await Promise.all([site("cell", a), site("centre", b)]);
}, 60_000);

afterAll(async () => {
  for (const s of [cell, centre]) {
    await s?.nc.close();
    await s?.broker.stop();
  }
  rmSync(dir, { recursive: true, force: true });
});

function side(s: Site, key: string): string[] {
  return [
    `    ${key}_url: ${s.setup.brokerUrl}`,
    `    ${key}_tls: { ca: ${s.setup.caFile} }`,
    `    ${key}_choria: { seed_file: ${join(s.setup.dir, "credentials/broker.seed")}, jwt_file: ${join(s.setup.dir, "credentials/broker.jwt")}, collective: mcollective }`,
  ];
}

describe("a cell replicated into a centre, each with its own trust", () => {
  it("copies lifecycle events over TLS with each side's credential, and sends heartbeats", async () => {
    // the centre keeps the cell's heartbeats in a stream of its own
    await centre.jsm.streams.add({ name: "HEARTBEATS", subjects: ["chorus.heartbeat.>"] });
    const r = new Replicator(
      replicatorConfig(
        [
          "name: CELL1",
          "heartbeats:",
          `  url: ${centre.setup.brokerUrl}`,
          `  tls: { ca: ${centre.setup.caFile} }`,
          `  choria: { seed_file: ${join(centre.setup.dir, "credentials/broker.seed")}, jwt_file: ${join(centre.setup.dir, "credentials/broker.jwt")}, collective: mcollective }`,
          "  interval: 1s",
          "  headers: { cell: cell1 }",
          "  subjects: [{ subject: chorus.heartbeat.cell1 }]",
          "streams:",
          "  - name: events",
          "    stream: CHORIA_EVENTS",
          "    target_stream: CELL1_EVENTS",
          "    target_subject_prefix: cell1",
          ...side(cell, "source"),
          ...side(centre, "target"),
        ].join("\n"),
      ),
      { logger: silent },
    );
    for (let i = 0; i < 20; i++)
      cell.nc.publish(`choria.lifecycle.event.alive.node${i}`, JSON.stringify({ identity: `node${i}` }));
    await cell.nc.flush();
    await r.start();
    try {
      const count = async () =>
        (await centre.jsm.streams.info("CELL1_EVENTS").catch(() => undefined))?.state.messages ?? 0;
      await until(async () => (await count()) === 20, 20_000, "20 events at the centre");
      const msgs = await readAll(centre.jsm, "CELL1_EVENTS");
      expect(msgs[0]?.subject).toBe("cell1.choria.lifecycle.event.alive.node0");
      expect(parseSourceHeader(msgs[19]?.source)).toMatchObject({
        stream: "CHORIA_EVENTS",
        seq: 20,
        replicator: "CELL1",
      });
      await until(
        async () => ((await centre.jsm.streams.info("HEARTBEATS")).state.messages ?? 0) >= 2,
        10_000,
        "2 heartbeats",
      );
      const hb = (await readAll(centre.jsm, "HEARTBEATS"))[0];
      expect(hb?.headers["Choria-SR-Subject"]).toBe("chorus.heartbeat.cell1");
      expect(hb?.headers["Choria-SR-Originator"]).not.toBe("");
      expect(hb?.headers.cell).toBe("cell1");
      expect(Math.abs(Number(hb?.data) - Date.now() / 1000)).toBeLessThan(30);
    } finally {
      await r.stop();
    }
  }, 60_000);

  it("a credential of the other site is refused: the copy does not start and the error says why", async () => {
    const r = new Replicator(
      replicatorConfig(
        [
          "name: WRONG",
          "streams:",
          "  - stream: CHORIA_EVENTS",
          "    target_stream: WRONG_EVENTS",
          "    target_subject_prefix: wrong",
          ...side(cell, "source"),
          // the centre's broker and CA with the cell's credential
          `    target_url: ${centre.setup.brokerUrl}?connect_timeout=3s`,
          `    target_tls: { ca: ${centre.setup.caFile} }`,
          `    target_choria: { seed_file: ${join(cell.setup.dir, "credentials/broker.seed")}, jwt_file: ${join(cell.setup.dir, "credentials/broker.jwt")}, collective: mcollective }`,
        ].join("\n"),
      ),
      { logger: silent },
    );
    const started = r.start();
    const outcome = await Promise.race([
      started.then(
        () => "started",
        (e: Error) => e.message,
      ),
      new Promise<string>((res) => setTimeout(() => res("still trying"), 8000)),
    ]);
    await r.stop();
    expect(outcome).toMatch(/authorization|authentication|Authorization/);
    expect(await centre.jsm.streams.info("WRONG_EVENTS").catch(() => undefined)).toBeUndefined();
  }, 30_000);
});
