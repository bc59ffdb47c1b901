import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { decode, type Account, type User } from "@nats-io/jwt";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { Command } from "commander";
import { parse } from "yaml";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { register } from "../../../src/apps/cli/setup.js";
import { createDevSetup } from "../../../src/apps/setup/index.js";
import { BrokerSupervisor, brokerSettings } from "../../../src/broker/index.js";
import { clientSettings, loadConfig, provisioningSettings } from "../../../src/core/config/index.js";
import { closeNats, connectNats, type NatsConnection } from "../../../src/core/connector/index.js";
import { replyPrefix } from "../../../src/core/protocol/index.js";
import {
  createServerToken,
  generateKeyPair,
  issueNatsUserJwt,
  loadSeedFile,
  nkeyPublicFromEd25519Public,
  nkeySeedToEd25519Seed,
  verifyProvisioningToken,
  verifyToken,
  type ClientClaims,
  type Issuer,
  type NatsTrust,
  type ServerClaims,
} from "../../../src/core/security/index.js";
import {
  ELECTION_KEY,
  loadChainIssuer,
  parseWorkItem,
  PROVISIONING_STREAM,
  PROVISIONING_SUBJECTS,
  WorkQueue,
} from "../../../src/services/provisioner/index.js";
import { startSecureFleet, type SecureFleet } from "../../helpers/fleet.js";
import { freePort } from "../../helpers/nats.js";

const quiet = { info: () => {}, warn: () => {}, error: () => {} };
const mode = (p: string) => statSync(p).mode & 0o777;
const text = (p: string) => readFileSync(p, "utf8").trim();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let fleet: SecureFleet;
const conns: NatsConnection[] = [];

beforeAll(async () => {
  fleet = await startSecureFleet({ provisioning: true });
}, 90_000);

afterAll(async () => {
  await Promise.all(conns.map((c) => closeNats(c, 500)));
  await fleet?.stop();
});

const p = () => fleet.setup.provisioning!;
const trustOf = () => JSON.parse(readFileSync(join(fleet.setup.dir, "nats-trust.json"), "utf8")) as NatsTrust;

async function connect(jwt: string, seedHex: string, name: string, inboxPrefix?: string) {
  const nc = await connectNats({
    servers: [fleet.setup.brokerUrl],
    name,
    caFile: fleet.setup.caFile,
    natsJwt: jwt,
    seedHex,
    reconnect: false,
    logger: quiet,
    ...(inboxPrefix && { inboxPrefix }),
  });
  conns.push(nc);
  return nc;
}

/** The chain issuer as the provisioner loads it from jwt_signing_key and jwt_signing_token. */
const chainIssuer = (): Issuer => loadChainIssuer(p().chainIssuerSeedFile, p().chainIssuerTokenFile);

