import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BrokerSupervisor } from "../../src/broker/index.js";
import { connectNats, type NatsConnection } from "../../src/core/connector/index.js";
import { lineLogger } from "../../src/core/util/index.js";
import { freePort } from "../helpers/nats.js";
import { answerAcross, makeCerts, testBrokerSettings } from "./helpers.js";

// Two single-broker clusters joined by TLS gateways (plugin.choria.network.gateway_port,
// gateway_name, gateway_remote.<name>.urls on both): a client of one reaches a
// responder on the other.

const silent = lineLogger(() => undefined);
let dir: string;
let east: BrokerSupervisor;
let west: BrokerSupervisor;
let ca: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "chorus-gw-"));
  const certs = makeCerts(dir);
  ca = certs.ca;
  const tls = [
    `plugin.security.choria.certificate = ${certs.cert}`,
    `plugin.security.choria.key = ${certs.key}`,
    `plugin.security.choria.ca = ${certs.ca}`,
  ];
  // every port this test needs, picked at once and all different: a monitor port picked
  // for one broker could otherwise be the other broker's not yet bound gateway port
  const picked = new Set<number>();
  while (picked.size < 6) picked.add(await freePort());
  const [eastGw, westGw, eastMon, westMon, eastCl, westCl] = [...picked] as number[];
  const ports = { east: eastGw as number, west: westGw as number };
  const monitor = { east: eastMon as number, west: westMon as number };
  const clientPort = { east: eastCl as number, west: westCl as number };
  // both brokers carry the same list of gateways, their own among them, as nats-server allows
  const gateways = [
    "plugin.choria.network.gateway_remotes = east,west",
    `plugin.choria.network.gateway_remote.east.urls = tls://127.0.0.1:${ports.east}`,
    `plugin.choria.network.gateway_remote.west.urls = tls://127.0.0.1:${ports.west}`,
  ];
  const broker = async (name: "east" | "west") =>
    new BrokerSupervisor({
      settings: await testBrokerSettings(join(dir, name), [
        `identity = ${name}.test`,
        `plugin.choria.network.gateway_port = ${ports[name]}`,
        `plugin.choria.network.monitor_port = ${monitor[name]}`,
        `plugin.choria.network.client_port = ${clientPort[name]}`,
        `plugin.choria.network.gateway_name = ${name}`,
        ...gateways,
        ...tls,
      ]),
    });
  east = await broker("east");
  west = await broker("west");
  await east.start();
  await west.start();
}, 30_000);

afterAll(async () => {
  await Promise.all([east?.stop(), west?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

async function client(b: BrokerSupervisor): Promise<NatsConnection> {
  return connectNats({ servers: [b.clientUrl], name: "gateway test", caFile: ca, logger: silent });
}

describe("gateways", () => {
  it("a client in one cluster reaches a responder in the other", async () => {
    const onEast = await client(east);
    const onWest = await client(west);
    try {
      const answer = await answerAcross(onEast, onWest, "mcollective.node.east-node", {
        responder: "east",
        asker: "west",
      });
      expect(answer).toBe("pong from east to west");
      const gatewayz = (await (await fetch(`${west.monitorUrl}/gatewayz`)).json()) as {
        name: string;
        outbound_gateways?: Record<string, unknown>;
      };
      expect(gatewayz.name).toBe("west");
      expect(Object.keys(gatewayz.outbound_gateways ?? {})).toContain("east");
    } finally {
      await Promise.all([onEast.close(), onWest.close()]);
    }
  });
});
