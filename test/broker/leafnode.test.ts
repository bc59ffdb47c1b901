import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BrokerSupervisor, brokerStatus } from "../../src/broker/index.js";
import { connectNats, type NatsConnection } from "../../src/core/connector/index.js";
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