describe("setup dev --provisioning: files", () => {
  it("writes every secret with mode 0600", () => {
    const f = p();
    for (const file of [
      f.tokenFile,
      f.serviceConfig,
      f.credential.seedFile,
      f.credential.tokenFile,
      f.credential.natsJwtFile,
      f.provisioningNatsJwtFile,
      f.chainIssuerSeedFile,
      f.chainIssuerTokenFile,
      join(fleet.setup.dir, "nats-trust.json"),
    ]) {
      expect([file, mode(file)]).toEqual([file, 0o600]);
    }
  });

  it("provisioning.jwt is an org-signed token with cht, the broker and the node's NATS user", () => {
    const f = p();
    const c = verifyProvisioningToken(text(f.tokenFile), [fleet.setup.issuerPublic]);
    expect(c.cht).toMatch(/^[0-9a-f]{64}$/);
    expect(c.cht).toBe(f.token);
    expect(c.chu).toBe(fleet.setup.brokerUrl);
    expect(c.chs).toBe(true);
    expect(c.v2).toBe(true);
    expect(c.iss).toBe(`I-${fleet.setup.issuerPublic}`);
    const now = Math.floor(Date.now() / 1000);
    expect(c.exp! - now).toBeGreaterThan(29 * 86_400);
    const user = decode<User>(c.chusr!);
    expect(user.iss).toBe(trustOf().provisioningAccountPublic);
    expect(user.iss).toBe(f.accountPublic);
    expect(user.exp).toBeLessThanOrEqual(c.exp! + 5);
    expect(nkeyPublicFromEd25519Public(loadSeedFile(f.credential.seedFile).publicHex, "user")).toBe(
      decode<User>(text(f.provisioningNatsJwtFile)).sub,
    );
  });

  it("the chain issuer is vouched for by the org and is a CHORIA signing key", () => {
    const f = p();
    const claims = verifyToken(text(f.chainIssuerTokenFile), [fleet.setup.issuerPublic]) as ClientClaims;
    expect(claims.callerid).toBe("provisioner=dev");
    expect(claims.public_key).toBe(f.chainIssuerPublic);
    const trust = trustOf();
    const acct = decode<Account>(trust.accounts[trust.choriaAccountPublic] as string);
    expect(acct.nats.signing_keys).toEqual([
      nkeyPublicFromEd25519Public(fleet.setup.issuerPublic, "account"),
      nkeyPublicFromEd25519Public(f.chainIssuerPublic, "account"),
    ]);
  });

  it("the provisioner's client token has its rights and its work-queue subjects, no fleet management", () => {
    const f = p();
    const claims = verifyToken(text(f.credential.tokenFile), [fleet.setup.issuerPublic]) as ClientClaims;
    expect(claims.permissions).toEqual({
      streams_user: true,
      election_user: true,
      events_viewer: true,
      provisioner: true,
    });
    expect(claims.pub_subjects).toEqual([
      `${PROVISIONING_SUBJECTS}.>`,
      `$JS.API.STREAM.CREATE.${PROVISIONING_STREAM}`,
      `$JS.API.STREAM.UPDATE.${PROVISIONING_STREAM}`,
      "choria.lifecycle.event.startup.provisioner",
    ]);
    const c = clientSettings(loadConfig(f.choriaConfig));
    expect(c.seedFile).toBe(f.credential.seedFile);
    expect(c.tokenFile).toBe(f.credential.tokenFile);
    expect(c.issuers).toEqual([fleet.setup.issuerPublic]);
  });

  it("provisioner.yaml points at those files", () => {
    const f = p();
    const y = parse(readFileSync(f.serviceConfig, "utf8")) as Record<string, unknown>;
    expect(y).toMatchObject({
      token: f.token,
      site: "dev",
      lifecycle_component: "provision_mode_server",
      leader_election: true,
      features: { pki: false, jwt: true, ed25519: true },
      jwt_verify_cert: fleet.setup.issuerPublic,
      jwt_signing_key: f.chainIssuerSeedFile,
      jwt_signing_token: f.chainIssuerTokenFile,
      helper: f.helper,
      broker_urls: [fleet.setup.brokerUrl],
      provisioning_credentials: {
        seed: f.credential.seedFile,
        token: f.credential.tokenFile,
        nats: f.provisioningNatsJwtFile,
        ca: fleet.setup.caFile,
      },
      choria_config: f.choriaConfig,
    });
    expect(y.server_jwt_validity).toBe("720h");
  });

  it("server-unprovisioned.conf starts a node in provisioning mode with no token", () => {
    const f = p();
    const s = provisioningSettings(loadConfig(f.serverConfig));
    expect(s.identity).toBe("new1.example.net");
    expect(s.provision).toBe(true);
    expect(s.jwtFile).toBe(f.tokenFile);
    expect(s.caFile).toBe(fleet.setup.caFile);
    expect(s.issuers).toEqual([]);
    expect(existsSync(s.tokenFile)).toBe(false);
    expect(readFileSync(f.serverConfig, "utf8")).not.toMatch(/token_file|seed_file|middleware_hosts/);
  });

  it("the dev helper answers with a configuration that ends provisioning, and defers without a key", () => {
    const f = p();
    const run = (input: unknown) => {
      const r = spawnSync(process.execPath, [f.helper], { input: JSON.stringify(input), encoding: "utf8" });
      expect(r.status).toBe(0);
      return JSON.parse(r.stdout) as Record<string, unknown>;
    };
    const out = run({ identity: "new1.example.net", ed25519_pubkey: { directory: "/var/lib/x" } });
    expect(out.configuration).toMatchObject({
      identity: "new1.example.net",
      "plugin.choria.server.provision": "false",
      "plugin.security.choria.seed_file": "/var/lib/x/server.seed",
      "plugin.security.choria.token_file": "/var/lib/x/server.jwt",
      "plugin.security.issuer.dev.public": fleet.setup.issuerPublic,
      "plugin.choria.middleware_hosts": fleet.setup.brokerUrl,
    });
    expect(out.server_claims).toEqual({
      collectives: ["mcollective"],
      permissions: { submission: true, service_host: true },
    });
    expect(run({ identity: "new1.example.net", ed25519_pubkey: null }).defer).toBe(true);
    expect(run({ identity: "bad id;" }).defer).toBe(true);
  });
});

