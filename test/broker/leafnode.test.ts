import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BrokerSupervisor, brokerSettings, brokerStatus } from "../../src/broker/index.js";
import { createDevSetup, type DevSetup } from "../../src/apps/setup/index.js";
import { loadConfig } from "../../src/core/config/index.js";
import { connectNats, type NatsConnection } from "../../src/core/connector/index.js";
import { replyPrefix } from "../../src/core/protocol/index.js";
import {
  createNatsTrust,
  generateKeyPair,
  issueLeafCredentials,
  loadSeedFile,
  orgIssuer,
} from "../../src/core/security/index.js";
import { lineLogger } from "../../src/core/util/index.js";
import { freePort } from "../helpers/nats.js";
import { answerAcross, makeCerts, testBrokerSettings } from "./helpers.js";

// An edge broker joined to a core broker by one TLS leafnode link
// (plugin.choria.network.leafnode_port on the core, leafnode_remote.<name>.url on the edge):
// a client of the edge reaches a responder on the core and back.

const silent = lineLogger(() => undefined);
let dir: string;
let core: BrokerSupervisor;
let edge: BrokerSupervisor;
let ca: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "chorus-leaf-"));
  const certs = makeCerts(dir);
  ca = certs.ca;
  const tls = [
    `plugin.security.choria.certificate = ${certs.cert}`,
    `plugin.security.choria.key = ${certs.key}`,
    `plugin.security.choria.ca = ${certs.ca}`,
  ];
  // picked at once and all different: ports picked separately for each broker could be the
  // same number (none is bound until its nats-server starts)
  const picked = new Set<number>();
  while (picked.size < 5) picked.add(await freePort());
  const [leafPort, coreMon, edgeMon, coreCl, edgeCl] = [...picked] as number[];
  core = new BrokerSupervisor({
    settings: await testBrokerSettings(join(dir, "core"), [
      "identity = core.test",
      `plugin.choria.network.leafnode_port = ${leafPort}`,
      `plugin.choria.network.monitor_port = ${coreMon}`,
      `plugin.choria.network.client_port = ${coreCl}`,
      ...tls,
    ]),
  });
  await core.start();
  edge = new BrokerSupervisor({
    settings: await testBrokerSettings(join(dir, "edge"), [
      "identity = edge.test",
      `plugin.choria.network.monitor_port = ${edgeMon}`,
      `plugin.choria.network.client_port = ${edgeCl}`,
      "plugin.choria.network.leafnode_remotes = core",
      `plugin.choria.network.leafnode_remote.core.url = tls://127.0.0.1:${leafPort}`,
      ...tls,
    ]),
  });
  await edge.start();
}, 30_000);

