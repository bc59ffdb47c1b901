import { X509Certificate, webcrypto } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chorus, chorusAsync } from "../../helpers/cli.js";

// @peculiar/x509 is typed against the DOM Crypto; node's webcrypto is the same API
const crypto = webcrypto as unknown as NonNullable<
  Parameters<typeof x509.X509CertificateGenerator.create>[1]
>;

async function makeCsr(cn: string, rsa = false): Promise<string> {
  const gen = rsa
    ? {
        name: "RSASSA-PKCS1-v1_5",
        hash: "SHA-256",
        modulusLength: 2048,
        publicExponent: new Uint8Array([1, 0, 1]),
      }
    : { name: "Ed25519" };
  const keys = (await webcrypto.subtle.generateKey(gen, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create(
    {
      name: `CN=${cn}`,
      keys,
      signingAlgorithm: rsa ? { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" } : { name: "Ed25519" },
    },
    crypto,
  );
  return csr.toString("pem");
}

interface Listed {
  serial: string;
  subject: string;
  status: string;
  sans: { dns?: string[]; ip?: string[] };
  notAfter: string;
  reason?: string;
}

describe("chorus ca", () => {
  let tmp: string;
  let dir: string;
  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), "chorus-ca-cli-"));
    dir = join(tmp, "ca");
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it("init, sign (file and stdin), list, revoke, crl and verify", async () => {
    const init = chorus(["ca", "init", "--dir", dir, "--algorithm", "ed25519", "--cn", "Fleet CA"]);
    expect(init.stderr).toBe("");
    expect(init.status).toBe(0);
    expect(init.stdout).toContain(`Created an ed25519 certificate authority in ${dir}`);
    expect(init.stdout).toContain("root.key can be moved offline");
    expect(statSync(join(dir, "intermediate.key")).mode & 0o777).toBe(0o600);

    const csrFile = join(tmp, "web.csr");
    writeFileSync(csrFile, await makeCsr("web.example.net", true));
    const signed = chorus([
      "ca",
      "sign",
      csrFile,
      "--dir",
      dir,
      "--san",
      "web.example.net",
      "--san",
      "ip:192.0.2.7",
      "--san",
      "uri:spiffe://example.net/web",
      "--validity",
      "30",
      "--usage",
      "server",
      "--out",
      join(tmp, "web.pem"),
      "--chain",
      join(tmp, "chain.pem"),
    ]);
    expect(signed.stderr).toMatch(/^signed serial [0-9a-f]{32}, valid until /);
    expect(signed.status).toBe(0);
    expect(signed.stdout).toBe("");
    const leaf = new X509Certificate(readFileSync(join(tmp, "web.pem")));
    const chain = readFileSync(join(tmp, "chain.pem"), "utf8");
    const [inter, root] = [
      ...chain.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g),
    ].map((m) => new X509Certificate(m[0])) as [X509Certificate, X509Certificate];
    expect(root.subject).toBe("CN=Fleet CA");
    expect(leaf.verify(inter.publicKey) && inter.verify(root.publicKey)).toBe(true);
    expect(leaf.subjectAltName).toBe(
      "DNS:web.example.net, IP Address:192.0.2.7, URI:spiffe://example.net/web",
    );
    expect(leaf.keyUsage).toEqual(["1.3.6.1.5.5.7.3.1"]);

    // the CSR on stdin, the certificate on stdout
    const piped = await chorusAsync(
      ["ca", "sign", "--dir", dir],
      {},
      30_000,
      await makeCsr("db.example.net"),
    );
    expect(piped.status).toBe(0);
    const db = new X509Certificate(piped.stdout);
    expect(db.subject).toBe("CN=db.example.net");
    expect(db.subjectAltName).toBe("DNS:db.example.net");

    const table = chorus(["ca", "list", "--dir", dir]);
    expect(table.status).toBe(0);
    const lines = table.stdout.split("\n");
    expect(lines[0]).toMatch(/^SERIAL\s+STATUS\s+NOT AFTER\s+SUBJECT\s+SANS$/);
    expect(lines[1]).toMatch(
      /^[0-9a-f]{32}\s+valid\s+\d{4}-\d\d-\d\d\s+CN=web\.example\.net\s+web\.example\.net,ip:192\.0\.2\.7,uri:spiffe/,
    );
    expect(table.stdout).toContain("2 certificates, 0 revoked");

    const listed = JSON.parse(chorus(["ca", "list", "--dir", dir, "--json"]).stdout) as Listed[];
    expect(listed.map((c) => c.subject)).toEqual(["CN=web.example.net", "CN=db.example.net"]);
    const web = listed[0] as Listed;
    expect(web.sans).toEqual({
      dns: ["web.example.net"],
      ip: ["192.0.2.7"],
      uri: ["spiffe://example.net/web"],
    });
    expect(web.serial.toUpperCase()).toBe(leaf.serialNumber);
    expect(Math.abs(Date.parse(web.notAfter) - Date.parse(leaf.validTo))).toBeLessThan(1000);

    expect(chorus(["ca", "verify", join(tmp, "web.pem"), "--dir", dir]).status).toBe(0);
    const rev = chorus(["ca", "revoke", web.serial.toUpperCase(), "--dir", dir, "--reason", "superseded"]);
    expect(rev.status).toBe(0);
    expect(rev.stdout).toBe(`revoked ${web.serial} (CN=web.example.net), reason superseded\n`);
    const again = chorus(["ca", "revoke", web.serial, "--dir", dir]);
    expect(again.status).toBe(1);
    expect(again.stderr).toMatch(/^chorus ca revoke: certificate [0-9a-f]+ was revoked at /);

    const after = JSON.parse(chorus(["ca", "list", "--dir", dir, "--json"]).stdout) as Listed[];
    expect(after.map((c) => [c.status, c.reason])).toEqual([
      ["revoked", "superseded"],
      ["valid", undefined],
    ]);
    expect(chorus(["ca", "list", "--dir", dir]).stdout).toContain("2 certificates, 1 revoked");

    const verify = chorus(["ca", "verify", join(tmp, "web.pem"), "--dir", dir]);
    expect(verify.status).toBe(1);
    expect(verify.stderr).toMatch(/^chorus ca verify: .*web\.pem: revoked: revoked at /);

    const crl = chorus(["ca", "crl", "--dir", dir]);
    expect(crl.status).toBe(0);
    expect(crl.stdout).toMatch(/^-----BEGIN X509 CRL-----/);
    const parsed = new x509.X509Crl(crl.stdout);
    expect(await parsed.verify({ publicKey: new x509.X509Certificate(inter.raw) }, crypto)).toBe(true);
    expect(parsed.entries.map((e) => e.serialNumber)).toEqual([web.serial]);
    expect(parsed.findRevoked(web.serial)?.reason).toBe(x509.X509CrlReason.superseded);
    expect(chorus(["ca", "crl", "--dir", dir, "--out", join(tmp, "crl.pem")]).status).toBe(0);
    expect(readFileSync(join(tmp, "crl.pem"), "utf8")).toMatch(/^-----BEGIN X509 CRL-----/);
  }, 60_000);

  it("refuses by policy and bad input with one line and exit 1", async () => {
    const strict = join(tmp, "strict");
    const init = chorus([
      "ca",
      "init",
      "--dir",
      strict,
      "--algorithm",
      "ed25519",
      "--allow",
      "\\.example\\.net$",
      "--no-default-deny",
      "--max-validity",
      "60",
    ]);
    expect(init.status).toBe(0);
    expect(init.stdout).toContain("denied names: none");
    expect(init.stdout).toContain("max validity: 60 days");

    const denied = await chorusAsync(
      ["ca", "sign", "--dir", dir],
      {},
      30_000,
      await makeCsr("ops.privileged.choria"),
    );
    expect(denied.status).toBe(1);
    expect(denied.stderr).toBe(
      'chorus ca sign: name "ops.privileged.choria" is denied by the CA policy (\\.privileged.choria$)\n',
    );
    const other = await chorusAsync(
      ["ca", "sign", "--dir", strict],
      {},
      30_000,
      await makeCsr("a.example.org"),
    );
    expect(other.status).toBe(1);
    expect(other.stderr).toBe('chorus ca sign: name "a.example.org" is not allowed by the CA policy\n');
    const long = await chorusAsync(
      ["ca", "sign", "--dir", strict, "--validity", "61"],
      {},
      30_000,
      await makeCsr("a.example.net"),
    );
    expect(long.stderr).toBe("chorus ca sign: validity of 61 days exceeds the CA policy's maximum of 60\n");
    expect(long.status).toBe(1);
    const garbage = await chorusAsync(["ca", "sign", "--dir", strict], {}, 30_000, "not a csr\n");
    expect(garbage.stderr).toBe("chorus ca sign: no PEM certificate request found\n");
    expect(garbage.status).toBe(1);
    const huge = await chorusAsync(["ca", "sign", "--dir", strict], {}, 30_000, "A".repeat(200_000));
    expect(huge.stderr).toBe("chorus ca sign: the CSR is larger than 64 KiB\n");
    expect(huge.status).toBe(1);

    const cases: [string[], string][] = [
      [
        ["ca", "sign", join(tmp, "absent.csr"), "--dir", strict],
        `chorus ca sign: cannot read ${join(tmp, "absent.csr")}: no such file\n`,
      ],
      [
        ["ca", "list", "--dir", join(tmp, "none")],
        `chorus ca list: no certificate authority in ${join(tmp, "none")} (index.json is missing)\n`,
      ],
      [["ca", "init", "--dir", strict], `chorus ca init: ${strict} is not empty (a CA is there)\n`],
      [["ca", "revoke", "feed", "--dir", strict], "chorus ca revoke: no certificate with serial feed\n"],
      [["ca", "revoke", "xyz", "--dir", strict], 'chorus ca revoke: "xyz" is not a serial number\n'],
      [["ca", "list"], "chorus ca list: required option '--dir <dir>' not specified\n"],
      [
        ["ca", "sign", "--dir", strict, "--validity", "0"],
        'chorus ca sign: --validity: "0" is not a number of days from 1 to 36500\n',
      ],
      [["ca", "sign", "--dir", strict, "--san", "dns:"], 'chorus ca sign: --san: "dns:" has no name\n'],
    ];
    for (const [args, stderr] of cases) {
      const r = chorus(args);
      expect(r.stderr, args.join(" ")).toBe(stderr);
      expect(r.status, args.join(" ")).toBe(1);
    }
    const usage = chorus(["ca", "sign", "--dir", strict, "--usage", "root"]);
    expect(usage.status).toBe(1);
    expect(usage.stderr).toMatch(/^chorus ca sign: option '--usage <usage>' argument 'root' is invalid/);
    expect(chorus(["ca", "list", "--dir", strict]).stdout).toBe("No certificates issued\n");
    expect(JSON.parse(chorus(["ca", "list", "--dir", strict, "--json"]).stdout)).toEqual([]);
    expect(existsSync(join(tmp, "none"))).toBe(false);
  }, 60_000);
});
