import { spawnSync } from "node:child_process";
import { X509Certificate, webcrypto } from "node:crypto";
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { afterAll, describe, expect, it } from "vitest";
import {
  CHORIA_CERT_DENY_LIST,
  CaError,
  CertificateAuthority,
  MAX_CSR_BYTES,
  normalizeSerial,
} from "../../../src/core/ca/index.js";

// @peculiar/x509 is typed against the DOM Crypto; node's webcrypto is the same API
const crypto = webcrypto as unknown as NonNullable<
  Parameters<typeof x509.X509CertificateGenerator.create>[1]
>;
type Alg =
  webcrypto.Algorithm | webcrypto.RsaHashedKeyGenParams | webcrypto.EcKeyGenParams | webcrypto.EcdsaParams;
const dirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), "chorus-ca-"));
  dirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

type KeyKind = "rsa" | "ed25519" | "ec" | "rsa1024";
const KEY_ALGS: Record<KeyKind, { gen: Alg; sign: Alg }> = {
  rsa: {
    gen: {
      name: "RSASSA-PKCS1-v1_5",
      hash: "SHA-256",
      modulusLength: 2048,
      publicExponent: new Uint8Array([1, 0, 1]),
    },
    sign: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
  },
  rsa1024: {
    gen: {
      name: "RSASSA-PKCS1-v1_5",
      hash: "SHA-256",
      modulusLength: 1024,
      publicExponent: new Uint8Array([1, 0, 1]),
    },
    sign: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
  },
  ed25519: { gen: { name: "Ed25519" }, sign: { name: "Ed25519" } },
  ec: {
    gen: { name: "ECDSA", namedCurve: "P-256" },
    sign: { name: "ECDSA", hash: "SHA-256" },
  },
};

/** A PEM CSR for `name` (an RFC 2253 subject, or a bare CN) with optional SANs. */
async function makeCsr(kind: KeyKind, name: string, sans?: x509.JsonGeneralName[]): Promise<string> {
  const a = KEY_ALGS[kind];
  const keys = (await webcrypto.subtle.generateKey(a.gen, true, [
    "sign",
    "verify",
  ])) as webcrypto.CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create(
    {
      name: name.includes("=") ? name : `CN=${name}`,
      keys,
      signingAlgorithm: a.sign,
      extensions: sans ? [new x509.SubjectAlternativeNameExtension(sans)] : [],
    },
    crypto,
  );
  return csr.toString("pem");
}

async function newCa(
  algorithm: "rsa" | "ed25519" = "ed25519",
  policy?: object,
): Promise<CertificateAuthority> {
  return CertificateAuthority.init(join(tmp(), "ca"), {
    algorithm,
    cn: "Test CA",
    rootValidityDays: 3650,
    intermediateValidityDays: 1825,
    ...(policy ? { policy } : {}),
  });
}

async function refused(p: Promise<unknown>, code: string, message?: RegExp): Promise<CaError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CaError);
  expect((err as CaError).code).toBe(code);
  if (message) expect((err as CaError).message).toMatch(message);
  return err as CaError;
}

function certs(pem: string): X509Certificate[] {
  return [...pem.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)].map(
    (m) => new X509Certificate(m[0]),
  );
}

const mode = (p: string) => statSync(p).mode & 0o777;
const hasOpenssl = spawnSync("openssl", ["version"]).status === 0;