describe("setup dev --provisioning: on the broker", () => {
  it("the node connects with chusr/chpwd, is kept to provisioning subjects, and its startup event reaches the provisioner", async () => {
    const f = p();
    const c = verifyProvisioningToken(text(f.tokenFile), [fleet.setup.issuerPublic]);
    const prov = await connect(
      text(f.provisioningNatsJwtFile),
      loadSeedFile(f.credential.seedFile).seedHex,
      "provisioner",
    );
    const events: string[] = [];
    const evSub = prov.subscribe("choria.lifecycle.event.startup.provision_mode_server", {
      callback: (_e, m) => void events.push(m.string()),
    });
    await prov.flush();

    const node = await connect(c.chusr!, nkeySeedToEd25519Seed(c.chpwd!), "new1");
    const own: string[] = [];
    node.subscribe("provisioning.node.new1.example.net", { callback: (_e, m) => void own.push(m.string()) });
    const denied = node.subscribe("mcollective.>");
    const err = await Promise.race([denied.closed, sleep(3000).then(() => "still subscribed")]);
    expect(String(err)).toMatch(/permissions violation for subscription to "mcollective.>"/i);

    // the ordinary dev client (fleet_management, CHORIA) cannot reach the node
    const client = await connect(
      text(fleet.setup.client.natsJwtFile),
      loadSeedFile(fleet.setup.client.seedFile).seedHex,
      "client",
    );
    client.publish("provisioning.node.new1.example.net", "from choria");
    await client.flush();
    prov.publish("provisioning.node.new1.example.net", "from provisioner");
    await prov.flush();

    node.publish("choria.lifecycle.event.startup.provision_mode_server", '{"identity":"new1.example.net"}');
    await node.flush();
    for (let i = 0; i < 100 && (events.length === 0 || own.length === 0); i++) await sleep(20);
    await sleep(150);
    expect(events).toEqual(['{"identity":"new1.example.net"}']);
    expect(own).toEqual(["from provisioner"]);
    evSub.unsubscribe();
  });

  it("the chain issuer mints a server's NATS user the broker accepts in CHORIA", async () => {
    const chain = chainIssuer();
    const kp = generateKeyPair();
    const token = createServerToken(
      {
        identity: "new1.example.net",
        collectives: ["mcollective"],
        publicKeyHex: kp.publicHex,
        validityS: 600,
      },
      chain,
    );
    const claims = verifyToken(token, [fleet.setup.issuerPublic]) as ServerClaims;
    const jwt = await issueNatsUserJwt(chain, trustOf(), claims);
    expect(decode<User>(jwt).iss).toBe(nkeyPublicFromEd25519Public(chain.publicHex, "account"));
    const nc = await connect(jwt, kp.seedHex, "minted server");
    const got: string[] = [];
    nc.subscribe("mcollective.node.new1.example.net", { callback: (_e, m) => void got.push(m.string()) });
    await nc.flush();
    const client = await connect(
      text(fleet.setup.client.natsJwtFile),
      loadSeedFile(fleet.setup.client.seedFile).seedHex,
      "client 2",
    );
    client.publish("mcollective.node.new1.example.net", "hello");
    await client.flush();
    for (let i = 0; i < 100 && got.length === 0; i++) await sleep(20);
    expect(got).toEqual(["hello"]);
  });

  it("the provisioner's CHORIA credential runs its work queue and uses elections, but cannot remove streams", async () => {
    const f = p();
    const nc = await connect(
      text(f.credential.natsJwtFile),
      loadSeedFile(f.credential.seedFile).seedHex,
      "provisioner choria",
      replyPrefix(fleet.setup.collective, "choria=provisioner"),
    );
    // the provisioner's own queue code, with the dev credential
    const queue = new WorkQueue(nc, { ackWaitMs: 30_000, duplicateWindowMs: 60_000 });
    await queue.ensure();
    expect(await queue.enqueue("new1.example.net", "event")).toBe("queued");
    expect(await queue.enqueue("new1.example.net", "event")).toBe("duplicate");
    const m = await queue.next(2000);
    expect(m && parseWorkItem(m)?.identity).toBe("new1.example.net");
    m!.ack();
    const kv = await new Kvm(nc).open("CHORIA_LEADER_ELECTION");
    await kv.put(ELECTION_KEY, "provisioner=dev");
    expect((await kv.get(ELECTION_KEY))?.string()).toBe("provisioner=dev");
    const jsm = await jetstreamManager(nc, { checkAPI: false, timeout: 2000 });
    await expect(jsm.streams.delete(PROVISIONING_STREAM)).rejects.toThrow();
  });
});

