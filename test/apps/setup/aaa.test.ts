import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import bcrypt from "bcrypt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDevSetup, type DevSetup } from "../../../src/apps/setup/index.js";
import { BrokerSupervisor, brokerSettings } from "../../../src/broker/index.js";
import { clientSettings, loadConfig } from "../../../src/core/config/index.js";
import { connectNats } from "../../../src/core/connector/index.js";
import { replyPrefix } from "../../../src/core/protocol/index.js";
import { freePort } from "../../helpers/nats.js";
import {
  ChoriaSecurity,
  createClientToken,
  decodeTokenUnverified,
  generateKeyPair,
  loadSeedFile,
  verifyToken,
  type ClientClaims,
  type Issuer,
} from "../../../src/core/security/index.js";

let dir: string;
let s: DevSetup;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "chorus-setup-aaa-"));
  s = await createDevSetup({ dir, brokerPort: await freePort(), aaa: true, aaaPort: 18443, streams: false });
}, 60_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

const mode = (p: string) => statSync(p).mode & 0o777;
const text = (p: string) => readFileSync(p, "utf8").trim();

describe("setup dev --aaa", () => {
  it("writes every secret with mode 0600", () => {
    const a = s.aaa!;
    for (const p of [
      a.serviceConfig,
      a.usersFile,
      a.passwordFile,
      a.chainIssuerSeedFile,
      a.chainIssuerTokenFile,
      a.signer.seedFile,
      a.signer.tokenFile,
      a.keyFile,
      a.userSeedFile,
      `${a.userTokenFile}.nats`,
    ]) {
      expect([p, mode(p)]).toEqual([p, 0o600]);
    }
  });

  it("has one admin user whose stored hash matches the printed password", async () => {
    const a = s.aaa!;
    expect(text(a.passwordFile)).toBe(a.password);
    expect(a.password.length).toBeGreaterThanOrEqual(20);
    const users = JSON.parse(readFileSync(a.usersFile, "utf8")) as Record<string, unknown>[];
    expect(users).toHaveLength(1);
    const u = users[0]!;
    expect(u.username).toBe("admin");
    expect(u.password).not.toContain(a.password);
    expect(await bcrypt.compare(a.password, String(u.password))).toBe(true);
    expect(await bcrypt.compare("not-it", String(u.password))).toBe(false);
    expect(u.broker_permissions).toMatchObject({ signed_fleet_management: true });
    expect((u.broker_permissions as Record<string, unknown>).fleet_management).toBeUndefined();
  });

  it("the chain issuer's tokens verify against the org issuer", () => {
    const a = s.aaa!;
    const chainToken = text(a.chainIssuerTokenFile);
    const claims = verifyToken(chainToken, [s.issuerPublic]) as ClientClaims;
    expect(claims.permissions?.authentication_delegator).toBe(true);
    const kp = loadSeedFile(a.chainIssuerSeedFile);
    expect(claims.public_key).toBe(kp.publicHex);
    // what the authenticator does with these two files: issue a user token nodes trust
    const chain: Issuer = {
      ...kp,
      kind: "chain",
      jti: claims.jti as string,
      tcs: claims.tcs as string,
      issexp: claims.exp as number,
      token: chainToken,
    };
    const user = generateKeyPair();
    const userToken = createClientToken(
      {
        callerid: "up=admin",
        publicKeyHex: user.publicHex,
        validityS: 3600,
        permissions: { signed_fleet_management: true },
      },
      chain,
    );
    expect((verifyToken(userToken, [s.issuerPublic]) as ClientClaims).callerid).toBe("up=admin");
  });

  it("the signer's credential is an authentication delegator", () => {
    const a = s.aaa!;
    const sec = new ChoriaSecurity({
      seedFile: a.signer.seedFile,
      tokenFile: a.signer.tokenFile,
      issuers: [s.issuerPublic],
    });
    expect(sec.verifySignerToken(sec.token).callerid).toBe("aaa=signer");
    // a delegator cannot make fleet requests of its own
    expect(() => sec.verifyClientToken(sec.token)).toThrow();
  });

  it("the HTTPS certificate is issued by the setup's CA for loopback", () => {
    const a = s.aaa!;
    const cert = new X509Certificate(readFileSync(a.certFile));
    const ca = new X509Certificate(readFileSync(s.caFile));
    expect(cert.verify(ca.publicKey)).toBe(true);
    expect(cert.checkIP("127.0.0.1")).toBe("127.0.0.1");
    expect(cert.checkHost("localhost")).toBe("localhost");
  });

  it("the service config names the files and trust above", () => {
    const a = s.aaa!;
    const c = JSON.parse(readFileSync(a.serviceConfig, "utf8")) as Record<string, unknown>;
    expect(c.port).toBe(18443);
    expect(c.authenticator).toBe("userlist");
    expect(c.authorizer).toBe("actionlist");
    expect(c.signer).toBe("basicjwt");
    expect(c.tls_certificate).toBe(a.certFile);
    expect(c.tls_key).toBe(a.keyFile);
    // clients have no certificates in a dev setup, so no mutual TLS
    expect(c.tls_ca).toBeUndefined();
    expect(c.basicjwt_signer).toMatchObject({
      signing_certificate: s.issuerPublic,
      signing_token: a.signer.tokenFile,
      signing_seed: a.signer.seedFile,
      max_validity: "8h",
    });
    expect(c.userlist_authenticator).toMatchObject({
      users_file: a.usersFile,
      signing_key: a.chainIssuerSeedFile,
      signing_token: a.chainIssuerTokenFile,
      validity: "8h",
    });
    expect(clientSettings(loadConfig(String(c.choria_config))).tokenFile).toBe(a.signer.tokenFile);
  });

  it("aaa-client.conf logs in and signs through the service", () => {
    const a = s.aaa!;
    const c = clientSettings(loadConfig(a.clientConfig));
    expect(c.loginUrls).toEqual(["https://127.0.0.1:18443/choria/v1/login"]);
    expect(c.requestSigner).toEqual({
      url: "https://127.0.0.1:18443/choria/v1/sign",
      service: false,
      tokenFile: a.userTokenFile,
      seedFile: a.userSeedFile,
    });
    expect(c.tokenFile).toBe(a.userTokenFile);
    expect(c.seedFile).toBe(a.userSeedFile);
    expect(c.caFile).toBe(s.caFile);
    // the broker user for the login key exists ahead of the first login
    const nats = decodeTokenUnverified(text(`${a.userTokenFile}.nats`)) as Record<string, unknown>;
    expect(nats.name).toBe("up=admin");
  });
});

describe("setup dev --aaa with its broker", () => {
  it("the broker admits the login key as up=admin before any token exists", async () => {
    const a = s.aaa!;
    const broker = new BrokerSupervisor({ settings: brokerSettings(loadConfig(s.brokerConfig)) });
    await broker.start();
    try {
      const c = clientSettings(loadConfig(a.clientConfig));
      const nc = await connectNats({
        servers: c.middlewareHosts,
        name: "aaa user",
        inboxPrefix: replyPrefix("mcollective", "up=admin"),
        seedHex: loadSeedFile(a.userSeedFile).seedHex,
        natsJwt: text(`${a.userTokenFile}.nats`),
        caFile: s.caFile,
        reconnect: false,
      });
      try {
        // connected means the broker accepted the pre-issued user for this key
        await nc.flush();
        expect(nc.isClosed()).toBe(false);
      } finally {
        await nc.close();
      }
    } finally {
      await broker.stop();
    }
  }, 60_000);
});
