import "reflect-metadata";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as x509 from "@peculiar/x509";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client } from "../../../src/client/index.js";
import type { AgentDDL, InputDDL } from "../../../src/core/ddl/index.js";
import {
  ChoriaSecurity,
  createCA,
  createClientToken,
  createProvisioningToken,
  createServerToken,
  generateKeyPair,
  issueCert,
  orgIssuer,
  sealForNode,
  verify,
  writeSeedFile,
  type KeyPair,
} from "../../../src/core/security/index.js";
import {
  choriaProvisionDDL,
  serveConfigFile,
  type Server,
  type ServeOutcome,
} from "../../../src/server/index.js";
import { startNats, type TestNats } from "../../helpers/nats.js";

const ID = "n1.example";
const CHT = "the-provisioning-token";
const quiet = pino({ level: "silent" });
const orgKp = generateKeyPair();
const org = orgIssuer(orgKp);

let nats: TestNats;
let watch: NatsConnection;
let dir: string;
let conf: string;
const events: { subject: string; data: Record<string, unknown> }[] = [];
const servers: Server[] = [];
const clients: Client[] = [];
let loop: Promise<ServeOutcome>;
const stop = new AbortController();

/** A client credential in `dir`, issued by the org. */
function clientSecurity(name: string, permissions = { fleet_management: true }): ChoriaSecurity {
  const kp = generateKeyPair();
  writeSeedFile(join(dir, `${name}.seed`), kp);
  writeFileSync(
    join(dir, `${name}.jwt`),
    createClientToken(
      { callerid: `choria=${name}`, publicKeyHex: kp.publicHex, validityS: 3600, permissions },
      org,
    ),
  );
  return new ChoriaSecurity({
    seedFile: join(dir, `${name}.seed`),
    tokenFile: join(dir, `${name}.jwt`),
    issuers: [orgKp.publicHex],
  });
}

function client(name: string, collective = "provisioning"): Client {
  const c = new Client({
    security: clientSecurity(name),
    servers: [nats.url],
    collective,
    identity: `${name}.example`,
    discoveryTimeoutMs: 500,
  });
  c.registerDDL(choriaProvisionDDL());
  clients.push(c);
  return c;
}

/** choria_provision's DDL without limits or validation, to send what a real client would refuse to. */
function looseDDL(): AgentDDL {
  const d = structuredClone(choriaProvisionDDL());
  for (const a of d.actions) {
    for (const i of Object.values(a.input)) {
      delete i.validation;
      delete i.default;
      i.maxlength = 0;
      i.optional = true;
      // a type the validator does not know: anything goes through
      i.type = "any" as InputDDL["type"];
    }
  }
  d.actions.push({ action: "nonsense", description: "not an action", input: {}, output: {} });
  return d;
}

async function call(
  c: Client,
  action: string,
  data: Record<string, unknown>,
  opts: { ddl?: AgentDDL; agent?: string } = {},
): Promise<{ statuscode: number; statusmsg: string; data: Record<string, unknown> }> {
  const r = await c.request(opts.agent ?? "choria_provision", action, data, {
    nodes: [ID],
    timeoutMs: 20_000,
    ...(opts.ddl && { ddl: opts.ddl }),
  });
  expect(r.replies).toHaveLength(1);
  return r.replies[0] as { statuscode: number; statusmsg: string; data: Record<string, unknown> };
}

async function waitFor<T>(fn: () => T | undefined | false, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 50));
  }
}

const current = (): Server => servers[servers.length - 1] as Server;
const mode = (file: string) => statSync(file).mode & 0o777;

beforeAll(async () => {
  nats = await startNats();
  dir = mkdtempSync(join(tmpdir(), "chorus-provision-"));
  conf = join(dir, "server.conf");
  writeFileSync(conf, [`identity = ${ID}`, "plugin.choria.server.provision = true", ""].join("\n"));
  writeFileSync(
    join(dir, "provisioning.jwt"),
    createProvisioningToken({ cht: CHT, chu: nats.url, validityS: 3600 }, org),
  );
  watch = await connect({ servers: nats.url });
  watch.subscribe("choria.lifecycle.event.>", {
    callback: (_e, m) => {
      events.push({ subject: m.subject, data: m.json<{ data: Record<string, unknown> }>().data });
    },
  });
  await watch.flush();
  loop = serveConfigFile(conf, {
    signal: stop.signal,
    overrides: { logger: quiet, provisionTuning: { minDelayMs: 200, splayS: 1 } },
    onStart: (s) => servers.push(s),
  });
  await waitFor(() => servers.length === 1);
}, 30_000);

