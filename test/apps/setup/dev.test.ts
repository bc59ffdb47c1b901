import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  brokerSettings,
  clientSettings,
  loadConfig,
  serverSettings,
} from "../../../src/core/config/index.js";
import { connectNats } from "../../../src/core/connector/index.js";
import { ChoriaSecurity } from "../../../src/core/security/index.js";
import { createDevSetup, SetupError } from "../../../src/apps/setup/index.js";
import { startSecureFleet, type SecureFleet } from "../../helpers/fleet.js";

function securityFor(configFile: string): ChoriaSecurity {
  const s = clientSettings(loadConfig(configFile));
  return new ChoriaSecurity({
    seedFile: s.seedFile,
    tokenFile: s.tokenFile,
    issuers: s.issuers,
    ...(s.caFile && { caFile: s.caFile }),
  });
}

describe("createDevSetup", () => {
  it("--brokers 3 writes three clustered broker configs and lists all of them to clients", async () => {
    const dir = mkdtempSync(join(tmpdir(), "chorus-setup-"));
    try {
      const s = await createDevSetup({ dir, brokers: 3, brokerPort: 14100, peerPort: 15100 });
      expect(s.brokerConfigs.map((c) => c.slice(dir.length + 1))).toEqual([
        "broker-1.conf",
        "broker-2.conf",
        "broker-3.conf",
      ]);
      expect(s.brokerConfig).toBe(s.brokerConfigs[0]);
      const b = s.brokerConfigs.map((c) => brokerSettings(loadConfig(c)));
      expect(b.map((x) => x.identity)).toEqual([1, 2, 3].map((n) => `broker-${n}.chorus.local`));
      expect(b.map((x) => x.clientPort)).toEqual([14100, 14101, 14102]);
      expect(b.map((x) => x.peerPort)).toEqual([15100, 15101, 15102]);
      expect(b[1]?.peers).toEqual(["nats://127.0.0.1:15100", "nats://127.0.0.1:15102"]);
      expect(new Set(b.map((x) => x.storeDir)).size).toBe(3);
      expect(b.every((x) => x.certFile === b[0]?.certFile && x.caFile)).toBe(true);
      const urls = [14100, 14101, 14102].map((p) => `tls://127.0.0.1:${p}`);
      expect(s.brokerUrls).toEqual(urls);
      expect(clientSettings(loadConfig(s.clientConfig)).middlewareHosts).toEqual(urls);
      expect(serverSettings(loadConfig(s.emulatorConfig)).middlewareHosts).toEqual(urls);
      await expect(createDevSetup({ dir, brokers: 0, force: true })).rejects.toThrow(
        /brokers must be between 1 and 9/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("writes configs that parse and tokens that verify against the new issuer", async () => {
    const dir = mkdtempSync(join(tmpdir(), "chorus-setup-"));
    try {
      const s = await createDevSetup({
        dir,
        brokerPort: 14999,
        serverIdentities: ["a.example", "b.example"],
      });
      const client = clientSettings(loadConfig(s.clientConfig));
      expect(client.issuers).toEqual([s.issuerPublic]);
      expect(client.middlewareHosts).toEqual(["tls://127.0.0.1:14999"]);
      const broker = brokerSettings(loadConfig(s.brokerConfig));
      expect(broker.clientPort).toBe(14999);
      expect(Object.keys(s.serverConfigs)).toEqual(["a.example", "b.example"]);
      for (const [identity, conf] of Object.entries(s.serverConfigs)) {
        const ss = serverSettings(loadConfig(conf));
        expect(ss.identity).toBe(identity);
        const sec = new ChoriaSecurity({
          seedFile: ss.seedFile,
          tokenFile: ss.tokenFile,
          issuers: ss.issuers,
        });
        expect(sec.verifyServerToken(sec.token).identity).toBe(identity);
      }
      const sec = securityFor(s.clientConfig);
      const claims = sec.verifyClientToken(sec.token);
      expect(claims.permissions?.fleet_management).toBe(true);
      // the everyday client may use Streams but not administer them; the admin client may
      expect(claims.permissions?.streams_user).toBe(true);
      expect(claims.permissions?.streams_admin).toBeFalsy();
      expect(s.adminClientConfig).toBe(join(dir, "admin-client.conf"));
      const admin = securityFor(s.adminClientConfig);
      const adminClaims = admin.verifyClientToken(admin.token);
      expect(adminClaims.permissions?.streams_admin).toBe(true);
      expect(adminClaims.permissions?.fleet_management).toBe(true);
      expect(adminClaims.callerid).not.toBe(claims.callerid);
      expect(admin.seedHex).not.toBe(sec.seedHex);
      expect(statSync(s.adminClient.seedFile).mode & 0o077).toBe(0);
      expect(existsSync(s.adminClient.natsJwtFile)).toBe(true);
      // secrets are private to the owner
      expect(statSync(s.issuerSeedFile).mode & 0o077).toBe(0);
      expect(statSync(s.client.seedFile).mode & 0o077).toBe(0);
      expect(statSync(join(dir, "nats-trust.json")).mode & 0o077).toBe(0);
      expect(existsSync(s.client.natsJwtFile)).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses to overwrite a non-empty directory without force", async () => {
    const dir = mkdtempSync(join(tmpdir(), "chorus-setup-"));
    try {
      writeFileSync(join(dir, "keep.txt"), "mine");
      await expect(createDevSetup({ dir })).rejects.toBeInstanceOf(SetupError);
      expect(readFileSync(join(dir, "keep.txt"), "utf8")).toBe("mine");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("dev setup against a supervised broker", () => {
  let fleet: SecureFleet;
  beforeAll(async () => {
    fleet = await startSecureFleet();
  });
  afterAll(async () => {
    await fleet?.stop();
  });

  it("lets the client publish a request over TLS that a server's NATS user receives", async () => {
    const conn = (configFile: string, name: string) => {
      const sec = securityFor(configFile);
      return connectNats({
        servers: [fleet.setup.brokerUrl],
        name,
        caFile: fleet.setup.caFile,
        natsJwt: sec.natsJwt as string,
        seedHex: sec.seedHex,
      });
    };
    const server = await conn(Object.values(fleet.setup.serverConfigs)[0] as string, "test-server");
    const client = await conn(fleet.setup.clientConfig, "test-client");
    try {
      const sub = server.subscribe("mcollective.broadcast.agent.rpcutil", { max: 1 });
      await server.flush();
      client.publish("mcollective.broadcast.agent.rpcutil", "hello");
      for await (const m of sub) expect(m.string()).toBe("hello");
      expect(client.info?.tls_required).toBe(true);
    } finally {
      await client.close();
      await server.close();
    }
  });

  it("rejects a connection without credentials", async () => {
    await expect(
      connectNats({
        servers: [fleet.setup.brokerUrl],
        name: "anon",
        caFile: fleet.setup.caFile,
        reconnect: false,
      }),
    ).rejects.toThrow();
  });
});
