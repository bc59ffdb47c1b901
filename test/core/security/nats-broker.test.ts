import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createAccount, createUser, encodeUser, fromSeed } from "@nats-io/jwt";
import type { Msg, Subscription } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectNats, type NatsConnection } from "../../../src/core/connector/index.js";
import {
  addChoriaSigningKeys,
  createChainIssuer,
  createClientToken,
  createNatsTrust,
  nkeySeedToEd25519Seed,
  generateKeyPair,
  issueNatsUserJwt,
  issueProvisioningUsers,
  loadSeedFile,
  nkeySeedFromEd25519Seed,
  orgIssuer,
  renderNatsTrustConfig,
  verifyToken,
  type ClientClaims,
  type KeyPair,
  type NatsTrust,
  type ProvisioningUsers,
} from "../../../src/core/security/index.js";
import { startSecureFleet, type SecureFleet } from "../../helpers/fleet.js";
import { startNats, type TestNats } from "../../helpers/nats.js";

const quiet = { info: () => {}, warn: () => {}, error: () => {} };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Messages a subscription gets, and the error it closes with (a permissions violation). */
function collect(sub: Subscription): { msgs: Msg[]; closed: Promise<void | Error> } {
  const msgs: Msg[] = [];
  void (async () => {
    for await (const m of sub) msgs.push(m);
  })().catch(() => undefined);
  return { msgs, closed: sub.closed };
}

async function waitFor(what: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!what()) {
    if (Date.now() > end) throw new Error("timed out");
    await sleep(20);
  }
}

describe("PROVISIONING account isolation on a real broker", () => {
  let fleet: SecureFleet;
  let trust: NatsTrust;
  let users: ProvisioningUsers;
  let provisionerKp: KeyPair;
  const conns: NatsConnection[] = [];

  const connect = async (jwt: string, seedHex: string, name: string): Promise<NatsConnection> => {
    const nc = await connectNats({
      servers: [fleet.setup.brokerUrl],
      name,
      caFile: fleet.setup.caFile,
      natsJwt: jwt,
      seedHex,
      reconnect: false,
      logger: quiet,
    });
    conns.push(nc);
    return nc;
  };
  const node = () => connect(users.node.jwt, nkeySeedToEd25519Seed(users.node.seed), "node");
  const provisioner = () => connect(users.provisioner.jwt, provisionerKp.seedHex, "provisioner");
  // the dev client: fleet_management and events_viewer in the CHORIA account
  const choriaClient = () =>
    connect(
      readFileSync(fleet.setup.client.natsJwtFile, "utf8").trim(),
      loadSeedFile(fleet.setup.client.seedFile).seedHex,
      "choria client",
    );

  beforeAll(async () => {
    fleet = await startSecureFleet({ streams: false });
    trust = JSON.parse(readFileSync(join(fleet.setup.dir, "nats-trust.json"), "utf8")) as NatsTrust;
    provisionerKp = generateKeyPair();
    users = await issueProvisioningUsers(trust, provisionerKp.publicHex, Math.floor(Date.now() / 1000) + 600);
  }, 60_000);

  afterAll(async () => {
    await Promise.all(conns.map((c) => c.close().catch(() => undefined)));
    await fleet?.stop();
  });

  it("the node user may listen on provisioning subjects but nowhere in CHORIA", async () => {
    const nc = await node();
    const mine = collect(nc.subscribe("provisioning.node.x"));
    const broadcast = collect(nc.subscribe("provisioning.broadcast.agent.choria_provision"));
    const denied = ["mcollective.>", ">", "choria.lifecycle.>", "provisioning.reply.>"].map((s) =>
      collect(nc.subscribe(s)),
    );
    for (const d of denied) {
      const err = await Promise.race([d.closed, sleep(3000).then(() => "still subscribed")]);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toMatch(/permissions violation for subscription/i);
    }

    // CHORIA-account traffic on the same subject names does not cross over
    const choria = await choriaClient();
    choria.publish("provisioning.node.x", "from choria");
    choria.publish("mcollective.broadcast.agent.rpcutil", "from choria");
    await choria.flush();
    const prov = await provisioner();
    prov.publish("provisioning.node.x", "from provisioner");
    prov.publish("provisioning.broadcast.agent.choria_provision", "discover");
    await prov.flush();
    await waitFor(() => mine.msgs.length > 0 && broadcast.msgs.length > 0);
    await sleep(200);
    expect(mine.msgs.map((m) => m.string())).toEqual(["from provisioner"]);
    expect(broadcast.msgs.map((m) => m.string())).toEqual(["discover"]);
    for (const d of denied) expect(d.msgs).toEqual([]);
    expect(nc.isClosed()).toBe(false);
  });

  it("the node's provision_mode_server startup event reaches the provisioner, not CHORIA", async () => {
    const prov = await provisioner();
    const events = collect(prov.subscribe("choria.lifecycle.event.>"));
    const choria = await choriaClient();
    const choriaEvents = collect(choria.subscribe("choria.lifecycle.event.>"));
    await Promise.all([prov.flush(), choria.flush()]);

    const nc = await node();
    const errors: Error[] = [];
    void (async () => {
      for await (const s of nc.status()) if (s.type === "error") errors.push(s.error);
    })();
    nc.publish(
      "choria.lifecycle.event.startup.provision_mode_server",
      '{"component":"provision_mode_server"}',
    );
    // not a subject the node user may publish to: the broker drops it and says so
    nc.publish("provisioning.node.other", "spoof");
    await nc.flush();
    await waitFor(() => events.msgs.length > 0);
    await sleep(200);
    expect(events.msgs.map((m) => m.subject)).toEqual([
      "choria.lifecycle.event.startup.provision_mode_server",
    ]);
    expect(choriaEvents.msgs).toEqual([]);
    await waitFor(() => errors.length > 0);
    expect(errors[0]?.message).toMatch(/permissions violation for publish to "provisioning.node.other"/i);
  });

  it("refuses forged PROVISIONING users at connect", async () => {
    const user = createUser();
    const seedHex = nkeySeedToEd25519Seed(new TextDecoder().decode(user.getSeed()));
    const stranger = createAccount();
    // claims to be issued for the PROVISIONING account, signed by a key it does not list
    const forged = await encodeUser(
      "forged",
      user,
      trust.provisioningAccountPublic,
      {},
      { signer: stranger },
    );
    // signed by the CHORIA signing key (the org's) but pointing at PROVISIONING
    const org = fromSeed(
      nkeySeedFromEd25519Seed(loadSeedFile(fleet.setup.issuerSeedFile).seedHex, "account"),
    );
    const crossed = await encodeUser("crossed", user, trust.provisioningAccountPublic, {}, { signer: org });
    // an account the operator never signed
    const unknown = await encodeUser("unknown", user, stranger);
    for (const jwt of [forged, crossed, unknown]) {
      await expect(connect(jwt, seedHex, "forged")).rejects.toThrow(/authorization violation/i);
    }
    // the node user's JWT with another key's nonce signature
    await expect(connect(users.node.jwt, generateKeyPair().seedHex, "stolen jwt")).rejects.toThrow(
      /authorization violation/i,
    );
  });
});

