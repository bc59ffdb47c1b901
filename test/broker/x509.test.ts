// x509 (protocol v1) clients on real brokers: a pure v1 broker (file provider, no NATS
// trust) and a JWT broker with an x509 client port (the supervised "x509 edge"), each
// checked with real nats-server processes and real mutual-TLS connections.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  BrokerError,
  BrokerMetrics,
  BrokerSupervisor,
  brokerSettings,
  x509EdgePermissions,
} from "../../src/broker/index.js";
import {
  createDevSetup,
  createX509Authority,
  issueX509Certificate,
  makeX509Fleet,
  type DevSetup,
  type X509Fleet,
} from "../../src/apps/setup/index.js";
import { ConfigError, loadConfig, parseConfig } from "../../src/core/config/index.js";
import { connectNats, type NatsConnection } from "../../src/core/connector/index.js";
import { replyPrefix } from "../../src/core/protocol/index.js";
import { issueLeafCredentials, loadSeedFile, orgIssuer, issueCert } from "../../src/core/security/index.js";
import { lineLogger } from "../../src/core/util/index.js";
import { freePort } from "../helpers/nats.js";
import { answerAcross, processAlive, waitFor } from "./helpers.js";

const silent = lineLogger(() => undefined);
const dirs: string[] = [];
function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Distinct free loopback ports (none is bound until its nats-server starts). */
async function ports(n: number): Promise<number[]> {
  const picked = new Set<number>();
  while (picked.size < n) picked.add(await freePort());
  return [...picked];
}

interface CertFiles {
  certFile: string;
  keyFile: string;
}

/** A client certificate from the CA in `caDir` (its intermediate signs) that expired yesterday. */
async function expiredClientCert(caDir: string, cn: string, dir: string): Promise<CertFiles> {
  const day = 86_400_000;
  const intermediate = {
    certPem: readFileSync(join(caDir, "intermediate.pem"), "utf8"),
    keyPem: readFileSync(join(caDir, "intermediate.key"), "utf8"),
  };
  const p = await issueCert(intermediate, cn, {}, 1, "client", {
    rsa: true,
    notBefore: new Date(Date.now() - 10 * day),
    notAfter: new Date(Date.now() - day),
  });
  const files = { certFile: join(dir, `${cn}.pem`), keyFile: join(dir, `${cn}.key`) };
  writeFileSync(files.certFile, p.certPem);
  writeFileSync(files.keyFile, p.keyPem, { mode: 0o600 });
  return files;
}

/** A client certificate from a CA nobody here trusts. */
async function foreignClientCert(dir: string): Promise<CertFiles> {
  const other = await createX509Authority(join(dir, "other-ca"), { cn: "Somebody else's CA" });
  return issueX509Certificate(other, {
    certname: "mallory.mcollective",
    usage: "client",
    certFile: join(dir, "mallory.pem"),
    keyFile: join(dir, "mallory.key"),
  });
}

/** A connection with `cert` (or none); no reconnects, so a refusal surfaces at once. */
function tlsClient(
  url: string,
  caFile: string,
  cert?: CertFiles,
  inboxPrefix?: string,
): Promise<NatsConnection> {
  return connectNats({
    servers: [url],
    name: "x509 test",
    caFile,
    ...(cert && { certFile: cert.certFile, keyFile: cert.keyFile }),
    ...(inboxPrefix !== undefined && { inboxPrefix }),
    reconnect: false,
    timeoutMs: 5000,
    logger: silent,
  });
}

/** Connecting with `cert` fails, and nothing is left open if it (wrongly) succeeds. */
async function refused(url: string, caFile: string, cert?: CertFiles): Promise<void> {
  let nc: NatsConnection | undefined;
  try {
    nc = await tlsClient(url, caFile, cert);
    // TLS 1.3 reports a refused client certificate only after the handshake: a connection
    // that got that far must not be able to do anything
    await nc.flush();
  } catch {
    return;
  } finally {
    await nc?.close().catch(() => undefined);
  }
  throw new Error(`${url} accepted ${cert ? cert.certFile : "a client without a certificate"}`);
}

