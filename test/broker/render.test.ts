import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, jwtAuthenticator } from "@nats-io/transport-node";
import { afterEach, describe, expect, it } from "vitest";
import {
  BrokerError,
  BrokerSupervisor,
  loadNatsTrust,
  normaliseNatsTrust,
  renderNatsConfig,
  renderTrustFragment,
} from "../../src/broker/index.js";
import { freePort } from "../helpers/nats.js";
import { makeCerts, makeTrust, testBrokerSettings } from "./helpers.js";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "chorus-broker-test-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function runBroker(sup: BrokerSupervisor): Promise<BrokerSupervisor> {
  cleanups.push(() => sup.stop());
  await sup.start();
  return sup;
}

describe("renderNatsConfig", () => {
  it("renders listeners, limits and monitoring", async () => {
    const dir = tempDir();
    const s = await testBrokerSettings(dir);
    const conf = renderNatsConfig(s);
    expect(conf).toContain(`host: "127.0.0.1"`);
    expect(conf).toContain(`port: ${s.clientPort}`);
    expect(conf).toContain(`http: "127.0.0.1:${s.monitorPort}"`);
    expect(conf).toContain("max_connections: 50000");
    expect(conf).toContain(`write_deadline: "10000ms"`);
    expect(conf).not.toContain("cluster");
    expect(conf).not.toContain("jetstream");
    expect(conf).not.toContain("tls");
  });

  it("renders TLS, cluster routes, JetStream, and the trust fragment", async () => {
    const dir = tempDir();
    const s = await testBrokerSettings(dir, [
      "plugin.security.choria.certificate = /c/cert.pem",
      "plugin.security.choria.key = /c/key.pem",
      "plugin.security.choria.ca = /c/ca.pem",
      "plugin.choria.network.peer_port = 5222",
      "plugin.choria.network.peers = nats://b1:5222, b2:5222",
      "plugin.choria.network.stream.store = /var/lib/chorus/streams",
    ]);
    const conf = renderNatsConfig(s, 'operator: "x"\nresolver: MEMORY');
    expect(conf).toMatch(
      /^tls \{\n {2}cert_file: "\/c\/cert\.pem"\n {2}key_file: "\/c\/key\.pem"\n {2}ca_file: "\/c\/ca\.pem"\n {2}timeout: 2\n\}/m,
    );
    expect(conf).toMatch(
      /cluster \{[\s\S]*port: 5222[\s\S]*tls \{[\s\S]*verify: true[\s\S]*routes: \[\n {4}"nats-route:\/\/b1:5222"\n {4}"nats-route:\/\/b2:5222"\n {2}\]/,
    );
    expect(conf).toContain(`jetstream {\n  store_dir: "/var/lib/chorus/streams"\n}`);
    expect(conf).toContain("resolver: MEMORY");
  });

  it("drops a route to itself, names the cluster, and renders leafnodes and gateways", async () => {
    const dir = tempDir();
    const s = await testBrokerSettings(dir, [
      "identity = b1.example.net",
      "plugin.choria.network.peer_port = 5222",
      // Choria configs list the whole cell, this broker included
      "plugin.choria.network.peers = nats://127.0.0.1:5222, nats://b2:5222, nats://b3:5222",
      "plugin.choria.network.leafnode_port = 7422",
      "plugin.choria.network.leafnode_remotes = hub",
      "plugin.choria.network.leafnode_remote.hub.url = hub.example.net:7422",
      "plugin.choria.network.leafnode_remote.hub.account = CHORIA",
      "plugin.choria.network.gateway_port = 7222",
      "plugin.choria.network.gateway_name = EU",
      "plugin.choria.network.gateway_remotes = US",
      "plugin.choria.network.gateway_remote.US.urls = nats://us1:7222,nats://us2:7222",
    ]);
    expect(s.peers).toEqual(["nats://b2:5222", "nats://b3:5222"]);
    const conf = renderNatsConfig(s);
    expect(conf).toContain('server_name: "b1.example.net"');
    // nats-server wants the cluster and the gateway named alike
    expect(conf).toMatch(/cluster \{\n {2}name: "EU"\n[\s\S]*no_advertise: true/);
    expect(conf).not.toContain("nats-route://127.0.0.1:5222");
    expect(conf).toMatch(/leafnodes \{\n {2}host: "127\.0\.0\.1"\n {2}port: 7422/);
    expect(conf).toMatch(
      /remotes: \[\n {4}\{\n {6}urls: \["nats-leaf:\/\/hub\.example\.net:7422"\]\n {6}account: "CHORIA"/,
    );
    expect(conf).toMatch(
      /gateway \{\n {2}name: "EU"[\s\S]*\{ name: "US", urls: \["nats:\/\/us1:7222", "nats:\/\/us2:7222"\] \}/,
    );
  });

  it("names the key of a bad cluster, leafnode or gateway setting", async () => {
    const dir = tempDir();
    await expect(testBrokerSettings(dir, ["plugin.choria.network.leafnode_remotes = hub"])).rejects.toThrow(
      /plugin\.choria\.network\.leafnode_remote\.hub\.url is required/,
    );
    await expect(
      testBrokerSettings(dir, [
        "plugin.choria.network.leafnode_remotes = hub",
        "plugin.choria.network.leafnode_remote.hub.url = http://x:1",
      ]),
    ).rejects.toThrow(/leafnode_remote\.hub\.url: "http:\/\/x:1" must use/);
    await expect(testBrokerSettings(dir, ["plugin.choria.network.gateway_port = 7222"])).rejects.toThrow(
      /gateway_port needs plugin\.choria\.network\.gateway_name/,
    );
    await expect(testBrokerSettings(dir, ["plugin.choria.network.cluster_name = a b"])).rejects.toThrow(
      /plugin\.choria\.network\.cluster_name: "a b" must be/,
    );
  });

  it("needs a monitoring port", async () => {
    const s = await testBrokerSettings(tempDir());
    expect(() => renderNatsConfig({ ...s, monitorPort: 0 })).toThrow(BrokerError);
    expect(renderNatsConfig({ ...s, monitorPort: 0 }, undefined, { monitorPort: 9 })).toContain(
      "127.0.0.1:9",
    );
  });
});

describe("trust material", () => {
  it("normalises setup's JSON in several shapes and renders the resolver fragment", async () => {
    const { trustJson } = await makeTrust();
    const t = normaliseNatsTrust(trustJson);
    expect(t.systemAccount).toBe(trustJson.system_account);
    expect(Object.keys(t.accounts)).toHaveLength(2);
    // security/nats.ts NatsTrust shape, accounts given as a list
    const alt = normaliseNatsTrust({
      operatorJwt: trustJson.operator,
      systemAccountPublic: trustJson.system_account,
      operatorSeed: "ignored",
      accounts: Object.values(trustJson.accounts as Record<string, string>),
    });
    expect(alt).toEqual(t);
    const frag = renderTrustFragment(t);
    expect(frag).toContain("resolver: MEMORY");
    expect(frag).toContain(`system_account: "${t.systemAccount}"`);
    for (const pub of Object.keys(t.accounts)) expect(frag).toContain(`  ${pub}: "`);
  });

  it("refuses incomplete trust", async () => {
    const { trustJson } = await makeTrust();
    expect(() => normaliseNatsTrust({ ...trustJson, operator: undefined }, "t.json")).toThrow(
      /t\.json: operator JWT is missing/,
    );
    expect(() => normaliseNatsTrust({ ...trustJson, accounts: {} }, "t.json")).toThrow(/has no account JWT/);
    expect(() => normaliseNatsTrust({ ...trustJson, operator: "a.b" }, "t.json")).toThrow(/not a JWT/);
    expect(() => loadNatsTrust("/nonexistent/trust.json")).toThrow(/cannot read NATS trust file/);
  });
});

describe("real nats-server accepts the rendered config", () => {
  it("plain", async () => {
    const dir = tempDir();
    const sup = await runBroker(new BrokerSupervisor({ settings: await testBrokerSettings(dir) }));
    const nc = await connect({ servers: sup.clientUrl });
    await nc.flush();
    await nc.close();
  });

  it("with TLS, JetStream and a system user", async () => {
    const dir = tempDir();
    const certs = makeCerts(dir);
    const settings = await testBrokerSettings(dir, [
      `plugin.security.choria.certificate = ${certs.cert}`,
      `plugin.security.choria.key = ${certs.key}`,
      `plugin.security.choria.ca = ${certs.ca}`,
      `plugin.choria.network.stream.store = ${join(dir, "js")}`,
      "plugin.choria.network.system.user = system",
      "plugin.choria.network.system.password = s3cret",
      // open mode's anonymous account has no JetStream: managing streams would only wait out its 15 s
      "plugin.choria.network.stream.manage_streams = false",
    ]);
    const sup = await runBroker(new BrokerSupervisor({ settings }));
    expect(sup.clientUrl).toMatch(/^tls:\/\//);
    const varz = (await (await fetch(`${sup.monitorUrl}/varz`)).json()) as {
      tls_required?: boolean;
      jetstream?: unknown;
    };
    expect(varz.tls_required).toBe(true);
    expect(varz.jetstream).toBeDefined();
    const nc = await connect({ servers: `127.0.0.1:${settings.clientPort}`, tls: { caFile: certs.ca } });
    await nc.flush();
    await nc.close();
    const sys = await connect({
      servers: `127.0.0.1:${settings.clientPort}`,
      tls: { caFile: certs.ca },
      user: "system",
      pass: "s3cret",
    });
    const r = await sys.request("$SYS.REQ.SERVER.PING", "", { timeout: 2000 });
    expect(r.json<{ server: { name: string } }>().server.name).toBe("broker.test");
    await sys.close();
  });

  it("with a cluster route between two brokers", async () => {
    const dir = tempDir();
    const [p1, p2] = [await freePort(), await freePort()];
    const a = await runBroker(
      new BrokerSupervisor({
        settings: await testBrokerSettings(join(dir, "a"), [
          "identity = a",
          `plugin.choria.network.peer_port = ${p1}`,
          `plugin.choria.network.peers = 127.0.0.1:${p2}`,
        ]),
      }),
    );
    const b = await runBroker(
      new BrokerSupervisor({
        settings: await testBrokerSettings(join(dir, "b"), [
          "identity = b",
          `plugin.choria.network.peer_port = ${p2}`,
          `plugin.choria.network.peers = 127.0.0.1:${p1}`,
        ]),
      }),
    );
    const routes = async (s: BrokerSupervisor) =>
      ((await (await fetch(`${s.monitorUrl}/routez`)).json()) as { num_routes: number }).num_routes;
    const deadline = Date.now() + 10_000;
    while ((await routes(a)) < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(await routes(a)).toBeGreaterThanOrEqual(1);
    // a message published on one broker reaches a subscriber on the other
    const na = await connect({ servers: a.clientUrl });
    const nb = await connect({ servers: b.clientUrl });
    const sub = nb.subscribe("x.y", { max: 1 });
    await nb.flush();
    const got = (async () => {
      for await (const m of sub) return m.string();
      return "";
    })();
    // Interest propagates over the route asynchronously, so publish until it arrives.
    const pump = setInterval(() => na.publish("x.y", "hello"), 100);
    const value = await Promise.race([
      got,
      new Promise<string>((r) => setTimeout(() => r("timeout"), 5000)),
    ]).finally(() => clearInterval(pump));
    expect(value).toBe("hello");
    await na.close();
    await nb.close();
  });

  it("with decentralized JWT auth from a trust file", async () => {
    const dir = tempDir();
    const { trustJson, userJwt, userSeed } = await makeTrust();
    const trustFile = join(dir, "nats-trust.json");
    writeFileSync(trustFile, JSON.stringify(trustJson));
    const settings = await testBrokerSettings(dir, [`plugin.choria.network.nats_trust_file = ${trustFile}`]);
    const sup = await runBroker(new BrokerSupervisor({ settings }));
    await expect(connect({ servers: sup.clientUrl, reconnect: false })).rejects.toThrow(/Authorization/i);
    const nc = await connect({ servers: sup.clientUrl, authenticator: jwtAuthenticator(userJwt, userSeed) });
    const sub = nc.subscribe("hello", { max: 1 });
    nc.publish("hello", "world");
    for await (const m of sub) expect(m.string()).toBe("world");
    await nc.close();
  });
});