afterAll(async () => {
  stop.abort();
  await loop.catch(() => undefined);
  await Promise.all(clients.map((c) => c.close()));
  await watch?.close();
  await nats?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("a node in provisioning mode", () => {
  let prov: Client;
  let seed: { public_key: string };
  let ecdh: string;

  it("announces itself as provision_mode_server and serves only the provisioning agents", async () => {
    prov = client("provisioner");
    expect(current().provisionMode).toBe(true);
    const startup = await waitFor(() =>
      events.find((e) => e.subject === "choria.lifecycle.event.startup.provision_mode_server"),
    );
    expect(startup.data).toMatchObject({ identity: ID, component: "provision_mode_server" });
    expect(await prov.discover()).toEqual([ID]);
    const inv = await call(prov, "agent_inventory", {}, { agent: "rpcutil" });
    const names = (inv.data.agents as { agent: string }[]).map((a) => a.agent).sort();
    expect(names).toEqual(["choria_provision", "choria_util", "discovery", "rpcutil"]);
    // nothing on the normal collective
    const normal = client("outsider", "mcollective");
    expect(await normal.discover({ timeoutMs: 300 })).toEqual([]);
  });

  it("refuses a wrong or empty token and counts it", async () => {
    const before = current().provisionAgent?.stats.refusedToken ?? 0;
    const wrong = await call(prov, "jwt", { token: "nope" });
    expect(wrong.statuscode).toBe(1);
    expect(wrong.statusmsg).toBe("Incorrect provision token supplied");
    // configure's token is optional in the DDL: empty must not pass either
    const empty = await call(prov, "configure", { config: '{"a":"b"}' });
    expect(empty.statusmsg).toBe("Incorrect provision token supplied");
    expect(current().provisionAgent?.stats.refusedToken).toBe(before + 2);
  });

  it("answers jwt with the provisioning token and an ECDH key, and takes the lock", async () => {
    const r = await call(prov, "jwt", { token: CHT });
    expect(r.statuscode).toBe(0);
    expect(r.data.jwt).toBe(readFileSync(join(dir, "provisioning.jwt"), "utf8").trim());
    ecdh = r.data.ecdh_public as string;
    expect(ecdh).toMatch(/^[0-9a-f]{64}$/);
  });

  it("does not let another caller in while the lock is held", async () => {
    const other = client("intruder");
    const r = await call(other, "gen25519", { token: CHT, nonce: "x" });
    expect(r.statuscode).toBe(1);
    expect(r.statusmsg).toBe("Could not obtain provisioning lock");
    expect(current().provisionAgent?.stats.refusedLock).toBe(1);
    // without the token it does not even get to ask for the lock
    const t = await call(other, "jwt", { token: "guess" });
    expect(t.statusmsg).toBe("Incorrect provision token supplied");
    expect(current().provisionAgent?.stats.refusedLock).toBe(1);
  });

  it("refuses to restart while the config still provisions", async () => {
    const r = await call(prov, "restart", { token: CHT, splay: 0 });
    expect(r.statuscode).toBe(1);
    expect(r.statusmsg).toMatch(/provisioning mode again/);
    await new Promise((res) => setTimeout(res, 400));
    expect(servers).toHaveLength(1);
  });

  it("gen25519 writes a new seed and signs the nonce with it", async () => {
    writeFileSync(join(dir, "server.jwt"), "stale");
    const nonce = "n-0123456789";
    const r = await call(prov, "gen25519", { token: CHT, nonce });
    expect(r.statuscode).toBe(0);
    seed = r.data as { public_key: string };
    expect(r.data.directory).toBe(dir);
    expect(verify(seed.public_key, Buffer.from(nonce), Buffer.from(r.data.signature as string, "hex"))).toBe(
      true,
    );
    expect(mode(join(dir, "server.seed"))).toBe(0o600);
    expect(existsSync(join(dir, "server.jwt"))).toBe(false);
  });

  it("gencsr makes an RSA key and a CSR for the node's identity", async () => {
    const r = await call(prov, "gencsr", { token: CHT, O: "Chorus", C: "GB" });
    expect(r.statuscode).toBe(0);
    const csr = new x509.Pkcs10CertificateRequest(r.data.csr as string);
    expect(await csr.verify()).toBe(true);
    expect(csr.subjectName.getField("CN")).toEqual([ID]);
    expect(csr.subject).toContain("O=Chorus");
    expect((csr.publicKey.algorithm as { modulusLength?: number }).modulusLength).toBe(2048);
    expect(r.data.ssldir).toBe(join(dir, "ssl"));
    expect(readFileSync(join(dir, "ssl", "private.pem"), "utf8")).toContain("BEGIN RSA PRIVATE KEY");
    expect(mode(join(dir, "ssl", "private.pem"))).toBe(0o600);
    const other = await call(prov, "gencsr", { token: CHT, cn: "someone.else" });
    expect(other.statusmsg).toMatch(/must be this node's identity/);
  });

  const newConfig = (extra: Record<string, string> = {}) =>
    JSON.stringify({
      identity: ID,
      collectives: "mcollective",
      "plugin.choria.middleware_hosts": nats.url,
      "plugin.security.issuer.names": "dev",
      "plugin.security.issuer.dev.public": orgKp.publicHex,
      "plugin.choria.server.provision": "false",
      loglevel: "error",
      ...extra,
    });
  const serverJwt = (identity = ID, key?: KeyPair) =>
    createServerToken(
      {
        identity,
        collectives: ["mcollective"],
        publicKeyHex: key?.publicHex ?? seed.public_key,
        validityS: 3600,
      },
      org,
    );

  it("configure refuses configs that do not parse, still provision, or do not fit the credential", async () => {
    const original = readFileSync(conf, "utf8");
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ config: "{not json}" }, /not JSON/],
      [{ config: newConfig({ "plugin.choria.server.provision": "yes" }) }, /never leave provisioning mode/],
      [{ config: newConfig({ "plugin.choria.server.provision": "maybe" }) }, /not a boolean/],
      [{ config: newConfig({ loglevel: "chatty" }) }, /does not parse: .*loglevel/],
      [{ config: newConfig({ "plugin.security.issuer.names": "" }) }, /does not parse: .*issuers/],
      [{ config: newConfig(), server_jwt: serverJwt("other.example") }, /for identity other.example/],
      [{ config: newConfig(), server_jwt: serverJwt(ID, generateKeyPair()) }, /for public key/],
      [
        {
          config: newConfig(),
          server_jwt: createServerToken(
            { identity: ID, collectives: ["x"], publicKeyHex: seed.public_key, validityS: 60 },
            orgIssuer(generateKeyPair()),
          ),
        },
        /does not verify/,
      ],
      [
        { config: newConfig(), action_policies: { "../escape.policy": "policy default allow" } },
        /not allowed/,
      ],
      [{ config: newConfig(), key: "AAAA", ecdh_public: "00" }, /ECDH|sealed/],
      [{ config: newConfig(), key: sealForNode(Buffer.from("x"), ecdh).sealed }, /ecdh_public/],
      [{ config: newConfig(), certificate: "-----BEGIN CERTIFICATE-----\nxx" }, /not a PEM certificate/],
    ];
    for (const [data, why] of cases) {
      const r = await call(prov, "configure", { token: CHT, ...data });
      expect(r.statuscode, JSON.stringify(data).slice(0, 80)).toBe(1);
      expect(r.statusmsg).toMatch(why);
    }
    expect(readFileSync(conf, "utf8")).toBe(original);
    expect(existsSync(join(dir, "server.jwt"))).toBe(false);
  });

  it("configure refuses a sealed key that was tampered with", async () => {
    const { sealed, ecdhPublic } = sealForNode(Buffer.from("secret"), ecdh);
    const raw = Buffer.from(sealed, "base64");
    raw[20] = (raw[20] as number) ^ 0xff;
    const r = await call(prov, "configure", {
      token: CHT,
      config: newConfig(),
      key: raw.toString("base64"),
      ecdh_public: ecdhPublic,
    });
    expect(r.statusmsg).toMatch(/does not authenticate/);
  });

  it("bad input gets an answer and never takes the node down", async () => {
    const loose = looseDDL();
    const huge = JSON.stringify({ identity: "x".repeat(70_000) });
    const cases: [string, Record<string, unknown>, number][] = [
      ["configure", { token: CHT, config: huge }, 4],
      ["configure", { token: CHT, config: '{"a":{"b":1}}' }, 1],
      ["configure", { token: CHT, config: '{"identity":"x\\ny = z"}' }, 1],
      ["configure", { token: CHT, config: '{"bad key":"v"}' }, 1],
      ["configure", { token: CHT, config: "[1,2]" }, 4],
      ["configure", { token: CHT, config: "{}" }, 4],
      ["configure", { token: CHT, config: newConfig(), action_policies: "nope" }, 4],
      ["configure", { token: CHT, config: newConfig(), ssldir: "relative/dir", ca: "x" }, 4],
      ["configure", { token: CHT, config: newConfig(), ssldir: "/tmp/../etc" }, 1],
      ["restart", { token: CHT, splay: "abc" }, 4],
      ["gen25519", { token: 123, nonce: "x" }, 4],
      ["gen25519", { token: CHT, nonce: "x".repeat(65) }, 4],
      ["gencsr", { token: CHT, C: "Britain" }, 4],
      ["release_update", { token: CHT, repository: "https://x", version: "1" }, 5],
      ["release_update", { token: "wrong", repository: "https://x", version: "1" }, 1],
      ["nonsense", {}, 2],
      // Choria's DDL defaults the token to "": missing is the same as empty, refused
      ["jwt", {}, 1],
    ];
    for (const [action, data, status] of cases) {
      const r = await call(prov, action, data, { ddl: loose });
      expect(r.statuscode, `${action} ${JSON.stringify(data).slice(0, 60)}: ${r.statusmsg}`).toBe(status);
    }
    expect(servers).toHaveLength(1);
    const ping = await call(prov, "ping", {}, { agent: "rpcutil" });
    expect(ping.statuscode).toBe(0);
  });

  it("configure writes the credential, TLS files, policies and config, 0600 and atomically", async () => {
    const ca = await createCA("Test CA", 30);
    const leaf = await issueCert(ca, ID, { dns: [ID] }, 30, "both");
    const { sealed, ecdhPublic } = sealForNode(Buffer.from(leaf.keyPem), ecdh);
    const natsJwt = "aaa.bbb.ccc";
    const r = await call(prov, "configure", {
      token: CHT,
      config: newConfig(),
      server_jwt: serverJwt(),
      nats_jwt: natsJwt,
      certificate: leaf.certPem,
      ca: ca.certPem,
      key: sealed,
      ecdh_public: ecdhPublic,
      action_policies: {
        "rpcutil.policy": "policy default allow\n",
        "choria_provision.policy": "policy default allow\n",
      },
      opa_policies: { "default.rego": "package io.choria.mcorpc.authpolicy\n" },
    });
    expect(r.statuscode, r.statusmsg).toBe(0);
    expect(r.data.message).toMatch(/^Wrote \d+ bytes to /);
    const written = readFileSync(conf, "utf8");
    expect(written).toContain("plugin.choria.server.provision = false");
    expect(written).toContain(`plugin.security.choria.seed_file = ${join(dir, "server.seed")}`);
    expect(readFileSync(join(dir, "server.jwt.nats"), "utf8")).toBe(natsJwt);
    expect(readFileSync(join(dir, "ssl", "private.pem"), "utf8")).toBe(leaf.keyPem);
    expect(readFileSync(join(dir, "ssl", "certificate.pem"), "utf8")).toBe(leaf.certPem);
    expect(existsSync(join(dir, "ssl", "csr.pem"))).toBe(false);
    for (const f of [
      conf,
      join(dir, "server.jwt"),
      join(dir, "server.jwt.nats"),
      join(dir, "server.seed"),
      join(dir, "ssl", "private.pem"),
      join(dir, "ssl", "certificate.pem"),
      join(dir, "ssl", "ca.pem"),
      join(dir, "policies", "rpcutil.policy"),
      join(dir, "policies", "rego", "default.rego"),
    ]) {
      expect(mode(f), f).toBe(0o600);
    }
    // no temporary files left behind
    for (const d of [dir, join(dir, "ssl"), join(dir, "policies")])
      expect(readdirSync(d).filter((f) => f.endsWith(".tmp"))).toEqual([]);
    await waitFor(() =>
      events.find((e) => e.subject === "choria.lifecycle.event.provisioned.provision_mode_server"),
    );
  });

  it("restart brings the node back in normal mode with its new credential", async () => {
    const r = await call(prov, "restart", { token: CHT, splay: 0 });
    expect(r.statuscode, r.statusmsg).toBe(0);
    await waitFor(() => servers.length === 2);
    const s = current();
    expect(s.provisionMode).toBe(false);
    expect(s.identity).toBe(ID);
    expect(s.security.identity).toBe(ID);
    const fleet = client("admin", "mcollective");
    const ping = await fleet.request("rpcutil", "ping", {}, { nodes: [ID], verifyReplySignatures: true });
    expect(ping.replies.map((x) => [x.sender, x.statuscode])).toEqual([[ID, 0]]);
    // only reprovision is offered outside provisioning mode
    const gen = await call(fleet, "gen25519", { token: CHT, nonce: "x" });
    expect(gen.statusmsg).toMatch(/only available in provisioning mode/);
  });

  it("reprovision turns provisioning back on and restarts into it", async () => {
    const fleet = client("admin2", "mcollective");
    const wrong = await call(fleet, "reprovision", { token: "x" });
    expect(wrong.statuscode).toBe(1);
    const r = await call(fleet, "reprovision", { token: CHT });
    expect(r.statuscode, r.statusmsg).toBe(0);
    expect(readFileSync(conf, "utf8")).toMatch(/plugin\.choria\.server\.provision = true\n$/);
    await waitFor(() => servers.length === 3);
    expect(current().provisionMode).toBe(true);
    expect(await prov.discover()).toEqual([ID]);
  });

  it("shutdown ends the serve loop", async () => {
    const r = await call(prov, "shutdown", { token: CHT });
    expect(r.statuscode, r.statusmsg).toBe(0);
    expect(await loop).toBe("shutdown");
  });
});