/** nats-server itself turned away the three (no, foreign, expired certificate) in the TLS handshake. */
async function refusedByNatsServer(logs: string[], from: number): Promise<void> {
  const reasons = [
    "client didn't provide a certificate",
    "certificate signed by unknown authority",
    "certificate has expired",
  ];
  const seen = () => logs.slice(from).filter((l) => l.includes("TLS handshake error"));
  await waitFor(
    () => reasons.every((r) => seen().some((l) => l.includes(r))),
    5000,
    "three refused handshakes",
  );
}

/**
 * A broker config beside `base` (a setup's broker.conf, whose relative paths resolve from its
 * directory) with `extra` lines, which may set the client port again.
 */
function brokerConf(name: string, base: string, extra: string[]): string {
  const text = readFileSync(base, "utf8").replace(/^plugin\.choria\.network\.client_port = .*$/m, "");
  const path = join(dirname(base), `${name}.conf`);
  writeFileSync(path, [text, ...extra, ""].join("\n"));
  return path;
}

describe("a protocol v1 broker: plugin.security.provider = file and no NATS trust", () => {
  let dir: string;
  let fleet: X509Fleet;
  let broker: BrokerSupervisor;
  let alice: CertFiles;
  let expired: CertFiles;
  let foreign: CertFiles;
  const logs: string[] = [];
  const streams: string[] = [];
  const servicesErrors: string[] = [];

  beforeAll(async () => {
    dir = tempDir("chorus-x509-v1-");
    const [client, monitor] = (await ports(2)) as [number, number];
    // with Streams: the broker's own connection also needs its certificate
    fleet = await makeX509Fleet({
      dir: join(dir, "fleet"),
      brokerPort: client,
      users: ["alice"],
      nodes: ["node1.mcollective"],
    });
    alice = fleet.clients.alice as CertFiles;
    [expired, foreign] = await Promise.all([
      expiredClientCert(fleet.caDir, "late.mcollective", dir),
      foreignClientCert(dir),
    ]);
    const conf = brokerConf("broker", fleet.brokerConfig, [
      `plugin.choria.network.client_port = ${client}`,
      `plugin.choria.network.monitor_port = ${monitor}`,
      `plugin.choria.network.runtime_dir = ${join(dir, "run")}`,
    ]);
    broker = new BrokerSupervisor({
      settings: brokerSettings(loadConfig(conf)),
      logger: (level, line) => logs.push(`${level} ${line}`),
    });
    broker.on("streams", (res) => streams.push(...res.map((r) => r.name)));
    broker.on("servicesError", (err) => servicesErrors.push(err.message));
    await broker.start();
  }, 60_000);

  afterAll(async () => {
    await broker?.stop();
  });

  it("renders a client port that demands a certificate from the file provider's CA", () => {
    expect(broker.settings.securityProvider).toBe("file");
    const conf = readFileSync(broker.configPath, "utf8");
    expect(conf).toMatch(
      new RegExp(
        `^tls \\{\\n {2}cert_file: "[^"]+broker\\.pem"\\n {2}key_file: "[^"]+"\\n {2}ca_file: "${fleet.caFile}"\\n {2}verify: true\\n`,
        "m",
      ),
    );
    expect(conf).not.toContain("operator:");
  });

  it("the broker's own connection gets in with the broker's certificate and sets up Streams", () => {
    expect(servicesErrors).toEqual([]);
    expect(streams).toContain("CHORIA_EVENTS");
  });

  it("clients with a certificate from the CA connect and exchange messages", async () => {
    const node = await tlsClient(broker.clientUrl, fleet.caFile, fleet.servers["node1.mcollective"]);
    const client = await tlsClient(broker.clientUrl, fleet.caFile, alice);
    try {
      const answer = await answerAcross(node, client, "mcollective.node.node1.mcollective", {
        responder: "node1",
        asker: "alice",
      });
      expect(answer).toBe("pong from node1 to alice");
    } finally {
      await Promise.all([node.close(), client.close()]);
    }
  });

  it("refuses clients without a certificate, with another CA's, or with an expired one", async () => {
    const from = logs.length;
    await refused(broker.clientUrl, fleet.caFile);
    await refused(broker.clientUrl, fleet.caFile, foreign);
    await refused(broker.clientUrl, fleet.caFile, expired);
    await refusedByNatsServer(logs, from);
    // refusing them did not hurt the broker
    expect(broker.up).toBe(true);
    const nc = await tlsClient(broker.clientUrl, fleet.caFile, alice);
    await nc.close();
  });
});

