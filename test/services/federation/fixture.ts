import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pino } from "pino";
import { BrokerSupervisor, brokerSettings } from "../../../src/broker/index.js";
import { loadConfig } from "../../../src/core/config/index.js";
import { loadSeedFile, orgIssuer, type NatsTrust } from "../../../src/core/security/index.js";
import { Emulator } from "../../../src/apps/emulator/index.js";
import { issueClientCredential, issueServerCredential } from "../../../src/apps/setup/credentials.js";
import { freePort } from "../../helpers/nats.js";
import { startSecureFleet, type SecureFleet } from "../../helpers/fleet.js";

const quiet = pino({ level: "silent" });

export interface Collective {
  name: string;
  url: string;
  broker: BrokerSupervisor;
  emulator: Emulator;
  nodes: string[];
}

/**
 * Three brokers sharing one org issuer and NATS operator: the federation network (the
 * dev setup's own broker, where clients connect) and two collectives, each on its own
 * broker with its own emulated nodes, not connected to each other. Federation brokers
 * are started by the tests, from `federationConfig(cluster)`.
 */
export interface FederatedNetworks {
  fleet: SecureFleet;
  dir: string;
  federationUrl: string;
  collectives: Record<string, Collective>;
  /** client.conf with plugin.choria.federation.collectives = the clusters */
  federatedClientConfig: string;
  /** a federation broker YAML for `cluster`, collective side at that cluster's broker */
  federationConfig(cluster: string, identity: string, extra?: string): string;
  /** a Choria config of an org_admin user on the federation network (to watch traffic) */
  watcherConfig: string;
  stop(): Promise<void>;
}

/** One more broker from the setup's broker.conf, on its own port. */
async function extraBroker(dir: string, name: string): Promise<{ url: string; broker: BrokerSupervisor }> {
  const port = await freePort();
  const text = readFileSync(join(dir, "broker.conf"), "utf8").replace(
    /plugin\.choria\.network\.client_port = \d+/,
    `plugin.choria.network.client_port = ${port}`,
  );
  const path = join(dir, `broker-${name}.conf`);
  writeFileSync(path, `${text}\nidentity = broker-${name}.chorus.local\n`);
  const broker = new BrokerSupervisor({ settings: brokerSettings(loadConfig(path)) });
  await broker.start();
  return { url: `tls://127.0.0.1:${port}`, broker };
}

export async function startFederatedNetworks(nodesPer: Record<string, number>): Promise<FederatedNetworks> {
  const fleet = await startSecureFleet({ servers: [], streams: false });
  const dir = fleet.setup.dir;
  const issuer = orgIssuer(loadSeedFile(fleet.setup.issuerSeedFile));
  const trust = JSON.parse(readFileSync(join(dir, "nats-trust.json"), "utf8")) as NatsTrust;
  const authority = { issuer, trust };
  const cred = (name: string) => ({
    seedFile: join(dir, "credentials", `${name}.seed`),
    tokenFile: join(dir, "credentials", `${name}.jwt`),
  });
  // Servers answer federated requests on choria.federation.<cluster>.collective; a
  // server token grants that for its own collectives only (go-choria's rule), so the
  // emulator's user gets the clusters' subjects too.
  await issueServerCredential(authority, cred("emulator"), {
    identity: "emulator.chorus.local",
    collectives: [fleet.setup.collective],
    validityS: 86_400,
    permissions: { service_host: true },
    extraNats: { sub: [`${fleet.setup.collective}.node.>`] },
  });
  // The federation broker's own user: reads its three subjects (requests, replies, stats), writes node and broadcast
  // subjects in collectives and reply inboxes on the federation network; nothing else.
  await issueClientCredential(authority, cred("federation"), {
    callerid: "choria=federation.chorus.local",
    validityS: 86_400,
    permissions: {},
    claims: {
      pub_subjects: ["*.node.>", "*.broadcast.agent.>", "*.broadcast.service.>", "*.reply.>"],
      sub_subjects: [
        "choria.federation.*.federation",
        "choria.federation.*.collective",
        "choria.federation.*.stats",
      ],
    },
  });
  const clientText = readFileSync(fleet.setup.clientConfig, "utf8");
  // Choria configs as the dev client's, with another credential
  const withCredential = (file: string, cred: string) => {
    const path = join(dir, file);
    const text = clientText.replaceAll("credentials/client.", `credentials/${cred}.`);
    writeFileSync(path, text);
    return path;
  };
  withCredential("federation.conf", "federation");
  const watcherConfig = withCredential("watcher.conf", "broker");
  const clusters = Object.keys(nodesPer);
  const federatedClientConfig = join(dir, "federated-client.conf");
  writeFileSync(
    federatedClientConfig,
    `${clientText}\nplugin.choria.federation.collectives = ${clusters.join(",")}\n` +
      `plugin.choria.federation_middleware_hosts = ${fleet.setup.brokerUrl}\n`,
  );
  const collectives: Record<string, Collective> = {};
  let first = 1;
  for (const name of clusters) {
    const { url, broker } = await extraBroker(dir, name);
    const n = nodesPer[name] as number;
    const nodes = Array.from(
      { length: n },
      (_, i) => `${name}-${String(first + i).padStart(5, "0")}.example.net`,
    );
    const base = first;
    const emulator = Emulator.fromConfigFile(fleet.setup.emulatorConfig, {
      nodes: n,
      servers: [url],
      workers: 0,
      identity: (i) => `${name}-${String(i + base - 1).padStart(5, "0")}.example.net`,
      logger: quiet,
    });
    await emulator.start();
    collectives[name] = { name, url, broker, emulator, nodes };
    first += n;
  }
  return {
    fleet,
    dir,
    federationUrl: fleet.setup.brokerUrl,
    collectives,
    federatedClientConfig,
    watcherConfig,
    federationConfig(cluster, identity, extra = "") {
      const path = join(dir, `federation-${identity}.yaml`);
      writeFileSync(
        path,
        [
          `cluster: ${cluster}`,
          `identity: ${identity}`,
          "choria_config: federation.conf",
          `federation: { servers: "${fleet.setup.brokerUrl}" }`,
          `collective: { servers: "${collectives[cluster]?.url ?? ""}" }`,
          "loglevel: warn",
          extra,
          "",
        ].join("\n"),
      );
      return path;
    },
    async stop() {
      for (const c of Object.values(collectives)) {
        await c.emulator.stop();
        await c.broker.stop();
      }
      await fleet.stop();
    },
  };
}