describe("CertificateAuthority.init / open", () => {
  for (const algorithm of ["ed25519", "rsa"] as const) {
    it(`makes a ${algorithm} root and intermediate, with private files`, async () => {
      const ca = await newCa(algorithm);
      expect(mode(ca.dir)).toBe(0o700);
      for (const f of ["root.key", "intermediate.key", "index.json"])
        expect(mode(join(ca.dir, f))).toBe(0o600);
      const root = new X509Certificate(readFileSync(join(ca.dir, "root.pem")));
      const inter = new X509Certificate(readFileSync(join(ca.dir, "intermediate.pem")));
      expect(root.subject).toBe("CN=Test CA");
      expect(inter.subject).toBe("CN=Test CA Intermediate");
      expect(root.ca && inter.ca).toBe(true);
      expect(root.verify(root.publicKey)).toBe(true);
      expect(inter.checkIssued(root) && inter.verify(root.publicKey)).toBe(true);
      expect(root.publicKey.asymmetricKeyType).toBe(algorithm);
      if (algorithm === "rsa") expect(root.publicKey.asymmetricKeyDetails?.modulusLength).toBe(3072);
      // the intermediate may not make further CAs
      expect(
        new x509.X509Certificate(inter.raw).getExtension(x509.BasicConstraintsExtension)?.pathLength,
      ).toBe(0);
      expect(new Date(inter.validTo).getTime()).toBeLessThanOrEqual(new Date(root.validTo).getTime());
      expect(ca.chainPem).toBe(readFileSync(join(ca.dir, "chain.pem"), "utf8"));

      const again = await CertificateAuthority.open(ca.dir);
      expect(again.algorithm).toBe(algorithm);
      expect(again.cn).toBe("Test CA");
      expect(again.policy.deny_names).toEqual([...CHORIA_CERT_DENY_LIST]);
      expect(again.rootPem).toBe(ca.rootPem);
    });
  }

  it("refuses a directory that is not empty, bad options, and opening a non-CA", async () => {
    const ca = await newCa();
    await refused(
      CertificateAuthority.init(ca.dir, {
        algorithm: "rsa",
        cn: "x",
        rootValidityDays: 10,
        intermediateValidityDays: 5,
      }),
      "exists",
      /a CA is there/,
    );
    const d = tmp();
    const base = {
      algorithm: "ed25519" as const,
      cn: "x",
      rootValidityDays: 10,
      intermediateValidityDays: 5,
    };
    await refused(
      CertificateAuthority.init(d, { ...base, intermediateValidityDays: 11 }),
      "bad_input",
      /exceeds/,
    );
    await refused(CertificateAuthority.init(d, { ...base, cn: "" }), "bad_input");
    await refused(CertificateAuthority.init(d, { ...base, rootValidityDays: 0 }), "bad_input");
    await refused(CertificateAuthority.init(d, { ...base, algorithm: "dsa" as "rsa" }), "bad_input");
    await refused(CertificateAuthority.init(d, { ...base, policy: { allowed_names: ["("] } }), "bad_input");
    // RE2 syntax, as Choria's Go regexp: JavaScript-only lookarounds do not compile
    await refused(
      CertificateAuthority.init(d, { ...base, policy: { deny_names: ["(?=x)"] } }),
      "bad_input",
      /not a usable regular expression/,
    );
    await refused(CertificateAuthority.open(d), "not_found");
    writeFileSync(join(d, "index.json"), "{nope");
    await refused(CertificateAuthority.open(d), "bad_state");
    // a policy edited by hand into something unusable
    const indexFile = join(ca.dir, "index.json");
    const index = JSON.parse(readFileSync(indexFile, "utf8")) as { policy: object };
    writeFileSync(indexFile, JSON.stringify({ ...index, policy: { deny_names: ["[x"] } }));
    await refused(CertificateAuthority.open(ca.dir), "bad_state", /bad policy/);
  });
});