describe("a JWT broker with an x509 client port (plugin.chorus.network.x509.port)", () => {
  let dir: string;
  let setup: DevSetup;
  let fleet: X509Fleet;
  let broker: BrokerSupervisor;
  let metrics: BrokerMetrics;
  let x509Port: number;
  /** what an x509 client checks the broker's certificate with: its CA and the broker's */
  let clientCa: string;
  let edgeCreds: string;
  let alice: CertFiles;
  let expired: CertFiles;
  let foreign: CertFiles;
  const logs: string[] = [];
  const v2Caller = "choria=v2tester";
  const aliceCaller = "choria=alice.mcollective";

  beforeAll(async () => {
    dir = tempDir("chorus-x509-edge-");
    const [client, monitor, x509, metricsPort] = (await ports(4)) as [number, number, number, number];
    x509Port = x509;
    setup = await createDevSetup({
      dir: join(dir, "v2"),
      brokerPorts: [client],
      streams: false,
      callerId: v2Caller,
      serverIdentities: ["v2node.chorus.local"],
    });
    // the x509 clients' CA is an enterprise CA of their own, not the broker's
    fleet = await makeX509Fleet({
      dir: join(dir, "v1"),
      streams: false,
      users: ["alice"],
      nodes: ["x509node.mcollective"],
    });
    alice = fleet.clients.alice as CertFiles;
    [expired, foreign] = await Promise.all([
      expiredClientCert(fleet.caDir, "late.mcollective", dir),
      foreignClientCert(dir),
    ]);
    clientCa = join(dir, "client-ca.pem");
    writeFileSync(clientCa, readFileSync(fleet.caFile, "utf8") + readFileSync(setup.caFile, "utf8"));
    // the bridge's CHORIA user, with the permissions the docs recommend
    const trust = JSON.parse(readFileSync(join(setup.dir, "nats-trust.json"), "utf8")) as {
      choriaAccountPublic: string;
    };
    edgeCreds = join(dir, "x509-edge.creds");
    writeFileSync(
      edgeCreds,
      await issueLeafCredentials(orgIssuer(loadSeedFile(setup.issuerSeedFile)), trust, {
        name: "x509-edge",
        perms: x509EdgePermissions([setup.collective]),
      }),
      { mode: 0o600 },
    );
    const conf = brokerConf("broker", setup.brokerConfig, [
      `plugin.choria.network.client_port = ${client}`,
      `plugin.choria.network.monitor_port = ${monitor}`,
      `plugin.choria.network.runtime_dir = ${join(dir, "run")}`,
      `plugin.chorus.network.x509.port = ${x509Port}`,
      `plugin.chorus.network.x509.ca = ${fleet.caFile}`,
      `plugin.chorus.network.x509.credentials = ${edgeCreds}`,
    ]);
    broker = new BrokerSupervisor({
      settings: brokerSettings(loadConfig(conf)),
      logger: (level, line) => logs.push(`${level} ${line}`),
      backoff: { initialMs: 100 },
    });
    await broker.start();
    metrics = new BrokerMetrics({ port: metricsPort, identity: "broker.test", source: broker });
    await metrics.start();
  }, 90_000);

  afterAll(async () => {
    await Promise.all([broker?.stop(), metrics?.stop()]);
  });

  /** a v2 (JWT) connection to the main port as one of the dev setup's credentials */
  function v2(cred: string, callerId: string): Promise<NatsConnection> {
    return connectNats({
      servers: [broker.clientUrl],
      name: `x509 test ${cred}`,
      caFile: setup.caFile,
      seedHex: loadSeedFile(join(setup.dir, "credentials", `${cred}.seed`)).seedHex,
      natsJwt: readFileSync(join(setup.dir, "credentials", `${cred}.jwt.nats`), "utf8").trim(),
      inboxPrefix: replyPrefix(setup.collective, callerId),
      logger: silent,
    });
  }

  /** an x509 connection to the x509 port; replies come to the caller's reply subjects as in Choria */
  function x509Client(cert: CertFiles, callerId: string): Promise<NatsConnection> {
    return tlsClient(
      (broker.x509 as BrokerSupervisor).clientUrl,
      clientCa,
      cert,
      replyPrefix(setup.collective, callerId),
    );
  }

  it("renders the edge: client certificates from x509.ca, a leaf link with the credentials", () => {
    const edge = broker.x509 as BrokerSupervisor;
    expect(edge.settings.clientPort).toBe(x509Port);
    const main = readFileSync(broker.configPath, "utf8");
    const leaf =
      /leafnodes \{\n {2}host: "127\.0\.0\.1"\n {2}port: (\d+)\n {2}no_advertise: true\n {2}tls \{/.exec(
        main,
      );
    expect(leaf).not.toBeNull();
    // the main port still authenticates by JWT only
    expect(main).toContain("operator:");
    expect(main.slice(0, main.indexOf("leafnodes"))).not.toContain("verify: true");
    const conf = readFileSync(edge.configPath, "utf8");
    expect(conf).toContain(`port: ${x509Port}`);
    expect(conf).toMatch(new RegExp(`^tls \\{[^}]*ca_file: "${fleet.caFile}"\\n {2}verify: true`, "m"));
    expect(conf).toContain(`urls: ["tls://127.0.0.1:${leaf?.[1]}"]`);
    expect(conf).toContain(`credentials: "${edgeCreds}"`);
    // the link checks the broker with the broker's CA
    expect(conf).toMatch(new RegExp(`credentials: [^\\n]+\\n {6}tls \\{[^}]*ca_file: "${setup.caFile}"`));
    expect(conf).not.toContain("operator:");
  });

  /** the v2 client's request to an x509 node crosses into the edge; its answer ("" when none) */
  const v2AsksX509 = (client: NatsConnection, x509: NatsConnection): Promise<string> =>
    answerAcross(x509, client, `${setup.collective}.node.x509node.mcollective`, {
      responder: "x509",
      asker: "v2",
    });

  it("a JWT client and an x509 client exchange requests and replies both ways", async () => {
    const client = await v2("client", v2Caller);
    const server = await v2("server-v2node.chorus.local", "choria=v2node.chorus.local");
    const x509 = await x509Client(alice, aliceCaller);
    try {
      expect(await v2AsksX509(client, x509)).toBe("pong from x509 to v2");
      // x509 client -> v2 node
      expect(
        await answerAcross(server, x509, `${setup.collective}.node.v2node.chorus.local`, {
          responder: "v2",
          asker: "x509",
        }),
      ).toBe("pong from v2 to x509");
    } finally {
      await Promise.all([client.close(), server.close(), x509.close()]);
    }
  });

  it("x509 clients act with the bridge user's permissions: subjects outside them do not cross", async () => {
    const admin = await v2("broker", "choria=broker.chorus.local");
    const x509 = await x509Client(alice, aliceCaller);
    try {
      const seen: string[] = [];
      const record = (_e: Error | null, m: { subject: string; string(): string }): void => {
        seen.push(`${m.subject} ${m.string()}`);
      };
      admin.subscribe("chorus.private.>", { callback: record });
      admin.subscribe(`${setup.collective}.broadcast.agent.>`, { callback: record });
      await admin.flush();
      // allowed subjects reach the admin once the link carries the interest; then the denied one
      await waitFor(
        async () => {
          x509.publish(`${setup.collective}.broadcast.agent.rpcutil`, "allowed");
          await x509.flush();
          await new Promise((r) => setTimeout(r, 100));
          return seen.length > 0;
        },
        15_000,
        "a broadcast from the x509 client",
      );
      x509.publish("chorus.private.secret", "denied");
      x509.publish(`${setup.collective}.broadcast.agent.rpcutil`, "after");
      await x509.flush();
      await waitFor(
        () => seen.includes(`${setup.collective}.broadcast.agent.rpcutil after`),
        5000,
        "the last broadcast",
      );
      expect(seen.filter((s) => s.startsWith("chorus.private"))).toEqual([]);
    } finally {
      await Promise.all([admin.close(), x509.close()]);
    }
  });

  it("refuses clients without a certificate, with another CA's, or with an expired one", async () => {
    const url = (broker.x509 as BrokerSupervisor).clientUrl;
    const from = logs.length;
    await refused(url, clientCa);
    await refused(url, clientCa, foreign);
    await refused(url, clientCa, expired);
    await refusedByNatsServer(logs, from);
    expect(
      logs
        .slice(from)
        .filter((l) => l.includes("TLS handshake error"))
        .every((l) => l.includes("x509 edge: ")),
    ).toBe(true);
    // a v2 credential is no way in either: it is a JWT, not a certificate
    await expect(
      connectNats({
        servers: [url],
        name: "v2 on the x509 port",
        caFile: setup.caFile,
        seedHex: loadSeedFile(join(setup.dir, "credentials", "client.seed")).seedHex,
        natsJwt: readFileSync(join(setup.dir, "credentials", "client.jwt.nats"), "utf8").trim(),
        reconnect: false,
        timeoutMs: 5000,
        logger: silent,
      }).then((nc) => nc.flush().finally(() => nc.close())),
    ).rejects.toThrow();
    expect(broker.x509?.up).toBe(true);
  });

  it("restarts the edge's nats-server after kill -9, reports it in metrics, and x509 clients work again", async () => {
    const scrape = async () => (await fetch(`http://127.0.0.1:${metrics.port}/metrics`)).text();
    expect(await scrape()).toMatch(/^chorus_broker_x509_up\{identity="broker\.test"\} 1$/m);
    const edge = broker.x509 as BrokerSupervisor;
    const pid = edge.pid as number;
    const mainPid = broker.pid;
    process.kill(pid, "SIGKILL");
    await waitFor(() => edge.restarts === 1 && edge.up, 15_000, "the edge restart");
    expect(edge.pid).not.toBe(pid);
    expect(processAlive(pid)).toBe(false);
    // the broker itself was not touched
    expect(broker.pid).toBe(mainPid);
    expect(broker.restarts).toBe(0);
    expect(
      logs.some((l) => l.startsWith("error ") && l.includes("x509 edge: nats-server exited unexpectedly")),
    ).toBe(true);
    const body = await scrape();
    expect(body).toMatch(/^chorus_broker_x509_up\{identity="broker\.test"\} 1$/m);
    expect(body).toMatch(/^chorus_broker_x509_restarts_total\{identity="broker\.test"\} 1$/m);

    const client = await v2("client", v2Caller);
    const x509 = await x509Client(alice, aliceCaller);
    try {
      expect(await v2AsksX509(client, x509)).toBe("pong from x509 to v2");
    } finally {
      await Promise.all([client.close(), x509.close()]);
    }
  });

  it("stop() stops the edge too", async () => {
    const edge = broker.x509 as BrokerSupervisor;
    const pid = edge.pid as number;
    await broker.stop();
    expect(processAlive(pid)).toBe(false);
    expect(broker.x509).toBeUndefined();
    const body = await (await fetch(`http://127.0.0.1:${metrics.port}/metrics`)).text();
    expect(body).not.toMatch(/^chorus_broker_x509_up\{/m);
  });
});

describe("x509 settings and files: bad input gets an error naming the key", () => {
  let dir: string;
  let setup: DevSetup;
  let fleet: X509Fleet;
  let creds: string;

  beforeAll(async () => {
    dir = tempDir("chorus-x509-bad-");
    setup = await createDevSetup({ dir: join(dir, "v2"), streams: false });
    fleet = await makeX509Fleet({ dir: join(dir, "v1"), streams: false, users: ["alice"] });
    creds = setup.leafCredentials;
  }, 60_000);

  /** a JWT broker's config with an x509 port and `extra` lines, on free ports */
  async function jwtBroker(extra: string[], x509Port?: number): Promise<BrokerSupervisor> {
    const [client, monitor, x509] = (await ports(3)) as [number, number, number];
    const conf = brokerConf(`broker-${client}`, setup.brokerConfig, [
      `plugin.choria.network.client_port = ${client}`,
      `plugin.choria.network.monitor_port = ${monitor}`,
      `plugin.chorus.network.x509.port = ${x509Port ?? x509}`,
      ...extra,
    ]);
    return new BrokerSupervisor({ settings: brokerSettings(loadConfig(conf)), readyTimeoutMs: 5000 });
  }

  async function startError(b: BrokerSupervisor): Promise<BrokerError> {
    const err = await b.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    await b.stop();
    expect(err).toBeInstanceOf(BrokerError);
    expect(b.pid).toBeUndefined();
    return err as BrokerError;
  }

  const settingsError = (lines: string[]): ConfigError => {
    try {
      brokerSettings(
        parseConfig(["plugin.choria.broker_network = true", ...lines].join("\n"), join(dir, "x.conf")),
      );
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return err as ConfigError;
    }
    throw new Error("no error");
  };

  it("refuses clashing ports and an x509 port without TLS or a CA, naming the key", () => {
    expect(
      settingsError([
        "plugin.choria.network.client_port = 4222",
        "plugin.chorus.network.x509.port = 4222",
        `plugin.security.choria.certificate = ${fleet.broker.certFile}`,
        `plugin.security.choria.key = ${fleet.broker.keyFile}`,
        `plugin.security.choria.ca = ${fleet.caFile}`,
      ]).message,
    ).toMatch(/plugin\.chorus\.network\.x509\.port 4222 is also plugin\.choria\.network\.client_port/);
    expect(
      settingsError([
        "plugin.choria.network.monitor_port = 8300",
        "plugin.chorus.network.x509.port = 8300",
        `plugin.security.choria.certificate = ${fleet.broker.certFile}`,
        `plugin.security.choria.key = ${fleet.broker.keyFile}`,
        `plugin.security.choria.ca = ${fleet.caFile}`,
      ]).message,
    ).toMatch(/x509\.port 8300 is also plugin\.choria\.network\.monitor_port/);
    expect(settingsError(["plugin.chorus.network.x509.port = 4333"]).message).toMatch(
      /plugin\.chorus\.network\.x509\.port needs the broker's TLS certificate and key \(plugin\.security\.choria\.certificate/,
    );
    expect(
      settingsError([
        "plugin.chorus.network.x509.port = 4333",
        `plugin.security.choria.certificate = ${fleet.broker.certFile}`,
        `plugin.security.choria.key = ${fleet.broker.keyFile}`,
      ]).message,
    ).toMatch(
      /:2: plugin\.chorus\.network\.x509\.port needs plugin\.chorus\.network\.x509\.ca or the broker's CA/,
    );
    expect(settingsError(["plugin.security.provider = file"]).message).toMatch(
      /plugin\.security\.file\.certificate/,
    );
    expect(settingsError(["plugin.security.provider = pki"]).message).toMatch(
      /:2: plugin\.security\.provider "pki" is not supported by the broker/,
    );
  });

  it("a missing or unreadable CA, certificate or credentials file is named with its key", async () => {
    const missing = join(dir, "absent-ca.pem");
    let err = await startError(
      await jwtBroker([
        `plugin.chorus.network.x509.ca = ${missing}`,
        `plugin.chorus.network.x509.credentials = ${creds}`,
      ]),
    );
    expect(err.message).toBe(`plugin.chorus.network.x509.ca = ${missing}: cannot read it: no such file`);

    const garbage = join(dir, "garbage.pem");
    writeFileSync(garbage, "not a certificate\n");
    err = await startError(
      await jwtBroker([
        `plugin.chorus.network.x509.ca = ${garbage}`,
        `plugin.chorus.network.x509.credentials = ${creds}`,
      ]),
    );
    expect(err.message).toMatch(
      new RegExp(`^plugin\\.chorus\\.network\\.x509\\.ca = ${garbage}: .*no PEM certificate`),
    );

    const unreadable = join(dir, "unreadable.creds");
    writeFileSync(unreadable, readFileSync(creds), { mode: 0o000 });
    if (process.getuid?.() !== 0) {
      err = await startError(await jwtBroker([`plugin.chorus.network.x509.credentials = ${unreadable}`]));
      expect(err.message).toBe(
        `plugin.chorus.network.x509.credentials = ${unreadable}: cannot read it: permission denied`,
      );
    }
    err = await startError(await jwtBroker([`plugin.chorus.network.x509.credentials = ${garbage}`]));
    expect(err.message).toMatch(
      /^plugin\.chorus\.network\.x509\.credentials = .*: not a NATS credentials file/,
    );
    err = await startError(await jwtBroker([]));
    expect(err.message).toMatch(
      /plugin\.chorus\.network\.x509\.port needs plugin\.chorus\.network\.x509\.credentials/,
    );

    // a pure v1 broker whose certificate file is missing
    const [client, monitor] = (await ports(2)) as [number, number];
    const conf = brokerConf("v1-missing", fleet.brokerConfig, [
      `plugin.choria.network.client_port = ${client}`,
      `plugin.choria.network.monitor_port = ${monitor}`,
      `plugin.security.file.certificate = ${join(dir, "absent-broker.pem")}`,
    ]);
    err = await startError(new BrokerSupervisor({ settings: brokerSettings(loadConfig(conf)) }));
    expect(err.message).toBe(
      `plugin.security.file.certificate = ${join(dir, "absent-broker.pem")}: cannot read it: no such file`,
    );
    // a key that is not the certificate's
    const conf2 = brokerConf("v1-wrong-key", fleet.brokerConfig, [
      `plugin.choria.network.client_port = ${client}`,
      `plugin.choria.network.monitor_port = ${monitor}`,
      `plugin.security.file.key = ${fleet.clients.alice?.keyFile}`,
    ]);
    err = await startError(new BrokerSupervisor({ settings: brokerSettings(loadConfig(conf2)) }));
    expect(err.message).toMatch(
      /^plugin\.security\.file\.key = .* is not the key of plugin\.security\.file\.certificate/,
    );
  });

  it("an x509 port needs NATS trust", async () => {
    const [client, monitor, x509] = (await ports(3)) as [number, number, number];
    const conf = brokerConf("v1-edge", fleet.brokerConfig, [
      `plugin.choria.network.client_port = ${client}`,
      `plugin.choria.network.monitor_port = ${monitor}`,
      `plugin.chorus.network.x509.port = ${x509}`,
      `plugin.chorus.network.x509.credentials = ${creds}`,
    ]);
    const err = await startError(new BrokerSupervisor({ settings: brokerSettings(loadConfig(conf)) }));
    expect(err.message).toMatch(/^plugin\.chorus\.network\.x509\.port needs NATS trust/);
  });

  it("an x509 port that another process holds is reported, and the broker is not left running", async () => {
    const holder: Server = createServer();
    await new Promise<void>((r) => holder.listen(0, "127.0.0.1", r));
    const held = (holder.address() as { port: number }).port;
    try {
      const b = await jwtBroker([`plugin.chorus.network.x509.credentials = ${creds}`], held);
      const err = await startError(b);
      expect(err.message).toMatch(
        new RegExp(
          `^x509 client port \\(plugin\\.chorus\\.network\\.x509\\.port = ${held}\\): nats-server exited during startup[\\s\\S]*address already in use`,
        ),
      );
      // the main broker's port is free again: nothing of it is left running
      await new Promise<void>((resolve, reject) => {
        const probe = createServer();
        probe.once("error", reject);
        probe.listen(b.settings.clientPort, "127.0.0.1", () => probe.close(() => resolve()));
      });
    } finally {
      holder.close();
    }
  });
});