describe("CHORIA signing keys and old trust on a real broker", () => {
  const org = orgIssuer(generateKeyPair());
  let nats: TestNats | undefined;

  afterAll(async () => {
    await nats?.stop();
  });

  async function clientUser(issuer: typeof org, trust: Pick<NatsTrust, "choriaAccountPublic">) {
    const kp = generateKeyPair();
    const claims = verifyToken(
      createClientToken({ callerid: "choria=minted", publicKeyHex: kp.publicHex, validityS: 60 }, issuer),
      [org.publicHex],
    ) as ClientClaims;
    return { kp, jwt: await issueNatsUserJwt(issuer, trust, claims) };
  }

  async function tryConnect(url: string, jwt: string, seedHex: string): Promise<void> {
    const nc = await connectNats({
      servers: [url],
      name: "t",
      natsJwt: jwt,
      seedHex,
      reconnect: false,
      logger: quiet,
    });
    await nc.close();
  }

  it("a chain issuer added as a signing key mints users the broker accepts; an unlisted one is refused", async () => {
    const chainKp = generateKeyPair();
    const chain = createChainIssuer(org, chainKp, 300, { callerid: "provisioner=t" });
    const other = createChainIssuer(org, generateKeyPair(), 300);
    const trust = await addChoriaSigningKeys(await createNatsTrust(org), [chainKp.publicHex]);
    nats = await startNats(renderNatsTrustConfig(trust));

    const minted = await clientUser(chain, trust);
    await expect(tryConnect(nats.url, minted.jwt, minted.kp.seedHex)).resolves.toBeUndefined();
    const byOrg = await clientUser(org, trust);
    await expect(tryConnect(nats.url, byOrg.jwt, byOrg.kp.seedHex)).resolves.toBeUndefined();
    // issued without the account JWT to check against: nats-server enforces the list
    const unlisted = await clientUser(other, { choriaAccountPublic: trust.choriaAccountPublic });
    await expect(tryConnect(nats.url, unlisted.jwt, unlisted.kp.seedHex)).rejects.toThrow(
      /authorization violation/i,
    );
    await nats.stop();
    nats = undefined;
  });

  it("trust made before the PROVISIONING account still serves CHORIA users", async () => {
    const full = await createNatsTrust(org);
    const { [full.provisioningAccountPublic]: _gone, ...accounts } = full.accounts;
    nats = await startNats(renderNatsTrustConfig({ ...full, accounts }));
    const u = await clientUser(org, full);
    await expect(tryConnect(nats.url, u.jwt, u.kp.seedHex)).resolves.toBeUndefined();
    // and its users are unknown there
    const users = await issueProvisioningUsers(full, generateKeyPair().publicHex);
    await expect(
      tryConnect(nats.url, users.node.jwt, nkeySeedToEd25519Seed(users.node.seed)),
    ).rejects.toThrow(/authorization violation/i);
  });
});
