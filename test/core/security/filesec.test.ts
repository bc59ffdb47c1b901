import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  FileSecurity,
  SecurityError,
  createCA,
  issueCert,
  type CertPair,
} from "../../../src/core/security/index.js";

const dir = mkdtempSync(join(tmpdir(), "chorus-filesec-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function files(name: string, p: CertPair, ca: CertPair) {
  const certFile = join(dir, `${name}.pem`);
  const keyFile = join(dir, `${name}.key`);
  const caFile = join(dir, `${name}-ca.pem`);
  writeFileSync(certFile, p.certPem);
  writeFileSync(keyFile, p.keyPem, { mode: 0o600 });
  writeFileSync(caFile, ca.certPem);
  return { certFile, keyFile, caFile };
}

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SecurityError);
    return (err as SecurityError).code;
  }
  return "no error";
}

describe("FileSecurity (x509, protocol v1)", () => {
  let ca: CertPair;
  let other: CertPair;
  let node: FileSecurity;
  let alice: FileSecurity;
  let certs: Record<string, CertPair>;

  beforeAll(async () => {
    ca = await createCA("test ca", 30);
    other = await createCA("other ca", 30);
    const day = 86_400_000;
    const rsa = { rsa: true };
    certs = {
      node: await issueCert(ca, "node1.mcollective", {}, 30, "both", rsa),
      alice: await issueCert(ca, "alice.mcollective", {}, 30, "client", rsa),
      aaa: await issueCert(ca, "aaa.privileged.mcollective", {}, 30, "client", rsa),
      foreign: await issueCert(other, "alice.mcollective", {}, 30, "client", rsa),
      expired: await issueCert(ca, "old.mcollective", {}, 30, "client", {
        rsa: true,
        notBefore: new Date(Date.now() - 10 * day),
        notAfter: new Date(Date.now() - day),
      }),
      serverOnly: await issueCert(ca, "srv.mcollective", {}, 30, "server", rsa),
      outsider: await issueCert(ca, "bob.example.com", {}, 30, "client", rsa),
      ecdsa: await issueCert(ca, "ec.mcollective", {}, 30, "client"),
    };
    node = new FileSecurity(files("node", certs.node as CertPair, ca));
    alice = new FileSecurity(files("alice", certs.alice as CertPair, ca));
  }, 60_000);

  it("names callers choria=<CN> and signs with RSA PKCS#1 v1.5 that peers verify", () => {
    expect(alice.certname).toBe("alice.mcollective");
    expect(alice.callerId).toBe("choria=alice.mcollective");
    const data = Buffer.from('{"x":1}');
    const sig = alice.sign(data);
    expect(sig.length).toBe(256);
    expect(node.verifySignature(alice.certPem, data, sig)).toBe(true);
    expect(node.verifySignature(alice.certPem, Buffer.from('{"x":2}'), sig)).toBe(false);
    expect(node.verifyCaller(alice.callerId, alice.certPem)).toMatchObject({
      certname: "alice.mcollective",
      privileged: false,
    });
  });

  it("refuses every forged or unsuitable certificate with a code a counter can use", () => {
    const pem = (k: string) => (certs[k] as CertPair).certPem;
    expect(code(() => node.verifyCaller("choria=alice.mcollective", pem("foreign")))).toBe("untrusted");
    expect(code(() => node.verifyCaller("choria=old.mcollective", pem("expired")))).toBe("expired");
    expect(code(() => node.verifyCaller("choria=srv.mcollective", pem("serverOnly")))).toBe("untrusted");
    expect(code(() => node.verifyCaller("choria=bob.mcollective", pem("alice")))).toBe("caller_mismatch");
    expect(code(() => node.verifyCaller("choria=bob.example.com", pem("outsider")))).toBe("not_allowed");
    expect(code(() => node.verifyCaller("no caller", pem("alice")))).toBe("caller_mismatch");
    expect(code(() => node.verifyCaller("choria=ec.mcollective", pem("ecdsa")))).toBe("bad_key");
    expect(code(() => node.verifyCaller("choria=x.mcollective", "not a pem"))).toBe("malformed");
    expect(code(() => node.verifyCaller("choria=x.mcollective", "x".repeat(70_000)))).toBe("malformed");
  });

  it("lets a privileged certificate act as any caller, as go-choria does", () => {
    const v = node.verifyCaller("choria=someone.mcollective", (certs.aaa as CertPair).certPem);
    expect(v).toMatchObject({ certname: "someone.mcollective", privileged: true });
  });

  it("checks a caller's chain once per certificate, not once per request", () => {
    const before = node.stats.chainChecks;
    for (let i = 0; i < 50; i++) node.verifyCaller(alice.callerId, alice.certPem);
    expect(node.stats.chainChecks - before).toBeLessThanOrEqual(1);
  });

  it("refuses to start with an identity that is not its certificate's, a foreign key, or a non-RSA key", async () => {
    const f = files("node", certs.node as CertPair, ca);
    expect(code(() => new FileSecurity({ ...f, identity: "node2.mcollective" }))).toBe("name_mismatch");
    const a = files("alice", certs.alice as CertPair, ca);
    expect(code(() => new FileSecurity({ ...f, keyFile: a.keyFile }))).toBe("bad_key");
    const e = files("ec", certs.ecdsa as CertPair, ca);
    expect(code(() => new FileSecurity(e))).toBe("bad_key");
    expect(code(() => new FileSecurity({ ...f, caFile: join(dir, "missing.pem") }))).toBe("io");
    expect(code(() => new FileSecurity({ ...f, privilegedUsers: ["("] }))).toBe("malformed");
  });
});