describe("setups made before provisioning", () => {
  it("a trust file without the PROVISIONING account still starts a broker that serves CHORIA", async () => {
    const dir = mkdtempSync(join(tmpdir(), "chorus-old-trust-"));
    let broker: BrokerSupervisor | undefined;
    try {
      const s = await createDevSetup({ dir, brokerPort: await freePort(), streams: false });
      const file = join(dir, "nats-trust.json");
      const trust = JSON.parse(readFileSync(file, "utf8")) as NatsTrust;
      const { provisioningAccountPublic: pub, provisioningAccountSeed: _seed, ...old } = trust;
      const { [pub]: _gone, ...accounts } = old.accounts;
      writeFileSync(file, JSON.stringify({ ...old, accounts }, null, 2), { mode: 0o600 });
      broker = new BrokerSupervisor({
        settings: brokerSettings(loadConfig(s.brokerConfig)),
        logger: () => {},
      });
      await broker.start();
      const nc = await connectNats({
        servers: [s.brokerUrl],
        name: "old",
        caFile: s.caFile,
        natsJwt: text(s.client.natsJwtFile),
        seedHex: loadSeedFile(s.client.seedFile).seedHex,
        reconnect: false,
        logger: quiet,
      });
      await closeNats(nc, 500);
    } finally {
      await broker?.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe("chorus setup dev --provisioning", () => {
  it("writes the provisioning files and says how to run them", async () => {
    const dir = mkdtempSync(join(tmpdir(), "chorus-setup-prov-cli-"));
    const out: string[] = [];
    const write = vi.spyOn(process.stdout, "write").mockImplementation((s: string | Uint8Array) => {
      out.push(String(s));
      return true;
    });
    try {
      const program = new Command().exitOverride();
      register(program);
      await program.parseAsync(["setup", "dev", "--dir", dir, "--force", "--provisioning"], { from: "user" });
      const printed = out.join("");
      expect(printed).toContain(`chorus provisioner run --config ${join(dir, "provisioner.yaml")}`);
      expect(printed).toContain(`chorus server run --config ${join(dir, "server-unprovisioned.conf")}`);
      expect(existsSync(join(dir, "provisioning.jwt"))).toBe(true);
    } finally {
      write.mockRestore();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
