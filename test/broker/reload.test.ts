// Reloading a running broker (SIGHUP): a rotated certificate is served without dropping
// connections; what only a restart can change, and broken files, are refused while the
// broker runs on unchanged.
import { spawn } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { appendFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect as netConnect } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { brokerSettings } from "../../src/broker/index.js";
import { loadConfig } from "../../src/core/config/index.js";
import { closeNats, connectNats, type NatsConnection } from "../../src/core/connector/index.js";
import { issueCert, loadSeedFile } from "../../src/core/security/index.js";
import { startSecureFleet, type SecureFleet } from "../helpers/fleet.js";
import { freePort } from "../helpers/nats.js";

const BIN = fileURLToPath(new URL("../../bin/chorus.js", import.meta.url));
let fleet: SecureFleet;
let nc: NatsConnection;

/** The serial of the certificate the broker presents now (nats-server sends INFO in plain text first). */
function servedSerialAfterInfo(port: number, ca: string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const raw = netConnect(port, "127.0.0.1");
    raw.once("error", reject);
    raw.once("data", () => {
      const s = tlsConnect({ socket: raw, ca, servername: "localhost" }, () => {
        const serial = s.getPeerCertificate().serialNumber;
        s.end();
        resolve(serial.toUpperCase());
      });
      s.once("error", reject);
    });
  });
}

/** Whether a flush round trip succeeds within `ms` (retrying while the client reconnects). */
async function flushWithin(c: NatsConnection, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    try {
      await c.flush();
      return true;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return false;
}

async function rotateBrokerCert(): Promise<string> {
  const tls = join(fleet.setup.dir, "tls");
  const ca = {
    certPem: readFileSync(join(tls, "ca.pem"), "utf8"),
    keyPem: readFileSync(join(tls, "ca.key"), "utf8"),
  };
  const next = await issueCert(ca, "broker", { localhost: true }, 30, "both");
  writeFileSync(join(tls, "broker.pem"), next.certPem);
  writeFileSync(join(tls, "broker.key"), next.keyPem, { mode: 0o600 });
  return new X509Certificate(next.certPem).serialNumber.toUpperCase();
}

beforeAll(async () => {
  fleet = await startSecureFleet({ streams: false });
  const s = fleet.setup;
  nc = await connectNats({
    servers: [fleet.broker.clientUrl],
    name: "reload-watcher",
    caFile: s.caFile,
    seedHex: loadSeedFile(join(s.dir, "credentials", "client.seed")).seedHex,
    natsJwt: readFileSync(join(s.dir, "credentials", "client.jwt.nats"), "utf8").trim(),
  });
}, 60_000);

afterAll(async () => {
  if (nc) await closeNats(nc);
  await fleet?.stop();
});

const serialNow = () =>
  servedSerialAfterInfo(fleet.broker.settings.clientPort, readFileSync(fleet.setup.caFile, "utf8"));

describe("broker reload", () => {
  it("serves a rotated certificate after reload, and a connection made before it is usable again", async () => {
    const before = await serialNow();
    const rotated = await rotateBrokerCert();
    expect(rotated).not.toBe(before);
    // nats-server keeps the old certificate until told
    expect(await serialNow()).toBe(before);
    const r = await fleet.broker.reload(brokerSettings(loadConfig(fleet.setup.brokerConfig)));
    expect(r).toEqual({ reloaded: true });
    expect(await serialNow()).toBe(rotated);
    // nats-server re-checks each client against the reloaded accounts (its clients may be
    // dropped and reconnect at once): the connection made before is usable again shortly
    expect(nc.isClosed()).toBe(false);
    expect(await flushWithin(nc, 5000)).toBe(true);
  });

  it("refuses a change only a restart can make, and keeps serving as before", async () => {
    const port = await freePort();
    const conf = join(fleet.setup.dir, "moved.conf");
    writeFileSync(conf, readFileSync(fleet.setup.brokerConfig, "utf8"));
    appendFileSync(conf, `\nplugin.choria.network.client_port = ${port}\n`);
    const r = await fleet.broker.reload(brokerSettings(loadConfig(conf)));
    expect(r.reloaded).toBe(false);
    expect(r.reason).toMatch(/only a restart can change clientPort/);
    expect(fleet.broker.up).toBe(true);
    expect(await flushWithin(nc, 5000)).toBe(true);
  });

  it("refuses a key that is not the certificate's: the old certificate is still served", async () => {
    const before = await serialNow();
    const tls = join(fleet.setup.dir, "tls");
    const goodKey = readFileSync(join(tls, "broker.key"), "utf8");
    writeFileSync(join(tls, "broker.key"), readFileSync(join(tls, "ca.key"), "utf8"));
    try {
      const r = await fleet.broker.reload(brokerSettings(loadConfig(fleet.setup.brokerConfig)));
      expect(r.reloaded).toBe(false);
      expect(r.reason).toMatch(/key/);
      expect(await serialNow()).toBe(before);
      expect(await flushWithin(nc, 5000)).toBe(true);
    } finally {
      writeFileSync(join(tls, "broker.key"), goodKey, { mode: 0o600 });
    }
  });

  it("chorus broker run reloads on SIGHUP and keeps running", async () => {
    // a second broker on its own ports, as a user runs it
    const port = await freePort();
    const conf = join(fleet.setup.dir, "second.conf");
    writeFileSync(
      conf,
      readFileSync(fleet.setup.brokerConfig, "utf8") +
        `\nplugin.choria.network.client_port = ${port}\nplugin.choria.network.runtime_dir = ${join(fleet.setup.dir, "second-run")}\n`,
    );
    const child = spawn(process.execPath, [BIN, "broker", "run", "--config", conf], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    const seen = (re: RegExp, ms = 20_000) =>
      new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no ${re} in: ${out}`)), ms);
        const check = () => {
          if (re.test(out)) {
            clearTimeout(t);
            resolve();
          }
        };
        child.stdout.on("data", (d: Buffer) => ((out += d.toString()), check()));
        child.stderr.on("data", (d: Buffer) => ((out += d.toString()), check()));
        check();
      });
    try {
      await seen(/broker ready/);
      child.kill("SIGHUP");
      await seen(/"msg":"configuration reloaded"/);
      expect(child.exitCode).toBe(null);
    } finally {
      const done = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await done;
    }
  }, 40_000);
});
