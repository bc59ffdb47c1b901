import { X509Certificate, createPrivateKey, createPublicKey } from "node:crypto";
import { describe, expect, it } from "vitest";
import { createCA, issueCert, LOCALHOST_SANS } from "../../../src/core/security/index.js";

describe("x509 dev CA", () => {
  it("creates a CA and server/client certs that chain to it", async () => {
    const ca = await createCA("Chorus Dev CA", 30);
    const caCert = new X509Certificate(ca.certPem);
    expect(caCert.ca).toBe(true);
    expect(caCert.subject).toBe("CN=Chorus Dev CA");
    expect(caCert.verify(caCert.publicKey)).toBe(true);
    expect(createPrivateKey(ca.keyPem).asymmetricKeyDetails?.namedCurve).toBe("prime256v1");

    const srv = await issueCert(
      ca,
      "broker.example",
      { dns: [...LOCALHOST_SANS.dns, "broker.example"], ip: [...LOCALHOST_SANS.ip] },
      10,
      "server",
    );
    const cert = new X509Certificate(srv.certPem);
    expect(cert.ca).toBe(false);
    expect(cert.checkIssued(caCert)).toBe(true);
    expect(cert.verify(caCert.publicKey)).toBe(true);
    expect(cert.subjectAltName).toContain("DNS:localhost");
    expect(cert.subjectAltName).toContain("DNS:broker.example");
    expect(cert.subjectAltName).toContain("IP Address:127.0.0.1");
    expect(cert.subjectAltName).toMatch(/IP Address:0:0:0:0:0:0:0:1|IP Address:::1/);
    expect(cert.checkHost("localhost")).toBe("localhost");
    expect(cert.checkIP("127.0.0.1")).toBe("127.0.0.1");
    expect(cert.keyUsage).toEqual(["1.3.6.1.5.5.7.3.1"]);
    expect(new Date(cert.validTo).getTime()).toBeGreaterThan(Date.now() + 9 * 86_400_000);
    // the key belongs to the certificate
    expect(createPublicKey(srv.keyPem).export({ format: "jwk" })).toEqual(
      cert.publicKey.export({ format: "jwk" }),
    );

    const cli = new X509Certificate((await issueCert(ca, "alice", {}, 1, "client")).certPem);
    expect(cli.keyUsage).toEqual(["1.3.6.1.5.5.7.3.2"]);
    expect(cli.subjectAltName).toBeUndefined();
    const both = new X509Certificate((await issueCert(ca, "n1", { dns: ["n1"] }, 1, "both")).certPem);
    expect(both.keyUsage?.sort()).toEqual(["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]);

    const local = new X509Certificate(
      (await issueCert(ca, "b", { dns: ["b.example", "localhost"], localhost: true }, 1, "server")).certPem,
    );
    expect(local.subjectAltName?.split(", ").sort()).toEqual(
      ["DNS:b.example", "DNS:localhost", "IP Address:127.0.0.1", "IP Address:0:0:0:0:0:0:0:1"].sort(),
    );

    const other = await createCA("Other", 1);
    expect(cert.checkIssued(new X509Certificate(other.certPem))).toBe(false);
  });

  it("refuses a CA key it cannot use", async () => {
    const ca = await createCA("x", 1);
    await expect(issueCert({ ...ca, keyPem: "junk" }, "y", {}, 1, "server")).rejects.toMatchObject({
      code: "bad_key",
    });
  });
});