afterAll(async () => {
  await Promise.all([edge?.stop(), core?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

async function client(b: BrokerSupervisor): Promise<NatsConnection> {
  return connectNats({ servers: [b.clientUrl], name: "leaf test", caFile: ca, logger: silent });
}

describe("leafnodes", () => {
  it("renders the link with TLS on both sides", () => {
    expect(readFileSync(core.configPath, "utf8")).toMatch(
      /leafnodes \{\n {2}host: "127\.0\.0\.1"\n {2}port: \d+[\s\S]*tls \{/,
    );
    expect(readFileSync(edge.configPath, "utf8")).toMatch(
      /remotes: \[\n {4}\{\n {6}urls: \["tls:\/\/127\.0\.0\.1:\d+"\]/,
    );
  });

  it("a client on the edge broker reaches a responder on the core through the link", async () => {
    const onCore = await client(core);
    const onEdge = await client(edge);
    try {
      const answer = await answerAcross(onCore, onEdge, "mcollective.node.core-node", {
        responder: "core",
        asker: "edge",
      });
      expect(answer).toBe("pong from core to edge");
      const st = await brokerStatus(core.monitorUrl, 0);
      expect(st.leafnodes).toHaveLength(1);
      expect(st.leafnodes[0]?.rtt).not.toBe("");
    } finally {
      await Promise.all([onCore.close(), onEdge.close()]);
    }
  });
});

// The realistic edge: both brokers in operator mode with the same trust (the dev setup's),
// the link logging in to the hub with the setup's credentials/leaf.creds and binding the
// edge's CHORIA account (`account = CHORIA`, which the broker turns into the account key).
describe("a leafnode link to a hub in operator mode", () => {
  let sdir: string;
  let setup: DevSetup;
  let hub: BrokerSupervisor;
  const edges: BrokerSupervisor[] = [];

  async function operatorBroker(name: string, lines: string[]): Promise<BrokerSupervisor> {
    const text = readFileSync(setup.brokerConfig, "utf8").replace(
      /^plugin\.choria\.network\.client_port = .*$/m,
      "",
    );
    const path = join(sdir, `broker-${name}.conf`);
    writeFileSync(path, [text, `identity = ${name}.chorus.local`, ...lines, ""].join("\n"));
    const b = new BrokerSupervisor({ settings: brokerSettings(loadConfig(path)), logger: () => undefined });
    await b.start();
    return b;
  }

  /** a NATS connection as one of the setup's credentials, replies under its caller's inbox */
  function as(b: BrokerSupervisor, cred: string, callerId: string): Promise<NatsConnection> {
    return connectNats({
      servers: [b.clientUrl],
      name: `leaf ${cred}`,
      caFile: setup.caFile,
      seedHex: loadSeedFile(join(sdir, "credentials", `${cred}.seed`)).seedHex,
      natsJwt: readFileSync(join(sdir, "credentials", `${cred}.jwt.nats`), "utf8").trim(),
      inboxPrefix: replyPrefix(setup.collective, callerId),
      logger: silent,
    });
  }

  beforeAll(async () => {
    sdir = mkdtempSync(join(tmpdir(), "chorus-leafop-"));
    const picked = new Set<number>();
    while (picked.size < 7) picked.add(await freePort());
    const [hubCl, hubMon, leafPort, edgeCl, edgeMon, badCl, badMon] = [...picked] as number[];
    setup = await createDevSetup({
      dir: sdir,
      brokerPorts: [hubCl as number],
      streams: false,
      callerId: "choria=leaftester",
    });
    hub = await operatorBroker("hub", [
      `plugin.choria.network.client_port = ${hubCl}`,
      `plugin.choria.network.monitor_port = ${hubMon}`,
      `plugin.choria.network.leafnode_port = ${leafPort}`,
    ]);
    const remote = (creds: string) => [
      "plugin.choria.network.leafnode_remotes = hub",
      `plugin.choria.network.leafnode_remote.hub.url = tls://127.0.0.1:${leafPort}`,
      `plugin.choria.network.leafnode_remote.hub.credentials = ${creds}`,
      "plugin.choria.network.leafnode_remote.hub.account = CHORIA",
    ];
    edges.push(
      await operatorBroker("edge", [
        `plugin.choria.network.client_port = ${edgeCl}`,
        `plugin.choria.network.monitor_port = ${edgeMon}`,
        ...remote(setup.leafCredentials),
      ]),
    );
    // forged: a leaf user signed by another org's issuer, in an account the hub does not know
    const other = orgIssuer(generateKeyPair());
    const forged = join(sdir, "forged.creds");
    writeFileSync(
      forged,
      await issueLeafCredentials(other, await createNatsTrust(other), { name: "forged" }),
    );
    edges.push(
      await operatorBroker("forged-edge", [
        `plugin.choria.network.client_port = ${badCl}`,
        `plugin.choria.network.monitor_port = ${badMon}`,
        ...remote(forged),
      ]),
    );
  }, 60_000);

  afterAll(async () => {
    await Promise.all([...edges.map((e) => e.stop()), hub?.stop()]);
    rmSync(sdir, { recursive: true, force: true });
  });

  it("renders the CHORIA account as its key and the credentials file", () => {
    const conf = readFileSync(edges[0]?.configPath as string, "utf8");
    const choria = (
      JSON.parse(readFileSync(join(sdir, "nats-trust.json"), "utf8")) as { choriaAccountPublic: string }
    ).choriaAccountPublic;
    expect(conf).toContain(`account: "${choria}"`);
    expect(conf).toContain(`credentials: "${setup.leafCredentials}"`);
    expect(readFileSync(setup.leafCredentials, "utf8")).toMatch(
      /BEGIN NATS USER JWT[\s\S]*BEGIN USER NKEY SEED/,
    );
  });

  it("a client of the edge reaches a responder on the hub with the setup's leaf credentials", async () => {
    const onHub = await as(hub, "broker", "choria=broker.chorus.local");
    const onEdge = await as(edges[0] as BrokerSupervisor, "client", "choria=leaftester");
    try {
      const answer = await answerAcross(onHub, onEdge, `${setup.collective}.node.hub-node`, {
        responder: "hub",
        asker: "edge",
      });
      expect(answer).toBe("pong from hub to edge");
      const st = await brokerStatus(hub.monitorUrl, 0);
      // the good edge's link only: the forged one was refused
      expect(st.leafnodes).toHaveLength(1);
    } finally {
      await Promise.all([onHub.close(), onEdge.close()]);
    }
  });

  it("a link with credentials the hub's operator did not sign is refused", async () => {
    const onHub = await as(hub, "broker", "choria=broker.chorus.local");
    const onBad = await as(edges[1] as BrokerSupervisor, "broker", "choria=broker.chorus.local");
    try {
      onHub.subscribe(`${setup.collective}.node.hub-node-2`, {
        callback: (_e, m) => {
          m.respond("pong");
        },
      });
      await onHub.flush();
      await expect(
        onBad.request(`${setup.collective}.node.hub-node-2`, "x", { timeout: 1500 }),
      ).rejects.toThrow();
      const edgeSt = await brokerStatus(edges[1]?.monitorUrl as string, 0);
      expect(edgeSt.leafnodes).toHaveLength(0);
    } finally {
      await Promise.all([onHub.close(), onBad.close()]);
    }
  });
});
