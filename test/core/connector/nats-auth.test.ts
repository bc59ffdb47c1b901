import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectNats, type NatsConnection, type Status } from "../../../src/core/connector/index.js";
import { silentLogger } from "../../../src/core/util/index.js";
import {
  createCA,
  createClientToken,
  createNatsTrust,
  createServerToken,
  decodeTokenUnverified,
  generateKeyPair,
  issueCert,
  issueNatsUserJwt,
  orgIssuer,
  renderNatsTrustConfig,
  type ClientClaims,
  type ClientPermissions,
  type KeyPair,
  type NatsTrust,
  type ServerClaims,
} from "../../../src/core/security/index.js";
import { startNats, type TestNats } from "../../helpers/nats.js";

const quiet = silentLogger;
const org = orgIssuer(generateKeyPair());
const md5 = (s: string) => createHash("md5").update(s).digest("hex");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Cred {
  kp: KeyPair;
  natsJwt: string;
}

let trust: NatsTrust;
let nats: TestNats;
let certDir: string;
let caFile: string;
const open: NatsConnection[] = [];

async function clientCred(callerid: string, permissions?: ClientPermissions): Promise<Cred> {
  const kp = generateKeyPair();
  const jwt = createClientToken({ callerid, publicKeyHex: kp.publicHex, validityS: 600, permissions }, org);
  const claims = decodeTokenUnverified(jwt) as unknown as ClientClaims;
  return { kp, natsJwt: await issueNatsUserJwt(org, trust, claims) };
}

async function serverCred(identity: string, collectives: string[]): Promise<Cred> {
  const kp = generateKeyPair();
  const jwt = createServerToken({ identity, collectives, publicKeyHex: kp.publicHex, validityS: 600 }, org);
  const claims = decodeTokenUnverified(jwt) as unknown as ServerClaims;
  return { kp, natsJwt: await issueNatsUserJwt(org, trust, claims) };
}

async function conn(
  name: string,
  cred: Cred,
  errors: Error[] = [],
  seedHex = cred.kp.seedHex,
  inboxPrefix?: string,
): Promise<NatsConnection> {
  const nc = await connectNats({
    inboxPrefix,
    servers: [`tls://127.0.0.1:${nats.port}`],
    name,
    caFile,
    natsJwt: cred.natsJwt,
    seedHex,
    reconnect: false,
    logger: quiet,
    onStatus: (s: Status) => {
      if (s.type === "error") errors.push(s.error);
    },
  });
  open.push(nc);
  return nc;
}

/** Subscribes as org_admin and reports whether anything arrives on `subject`. */
async function watch(admin: NatsConnection, subject: string): Promise<() => string[]> {
  const got: string[] = [];
  admin.subscribe(subject, { callback: (_e, m) => void got.push(m.string()) });
  await admin.flush();
  return () => got;
}

beforeAll(async () => {
  trust = await createNatsTrust(org);
  certDir = mkdtempSync(join(tmpdir(), "chorus-tls-"));
  const ca = await createCA("Chorus Test CA", 1);
  const srv = await issueCert(ca, "localhost", { dns: ["localhost"], ip: ["127.0.0.1", "::1"] }, 1, "server");
  caFile = join(certDir, "ca.pem");
  writeFileSync(caFile, ca.certPem);
  writeFileSync(join(certDir, "broker.pem"), srv.certPem);
  writeFileSync(join(certDir, "broker.key"), srv.keyPem);
  const tls = `tls {\n  cert_file: "${join(certDir, "broker.pem")}"\n  key_file: "${join(certDir, "broker.key")}"\n  ca_file: "${caFile}"\n  timeout: 2\n}\n`;
  const js = `jetstream {\n  store_dir: "${join(certDir, "js")}"\n}\n`;
  nats = await startNats(renderNatsTrustConfig(trust) + tls + js);
});

afterAll(async () => {
  await Promise.all(open.map((nc) => nc.close().catch(() => {})));
  await nats?.stop();
  if (certDir) rmSync(certDir, { recursive: true, force: true });
});

