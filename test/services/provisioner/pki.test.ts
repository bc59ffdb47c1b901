// The pki flow: the node's CSR signed by a core/ca store, or a helper's certificate and
// key (the key sealed to the node's ECDH key on the way).
import { X509Certificate } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { CertificateAuthority } from "../../../src/core/ca/index.js";
import { createCA, issueCert } from "../../../src/core/security/index.js";
import type { ProvisionerService } from "../../../src/services/provisioner/index.js";
import { provisioningFixture, type ProvisioningFixture } from "./fixture.js";

let fx: ProvisioningFixture;
let running: ProvisionerService[] = [];
let caDir: string;

beforeAll(async () => {
  fx = await provisioningFixture();
  caDir = join(fx.fleet.setup.dir, "node-ca");
  await CertificateAuthority.init(caDir, {
    algorithm: "rsa",
    cn: "Chorus test node CA",
    rootValidityDays: 365,
    intermediateValidityDays: 180,
  });
});
afterAll(async () => {
  await fx?.stop();
});
afterEach(async () => {
  for (const p of running) await p.stop();
  running = [];
  await fx.purgeQueue();
});

async function provisioner(over: Record<string, unknown>): Promise<ProvisionerService> {
  const p = await fx.provisioner(over);
  running.push(p);
  return p;
}

describe("provisioner pki flow", () => {
  it("without a helper, signs the node's CSR with the ca store and sends certificate and chain", async () => {
    const p = await provisioner({
      features: { pki: true, ed25519: true },
      ca: caDir,
      certificate_validity: "30d",
      helper: undefined,
      default_configuration: { "plugin.security.choria.ca": fx.fleet.setup.caFile },
    });
    const node = await fx.node("pki1.example.net");
    await node.whenNormal();
    const cfg = node.config();
    const certFile = cfg["plugin.security.choria.certificate"] as string;
    expect(certFile).toMatch(/ssl\/certificate\.pem$/);
    expect(cfg["plugin.security.choria.key"]).toMatch(/ssl\/private\.pem$/);
    const cert = new X509Certificate(readFileSync(certFile));
    expect(cert.subject).toBe("CN=pki1.example.net");
    expect(Date.parse(cert.validTo) - Date.now()).toBeLessThanOrEqual(30 * 86_400_000);
    expect(cert.subjectAltName).toBe("DNS:pki1.example.net");
    const chain = readFileSync(join(certFile, "..", "ca.pem"), "utf8");
    expect(cert.checkIssued(new X509Certificate(chain))).toBe(true);
    expect(node.calls.gencsr).toBe(1);
    expect((await (await CertificateAuthority.open(caDir)).list()).length).toBe(1);
    expect(await p.metrics.value("choria_provisioner_provisioned")).toBe(1);
  });

  it("sends a helper's certificate and its key sealed to the node", async () => {
    const ca = await createCA("helper CA", 30);
    const leaf = await issueCert(ca, "pki2.example.net", { dns: ["pki2.example.net"] }, 30, "both");
    const extras = join(fx.fleet.setup.dir, "pki2-extras.json");
    writeFileSync(extras, JSON.stringify({ certificate: leaf.certPem, ca: ca.certPem, key: leaf.keyPem }));
    const helper = join(fx.fleet.setup.dir, "helper-pki.mjs");
    writeFileSync(
      helper,
      `#!/usr/bin/env node
       import { readFileSync } from "node:fs";
       const input = JSON.parse(readFileSync(0, "utf8"));
       if (!input.csr || !input.csr.csr.includes("CERTIFICATE REQUEST")) { process.stdout.write('{"defer":true}'); process.exit(0); }
       const extras = JSON.parse(readFileSync(${JSON.stringify(extras)}, "utf8"));
       process.stdout.write(JSON.stringify({
         ...extras,
         configuration: {
           collectives: "mcollective",
           "plugin.security.choria.ca": ${JSON.stringify(fx.fleet.setup.caFile)},
         },
       }));`,
      { mode: 0o755 },
    );
    await provisioner({ features: { pki: true, ed25519: true }, helper });
    const node = await fx.node("pki2.example.net");
    await node.whenNormal();
    const cfg = node.config();
    const keyFile = cfg["plugin.security.choria.key"] as string;
    // the node opened the sealed key: the helper's key is on disk, matching its certificate
    expect(readFileSync(keyFile, "utf8")).toBe(leaf.keyPem);
    expect(readFileSync(cfg["plugin.security.choria.certificate"] as string, "utf8")).toBe(leaf.certPem);
    expect(existsSync(join(keyFile, "..", "csr.pem"))).toBe(false);
  });
});