describe("CertificateAuthority.sign", () => {
  it("signs RSA-2048 and ed25519 CSRs; the leaf verifies against the intermediate and the root", async () => {
    for (const algorithm of ["ed25519", "rsa"] as const) {
      const ca = await newCa(algorithm);
      for (const kind of ["rsa", "ed25519", "ec"] as const) {
        const cn = `${kind}.node.example.net`;
        const out = await ca.sign(await makeCsr(kind, cn), { validityDays: 30 });
        const leaf = new X509Certificate(out.certificatePem);
        const [inter, root] = certs(out.chainPem) as [X509Certificate, X509Certificate];
        expect(root.subject).toBe("CN=Test CA");
        expect(leaf.subject).toBe(`CN=${cn}`);
        expect(leaf.ca).toBe(false);
        expect(leaf.checkIssued(inter) && leaf.verify(inter.publicKey)).toBe(true);
        expect(inter.checkIssued(root) && inter.verify(root.publicKey)).toBe(true);
        expect(leaf.verify(root.publicKey)).toBe(false);
        expect(leaf.publicKey.asymmetricKeyType).toBe(kind);
        expect(normalizeSerial(leaf.serialNumber)).toBe(out.serial);
        expect(out.serial).toMatch(/^[0-7][0-9a-f]{31}$/);
        expect(out.serial.startsWith("00")).toBe(false);
        // no SANs asked for: the CN, so TLS host checks work
        expect(leaf.subjectAltName).toBe(`DNS:${cn}`);
        expect(leaf.keyUsage).toEqual(["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]);
        const days = (Date.parse(leaf.validTo) - Date.now()) / 86_400_000;
        expect(days).toBeGreaterThan(29.9);
        expect(days).toBeLessThan(30.1);
        expect(out.notAfter.getTime()).toBeCloseTo(Date.parse(leaf.validTo), -4);
        expect(await ca.verifyChain(out.certificatePem)).toMatchObject({ valid: true, serial: out.serial });
        expect(await ca.certificate(out.serial)).toBe(out.certificatePem);
      }
    }
  });

  it("copies the CSR's SANs and subject, or uses the SANs given instead", async () => {
    const ca = await newCa();
    const csr = await makeCsr("rsa", "CN=web1.example.net,O=Acme,C=GB", [
      { type: "dns", value: "web1.example.net" },
      { type: "dns", value: "www.example.net" },
      { type: "ip", value: "10.1.2.3" },
    ]);
    const copied = new X509Certificate((await ca.sign(csr)).certificatePem);
    expect(copied.subject.split("\n").sort()).toEqual(["C=GB", "CN=web1.example.net", "O=Acme"]);
    expect(copied.subjectAltName).toBe("DNS:web1.example.net, DNS:www.example.net, IP Address:10.1.2.3");
    expect(copied.checkHost("www.example.net")).toBe("www.example.net");
    expect(copied.checkIP("10.1.2.3")).toBe("10.1.2.3");

    const given = await ca.sign(csr, {
      sans: {
        dns: ["api.example.net"],
        ip: ["::1"],
        email: ["ops@example.net"],
        uri: ["spiffe://example.net/web"],
      },
      usage: "server",
    });
    const leaf = new X509Certificate(given.certificatePem);
    expect(leaf.subjectAltName).toContain("DNS:api.example.net");
    expect(leaf.subjectAltName).not.toContain("www.example.net");
    expect(leaf.subjectAltName).toMatch(/IP Address:(0:0:0:0:0:0:0:1|::1)/);
    expect(leaf.subjectAltName).toContain("email:ops@example.net");
    expect(leaf.subjectAltName).toContain("URI:spiffe://example.net/web");
    expect(leaf.keyUsage).toEqual(["1.3.6.1.5.5.7.3.1"]);
    const list = await ca.list();
    expect(list.map((c) => c.sans)).toEqual([
      { dns: ["web1.example.net", "www.example.net"], ip: ["10.1.2.3"] },
      {
        dns: ["api.example.net"],
        ip: ["::1"],
        email: ["ops@example.net"],
        uri: ["spiffe://example.net/web"],
      },
    ]);
    expect(list[1]).toMatchObject({ usage: "server", key: "rsa-2048", status: "valid" });
    await refused(ca.sign(csr, { sans: { dns: ["bad name"] } }), "bad_input", /not a DNS name/);
    await refused(ca.sign(csr, { sans: { ip: ["10.1.2"] } }), "bad_input", /not an IP address/);
    await refused(ca.sign(csr, { usage: "root" as "server" }), "bad_input");
  });

  it("refuses names the deny list matches: the CN and every DNS SAN, in any case or with a trailing dot", async () => {
    const ca = await newCa();
    await refused(ca.sign(await makeCsr("ed25519", "bob.privileged.choria")), "policy", /denied/);
    await refused(ca.sign(await makeCsr("ed25519", "node.mcollective")), "policy", /denied/);
    await refused(ca.sign(await makeCsr("ed25519", "NODE.CHORIA")), "policy", /denied/);
    await refused(ca.sign(await makeCsr("ed25519", "node.choria.")), "policy", /denied/);
    const innocent = await makeCsr("ed25519", "node.example.net", [
      { type: "dns", value: "node.example.net" },
      { type: "dns", value: "sneaky.choria" },
    ]);
    await refused(ca.sign(innocent), "policy", /sneaky\.choria/);
    await refused(
      ca.sign(await makeCsr("ed25519", "node.example.net"), { sans: { dns: ["x.choria"] } }),
      "policy",
    );
    expect(await ca.list()).toEqual([]);
  });

  it("applies allowed_names, an empty deny list and max validity", async () => {
    const ca = await newCa("ed25519", {
      allowed_names: ["\\.example\\.net$"],
      deny_names: [],
      max_validity_days: 90,
    });
    expect(
      (await ca.sign(await makeCsr("ed25519", "a.example.net"), { validityDays: 90 })).serial,
    ).toBeTruthy();
    await refused(ca.sign(await makeCsr("ed25519", "a.example.org")), "policy", /not allowed/);
    const mixed = await makeCsr("ed25519", "b.example.net", [{ type: "dns", value: "b.example.org" }]);
    await refused(ca.sign(mixed), "policy", /b\.example\.org/);
    await refused(
      ca.sign(await makeCsr("ed25519", "c.example.net"), { validityDays: 91 }),
      "policy",
      /maximum of 90/,
    );
    // the default validity (365 days) shrinks to the policy's maximum
    const dflt = await ca.sign(await makeCsr("ed25519", "c.example.net"));
    expect(Math.round((dflt.notAfter.getTime() - Date.now()) / 86_400_000)).toBe(90);
    await refused(ca.sign(await makeCsr("ed25519", "c.example.net"), { validityDays: 0 }), "bad_input");
    // patterns run in linear time: a backtracking-prone one cannot stall signing
    const redos = await newCa("ed25519", { allowed_names: ["^(a+)+$"] });
    const started = Date.now();
    await refused(redos.sign(await makeCsr("ed25519", `${"a".repeat(60)}!`)), "policy", /not allowed/);
    expect(Date.now() - started).toBeLessThan(2000);
    // the deny list is empty here, so Choria's names pass if allowed
    const open = await newCa("ed25519", { deny_names: [] });
    expect((await open.sign(await makeCsr("ed25519", "x.choria"))).serial).toBeTruthy();
  });

  it("refuses a leaf that would outlive the intermediate", async () => {
    const ca = await CertificateAuthority.init(join(tmp(), "ca"), {
      algorithm: "ed25519",
      cn: "Short",
      rootValidityDays: 30,
      intermediateValidityDays: 10,
    });
    await refused(
      ca.sign(await makeCsr("ed25519", "n.example.net"), { validityDays: 11 }),
      "policy",
      /outlive/,
    );
  });

  it("refuses bad CSRs: bad signature, garbage, oversized, weak or odd keys, several CNs", async () => {
    const ca = await newCa();
    const good = await makeCsr("rsa", "n.example.net");
    const der = x509.PemConverter.decodeFirst(good);
    const bytes = new Uint8Array(der);
    bytes[bytes.length - 5] = (bytes[bytes.length - 5] as number) ^ 0xff; // in the signature
    const tampered = x509.PemConverter.encode(bytes.buffer, "CERTIFICATE REQUEST");
    await refused(ca.sign(tampered), "bad_csr", /signature/);
    // a CSR whose subject was changed after signing
    const other = new Uint8Array(x509.PemConverter.decodeFirst(await makeCsr("ed25519", "aaaa.example.net")));
    const at = Buffer.from(other).indexOf("aaaa");
    other.set(Buffer.from("bbbb"), at);
    await refused(
      ca.sign(x509.PemConverter.encode(other.buffer, "CERTIFICATE REQUEST")),
      "bad_csr",
      /signature/,
    );

    await refused(ca.sign("hello"), "bad_csr", /no PEM/);
    await refused(ca.sign(""), "bad_csr");
    await refused(
      ca.sign("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"),
      "bad_csr",
      /not valid DER/,
    );
    await refused(ca.sign(ca.rootPem), "bad_csr", /no PEM certificate request/);
    await refused(ca.sign(good + " ".repeat(MAX_CSR_BYTES)), "bad_csr", /larger than 64 KiB/);
    await refused(ca.sign(42 as unknown as string), "bad_csr");
    await refused(ca.sign(await makeCsr("rsa1024", "n.example.net")), "bad_csr", /2048 to 8192 bits/);
    await refused(
      ca.sign(await makeCsr("ed25519", "CN=a.example.net,CN=b.choria")),
      "bad_csr",
      /exactly one/,
    );
    await refused(ca.sign(await makeCsr("ed25519", "O=No CN")), "bad_csr", /exactly one/);
    await refused(
      ca.sign(await makeCsr("ed25519", "n.example.net", [{ type: "upn", value: "x@y" }])),
      "bad_csr",
      /upn SAN/,
    );
    expect(await ca.list()).toEqual([]);
  });

  it("signs with only the intermediate key present (root key offline)", async () => {
    const ca = await newCa("rsa");
    unlinkSync(join(ca.dir, "root.key"));
    const reopened = await CertificateAuthority.open(ca.dir);
    const out = await reopened.sign(await makeCsr("ed25519", "n.example.net"));
    expect((await reopened.verifyChain(out.certificatePem)).valid).toBe(true);
    expect(await reopened.crl()).toMatch(/^-----BEGIN X509 CRL-----/);

    unlinkSync(join(ca.dir, "intermediate.key"));
    const keyless = await CertificateAuthority.open(ca.dir);
    await refused(keyless.sign(await makeCsr("ed25519", "m.example.net")), "no_key", /intermediate key/);
    // list and verify need no key
    expect(await keyless.list()).toHaveLength(1);
  });

  it("keeps every index entry when signs run concurrently, also from two objects on one directory", async () => {
    const ca = await newCa();
    const twin = await CertificateAuthority.open(ca.dir);
    const csrs = await Promise.all(
      Array.from({ length: 24 }, (_, i) => makeCsr("ed25519", `n${i}.example.net`)),
    );
    const out = await Promise.all(csrs.map((c, i) => (i % 2 ? twin : ca).sign(c)));
    const serials = new Set(out.map((o) => o.serial));
    expect(serials.size).toBe(24);
    const listed = await ca.list();
    expect(listed).toHaveLength(24);
    expect(new Set(listed.map((c) => c.serial))).toEqual(serials);
    // nothing left behind by the atomic writes or the lock
    const left = readFileSync(join(ca.dir, "index.json"), "utf8");
    expect(JSON.parse(left).certificates).toHaveLength(24);
    expect(statSync(join(ca.dir, "index.json")).mode & 0o777).toBe(0o600);
    expect(readdirSync(ca.dir).filter((f) => f.endsWith(".tmp") || f.endsWith(".lock"))).toEqual([]);
  });

  it("takes over a lock left by a dead process", async () => {
    const ca = await newCa();
    // pid 2^22+1 is above Linux's default pid_max: no such process
    writeFileSync(join(ca.dir, "index.lock"), String(4_194_305));
    await ca.sign(await makeCsr("ed25519", "n.example.net"));
    expect(await ca.list()).toHaveLength(1);
  });
});

describe("revocation, CRL and verifyChain", () => {
  it("revokes: list, the CRL (signed by the intermediate) and verifyChain show it", async () => {
    for (const algorithm of ["ed25519", "rsa"] as const) {
      const ca = await newCa(algorithm);
      const a = await ca.sign(await makeCsr("ed25519", "a.example.net"));
      const b = await ca.sign(await makeCsr("rsa", "b.example.net"));
      const c = await ca.sign(await makeCsr("ec", "c.example.net"));
      const before = new x509.X509Crl(await ca.crl());
      expect(before.entries).toHaveLength(0);

      const r = await ca.revoke(a.serial.toUpperCase(), "keyCompromise");
      expect(r).toMatchObject({ serial: a.serial, status: "revoked", reason: "keyCompromise" });
      // a serial typed with colons and a leading zero is the same serial
      const colons = `00${b.serial}`.match(/../g)?.join(":") as string;
      await ca.revoke(colons);

      const crl = new x509.X509Crl(await ca.crl({ nextUpdateDays: 2 }));
      const inter = new x509.X509Certificate(ca.intermediatePem);
      expect(crl.issuer).toBe(inter.subject);
      expect(await crl.verify({ publicKey: inter }, crypto)).toBe(true);
      expect(await crl.verify({ publicKey: new x509.X509Certificate(ca.rootPem) }, crypto)).toBe(false);
      expect(crl.entries.map((e) => e.serialNumber).sort()).toEqual([a.serial, b.serial].sort());
      expect(crl.findRevoked(a.serial)?.reason).toBe(x509.X509CrlReason.keyCompromise);
      expect(crl.findRevoked(b.serial)?.reason).toBeUndefined();
      expect(crl.findRevoked(c.serial)).toBeNull();
      expect((crl.nextUpdate as Date).getTime() - crl.thisUpdate.getTime()).toBe(2 * 86_400_000);
      // the CRL number rises with each CRL
      const number = (l: x509.X509Crl) =>
        Buffer.from(l.getExtension("2.5.29.20")?.value ?? new ArrayBuffer(0)).toString("hex");
      expect(number(before)).toBe("0201" + "01");
      expect(number(crl)).toBe("0201" + "02");

      const list = await ca.list();
      expect(list.map((x) => [x.serial, x.status])).toEqual([
        [a.serial, "revoked"],
        [b.serial, "revoked"],
        [c.serial, "valid"],
      ]);
      expect(list[1]?.reason).toBe("unspecified");
      expect(await ca.verifyChain(a.certificatePem)).toMatchObject({ valid: false, reason: "revoked" });
      expect(await ca.verifyChain(c.certificatePem)).toMatchObject({ valid: true });

      await refused(ca.revoke(a.serial), "revoked");
      await refused(ca.revoke("abcdef"), "not_found");
      await refused(ca.revoke("not hex"), "bad_input");
      await refused(ca.revoke(c.serial, "because" as "superseded"), "bad_input");
    }
  });

  it("verifyChain refuses other CAs' certificates, garbage and unknown serials; list shows expiry", async () => {
    const ca = await newCa();
    const other = await newCa();
    const foreign = await other.sign(await makeCsr("ed25519", "f.example.net"));
    expect(await ca.verifyChain(foreign.certificatePem)).toMatchObject({ valid: false, reason: "untrusted" });
    expect(await ca.verifyChain(ca.intermediatePem)).toMatchObject({ valid: false, reason: "untrusted" });
    expect(await ca.verifyChain("junk")).toMatchObject({ valid: false, reason: "malformed" });
    expect(
      await ca.verifyChain("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
    ).toMatchObject({ valid: false, reason: "malformed" });

    const mine = await ca.sign(await makeCsr("ed25519", "m.example.net"), { validityDays: 10 });
    expect(await ca.verifyChain(mine.certificatePem, new Date(Date.now() + 11 * 86_400_000))).toMatchObject({
      valid: false,
      reason: "expired",
    });
    // signed by our key but missing from the index
    const indexFile = join(ca.dir, "index.json");
    const index = JSON.parse(readFileSync(indexFile, "utf8")) as { certificates: { not_after: string }[] };
    writeFileSync(indexFile, JSON.stringify({ ...index, certificates: [] }));
    expect(await ca.verifyChain(mine.certificatePem)).toMatchObject({ valid: false, reason: "unknown" });
    // an entry whose date passed lists as expired
    (index.certificates[0] as { not_after: string }).not_after = new Date(Date.now() - 1000).toISOString();
    writeFileSync(indexFile, JSON.stringify(index));
    expect((await ca.list())[0]?.status).toBe("expired");
  });

  it("keeps its state across reopen", async () => {
    const ca = await newCa();
    const a = await ca.sign(await makeCsr("ed25519", "a.example.net"), { sans: { dns: ["a.example.net"] } });
    await ca.sign(await makeCsr("rsa", "b.example.net"), { usage: "client" });
    await ca.revoke(a.serial, "superseded");
    const before = await ca.list();
    const again = await CertificateAuthority.open(ca.dir);
    expect(await again.list()).toEqual(before);
    expect(before[0]).toMatchObject({ status: "revoked", reason: "superseded", subject: "CN=a.example.net" });
    expect(before[1]).toMatchObject({ status: "valid", usage: "client", key: "rsa-2048" });
    expect(before[0]?.notBefore).toBeInstanceOf(Date);
    const crl = new x509.X509Crl(await again.crl());
    expect(crl.findRevoked(a.serial)?.reason).toBe(x509.X509CrlReason.superseded);
  });
});

describe.skipIf(!hasOpenssl)("interoperability with openssl", () => {
  it("signs an openssl CSR; openssl verifies the leaf, the chain and the CRL", async () => {
    const d = tmp();
    for (const algorithm of ["ed25519", "rsa"] as const) {
      const ca = await newCa(algorithm);
      const run = (...args: string[]) => spawnSync("openssl", args, { encoding: "utf8", cwd: d });
      const key = algorithm === "rsa" ? ["-newkey", "rsa:2048"] : ["-newkey", "ed25519"];
      const made = run(
        "req",
        "-new",
        ...key,
        "-nodes",
        "-keyout",
        `${algorithm}.key`,
        "-subj",
        "/CN=os.example.net",
        "-addext",
        "subjectAltName=DNS:os.example.net,IP:192.0.2.1",
        "-out",
        `${algorithm}.csr`,
      );
      expect(made.status, made.stderr).toBe(0);
      const out = await ca.sign(readFileSync(join(d, `${algorithm}.csr`), "utf8"));
      mkdirSync(join(d, algorithm), { recursive: true });
      writeFileSync(join(d, algorithm, "leaf.pem"), out.certificatePem);
      writeFileSync(join(d, algorithm, "root.pem"), ca.rootPem);
      writeFileSync(join(d, algorithm, "inter.pem"), ca.intermediatePem);
      const v = run(
        "verify",
        "-CAfile",
        `${algorithm}/root.pem`,
        "-untrusted",
        `${algorithm}/inter.pem`,
        "-purpose",
        "sslserver",
        `${algorithm}/leaf.pem`,
      );
      expect(v.status, v.stderr + v.stdout).toBe(0);
      await ca.revoke(out.serial);
      writeFileSync(join(d, algorithm, "crl.pem"), await ca.crl());
      const crlCheck = run(
        "verify",
        "-crl_check",
        "-CAfile",
        `${algorithm}/root.pem`,
        "-untrusted",
        `${algorithm}/inter.pem`,
        "-CRLfile",
        `${algorithm}/crl.pem`,
        `${algorithm}/leaf.pem`,
      );
      expect(crlCheck.status).not.toBe(0);
      expect(crlCheck.stdout + crlCheck.stderr).toMatch(/certificate revoked/);
    }
  });
});