describe("broker auth with Chorus NATS user JWTs", () => {
  it("lets a fleet_management client publish requests", async () => {
    const admin = await conn("admin", await clientCred("admin", { org_admin: true }));
    const seen = await watch(admin, "mcollective.broadcast.agent.x");
    const errors: Error[] = [];
    const fleet = await conn("fleet", await clientCred("choria=fleet", { fleet_management: true }), errors);
    fleet.publish("mcollective.broadcast.agent.x", "hello");
    await fleet.flush();
    await sleep(100);
    expect(seen()).toEqual(["hello"]);
    expect(errors).toEqual([]);
  });

  it("refuses requests from a client without fleet_management", async () => {
    const admin = await conn("admin2", await clientCred("admin", { org_admin: true }));
    const seen = await watch(admin, "mcollective.broadcast.agent.y");
    const errors: Error[] = [];
    const plain = await conn("plain", await clientCred("choria=plain"), errors);
    plain.publish("mcollective.broadcast.agent.y", "sneaky");
    plain.publish("mcollective.node.n1", "sneaky");
    await plain.flush();
    await sleep(200);
    expect(seen()).toEqual([]);
    expect(errors.map((e) => e.message).join("\n")).toMatch(
      /permissions violation for publish to "mcollective\.broadcast\.agent\.y"/i,
    );
  });

  it("keeps clients out of each other's reply subjects", async () => {
    const bob = await conn("bob", await clientCred("choria=bob", { fleet_management: true }));
    const own = bob.subscribe(`mcollective.reply.${md5("choria=bob")}.>`);
    const other = bob.subscribe(`mcollective.reply.${md5("choria=alice")}.>`);
    await bob.flush();
    const closed = await Promise.race([other.closed, sleep(2000).then(() => "timeout")]);
    expect(closed).toBeInstanceOf(Error);
    expect(String((closed as Error).message)).toMatch(/permissions violation for subscription/i);
    expect(own.isClosed()).toBe(false);
  });

  it("lets a server read its own node subject and no other", async () => {
    const admin = await conn("admin3", await clientCred("admin", { org_admin: true }));
    const n1 = await conn("n1", await serverCred("n1", ["mcollective"]));
    const got: string[] = [];
    const mine = n1.subscribe("mcollective.node.n1", { callback: (_e, m) => void got.push(m.string()) });
    const theirs = n1.subscribe("mcollective.node.n2");
    await n1.flush();
    admin.publish("mcollective.node.n1", "for n1");
    await admin.flush();
    await sleep(100);
    expect(got).toEqual(["for n1"]);
    expect(mine.isClosed()).toBe(false);
    expect(await Promise.race([theirs.closed, sleep(2000).then(() => "timeout")])).toBeInstanceOf(Error);
  });

  it("denies everything when the allow list would be empty", async () => {
    // a server in no collectives gets no subscribe rights at all
    const lost = await conn("lost", await serverCred("lost", []));
    const sub = lost.subscribe("anything");
    await lost.flush();
    expect(await Promise.race([sub.closed, sleep(2000).then(() => "timeout")])).toBeInstanceOf(Error);
  });

  it("gives the CHORIA account JetStream and streams users its API via their reply prefix", async () => {
    const cred = await clientCred("choria=streamer", { streams_user: true });
    const nc = await conn(
      "streamer",
      cred,
      [],
      cred.kp.seedHex,
      `mcollective.reply.${md5("choria=streamer")}`,
    );
    const info = (await nc.request("$JS.API.INFO", "", { timeout: 2000 })).json<{
      type: string;
      limits?: unknown;
    }>();
    expect(info.type).toBe("io.nats.jetstream.api.v1.account_info_response");
    // without streams permission the same request is refused
    const plainCred = await clientCred("choria=nostreams", { fleet_management: true });
    const plain = await conn(
      "nostreams",
      plainCred,
      [],
      plainCred.kp.seedHex,
      `mcollective.reply.${md5("choria=nostreams")}`,
    );
    await expect(plain.request("$JS.API.INFO", "", { timeout: 1000 })).rejects.toThrow();
  });

  it("rejects a user JWT presented with the wrong seed", async () => {
    const cred = await clientCred("choria=thief", { fleet_management: true });
    await expect(conn("thief", cred, [], generateKeyPair().seedHex)).rejects.toThrow(/authorization/i);
  });

  it("rejects plain (non-TLS) connections", async () => {
    const cred = await clientCred("choria=plain2", { fleet_management: true });
    await expect(
      connectNats({
        servers: [nats.url],
        name: "plain",
        natsJwt: cred.natsJwt,
        seedHex: cred.kp.seedHex,
        reconnect: false,
        tls: false,
        logger: quiet,
      }),
    ).rejects.toThrow();
  });
});
