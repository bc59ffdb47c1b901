import { X509Certificate, createPublicKey, webcrypto } from "node:crypto";
import { chmod, mkdir, readFile, readdir, rm } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import type * as X509 from "@peculiar/x509";
import { certSerial, loadX509, x509Crypto, type CertUsage } from "../security/index.js";
import { CaError } from "./errors.js";
import {
  type CaPolicy,
  type CaSans,
  type ResolvedPolicy,
  checkDays,
  checkNames,
  checkSans,
  hasSans,
  isDnsName,
  resolvePolicy,
} from "./policy.js";
import {
  type CaAlgorithm,
  type IndexFile,
  type IssuedRecord,
  type RevocationReason,
  INDEX_FILE,
  REVOCATION_REASONS,
  mutateIndex,
  readIndex,
  writeAtomic,
  writeNew,
} from "./store.js";

type CryptoKey = webcrypto.CryptoKey;
const subtle = webcrypto.subtle;

/** The largest CSR sign() reads: a CSR with a big RSA key and many SANs is a few KiB. */
export const MAX_CSR_BYTES = 64 * 1024;
const DAY_MS = 86_400_000;
// a little slack so new certificates work at once on hosts whose clocks are behind
const BACKDATE_MS = 60 * 60 * 1000;
const DEFAULT_LEAF_DAYS = 365;
const DEFAULT_CRL_DAYS = 7;
// ub-common-name in X.520
const MAX_CN = 64;
// RSA CA keys: 3072 bits keeps a ten-year root sound past 2030 (NIST SP 800-57)
const RSA_CA_BITS = 3072;
const RSA_MIN_BITS = 2048;
// bigger RSA keys only make verification slow
const RSA_MAX_BITS = 8192;
const EC_CURVES = new Set(["prime256v1", "secp384r1", "secp521r1"]);

const ROOT_CERT = "root.pem";
const ROOT_KEY = "root.key";
const INTERMEDIATE_CERT = "intermediate.pem";
const INTERMEDIATE_KEY = "intermediate.key";
const CHAIN = "chain.pem";
const CERTS = "certs";

const ALGORITHMS = {
  rsa: {
    generate: {
      name: "RSASSA-PKCS1-v1_5",
      hash: "SHA-256",
      modulusLength: RSA_CA_BITS,
      publicExponent: new Uint8Array([1, 0, 1]),
    },
    import: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
    sign: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
  },
  ed25519: { generate: { name: "Ed25519" }, import: { name: "Ed25519" }, sign: { name: "Ed25519" } },
} as const;

export interface CaInitOptions {
  algorithm: CaAlgorithm;
  /** the root's common name; the intermediate is "<cn> Intermediate" */
  cn: string;
  rootValidityDays: number;
  /** at most rootValidityDays */
  intermediateValidityDays: number;
  policy?: CaPolicy;
}

export interface SignOptions {
  /** the leaf's SANs; when absent or empty the CSR's own SAN extension is used */
  sans?: CaSans;
  /** default 365 or the policy's max_validity_days if lower; at most that maximum */
  validityDays?: number;
  /** extended key usage: TLS server, client, or both (default) */
  usage?: CertUsage;
}

export interface SignedCertificate {
  certificatePem: string;
  /** the intermediate then the root, to send with the leaf or to trust */
  chainPem: string;
  /** lower-case hex, as list() and revoke() use it */
  serial: string;
  notAfter: Date;
}

export type CertificateStatus = "valid" | "revoked" | "expired";

export interface CertificateInfo {
  serial: string;
  subject: string;
  sans: CaSans;
  usage: CertUsage;
  key: string;
  notBefore: Date;
  notAfter: Date;
  status: CertificateStatus;
  revokedAt?: Date;
  reason?: RevocationReason;
}

export interface CrlOptions {
  /** when relying parties should fetch the next CRL, in days (default 7) */
  nextUpdateDays?: number;
}

export type ChainVerdict =
  | { valid: true; serial: string; subject: string; notAfter: Date }
  | {
      valid: false;
      /** `unknown`: signed by this CA's key but not in its index */
      reason: "malformed" | "untrusted" | "unknown" | "revoked" | "expired" | "not_yet_valid";
      message: string;
      serial?: string;
    };

/** A serial as the user may type it (upper case, colons, leading zeros) in the CA's spelling. */
export function normalizeSerial(serial: string): string {
  const hex = serial.trim().replace(/^0x/i, "").replace(/[:\s]/g, "").toLowerCase();
  if (!/^[0-9a-f]{1,40}$/.test(hex))
    throw new CaError("bad_input", `${JSON.stringify(serial)} is not a serial number`);
  // whole bytes, none of them leading zeros: how certSerial() spells its serials
  const digits = hex.replace(/^0+(?=.)/, "");
  return digits.length % 2 ? `0${digits}` : digits;
}

function checkCn(cn: unknown, code: "bad_input" | "bad_csr" = "bad_input"): string {
  // eslint-disable-next-line no-control-regex
  if (typeof cn !== "string" || cn.trim() === "" || cn.length > MAX_CN || /[\x00-\x1f\x7f]/.test(cn))
    throw new CaError(code, `common name must be 1 to ${MAX_CN} printable characters`);
  return cn;
}

/** The DER encoding of a non-negative integer (for the CRL number extension). */
function derInteger(n: number): Uint8Array {
  const bytes: number[] = [];
  let v = BigInt(n);
  do {
    bytes.unshift(Number(v & 0xffn));
    v >>= 8n;
  } while (v > 0n);
  if ((bytes[0] as number) & 0x80) bytes.unshift(0);
  return Uint8Array.from([0x02, bytes.length, ...bytes]);
}

async function keyPem(x509: typeof X509, key: CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await subtle.exportKey("pkcs8", key), "PRIVATE KEY");
}

function pemBlock(text: string, labels: readonly string[]): Buffer | undefined {
  const m = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([A-Za-z0-9+/=\s]+?)-----END \1-----/.exec(text);
  if (!m || !labels.includes(m[1] as string)) return undefined;
  return Buffer.from((m[2] as string).replace(/\s+/g, ""), "base64");
}

function fileError(code: "io" | "bad_state" | "not_found" | "no_key", what: string, err: unknown): CaError {
  return new CaError(code, `${what}: ${(err as Error).message}`, { cause: err });
}

function info(r: IssuedRecord, now: number): CertificateInfo {
  const notAfter = new Date(r.not_after);
  const out: CertificateInfo = {
    serial: r.serial,
    subject: r.subject,
    sans: r.sans,
    usage: r.usage,
    key: r.key,
    notBefore: new Date(r.not_before),
    notAfter,
    status: r.revoked_at ? "revoked" : notAfter.getTime() < now ? "expired" : "valid",
  };
  if (r.revoked_at) out.revokedAt = new Date(r.revoked_at);
  if (r.revocation_reason) out.reason = r.revocation_reason;
  return out;
}

/** The leaf's key type, refusing keys too weak, too costly or of a kind TLS stacks do not take. */
function leafKey(spki: ArrayBuffer): string {
  let k;
  try {
    k = createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" });
  } catch (err) {
    throw new CaError("bad_csr", "the CSR's public key is unreadable", { cause: err });
  }
  const d = k.asymmetricKeyDetails ?? {};
  switch (k.asymmetricKeyType) {
    case "rsa": {
      const bits = d.modulusLength ?? 0;
      if (bits < RSA_MIN_BITS || bits > RSA_MAX_BITS)
        throw new CaError(
          "bad_csr",
          `RSA keys must have ${RSA_MIN_BITS} to ${RSA_MAX_BITS} bits, the CSR's has ${bits}`,
        );
      return `rsa-${bits}`;
    }
    case "ed25519":
      return "ed25519";
    case "ec":
      if (!EC_CURVES.has(d.namedCurve ?? ""))
        throw new CaError("bad_csr", `EC curve ${d.namedCurve ?? "(unnamed)"} is not supported`);
      return `ec-${d.namedCurve as string}`;
    default:
      throw new CaError("bad_csr", `${k.asymmetricKeyType ?? "unknown"} keys are not supported`);
  }
}

/**
 * A certificate authority kept in one directory: a root (whose key can be moved
 * offline after init), an intermediate that signs leaves and CRLs, and index.json
 * listing every leaf issued.
 */
export class CertificateAuthority {
  readonly dir: string;
  readonly algorithm: CaAlgorithm;
  readonly cn: string;
  readonly policy: ResolvedPolicy;
  readonly rootPem: string;
  readonly intermediatePem: string;
  #signingKey: Promise<CryptoKey> | undefined;

  private constructor(dir: string, index: IndexFile, rootPem: string, intermediatePem: string) {
    this.dir = dir;
    this.algorithm = index.algorithm;
    this.cn = index.cn;
    this.policy = index.policy;
    this.rootPem = rootPem;
    this.intermediatePem = intermediatePem;
  }

  /** The intermediate then the root (PEM). */
  get chainPem(): string {
    return this.intermediatePem + this.rootPem;
  }

  /** Makes a new CA in `dir`, which must be absent or empty; it becomes mode 0700, keys 0600. */
  static async init(dir: string, o: CaInitOptions): Promise<CertificateAuthority> {
    if (o.algorithm !== "rsa" && o.algorithm !== "ed25519")
      throw new CaError("bad_input", `algorithm must be rsa or ed25519, got ${String(o.algorithm)}`);
    const cn = checkCn(o.cn);
    const rootDays = checkDays("root validity", o.rootValidityDays);
    const interDays = checkDays("intermediate validity", o.intermediateValidityDays);
    if (interDays > rootDays)
      throw new CaError(
        "bad_input",
        `intermediate validity (${interDays} days) exceeds the root's (${rootDays} days)`,
      );
    const policy = resolvePolicy(o.policy);

    try {
      // parents get the usual mode; only the CA's own directory is private
      await mkdir(dirname(resolve(dir)), { recursive: true });
      await mkdir(dir, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== "EEXIST") throw err;
      });
      const present = await readdir(dir);
      if (present.length)
        throw new CaError(
          "exists",
          `${dir} is not empty (${present.includes(INDEX_FILE) ? "a CA is there" : "it has files"})`,
        );
      await chmod(dir, 0o700);
    } catch (err) {
      if (err instanceof CaError) throw err;
      throw fileError("io", `cannot create ${dir}`, err);
    }

    const made: string[] = [];
    try {
      return await CertificateAuthority.#create(dir, made, o.algorithm, cn, rootDays, interDays, policy);
    } catch (err) {
      // leave the directory as empty as it was found, so init can simply be run again
      await Promise.all(made.map((p) => rm(p, { recursive: true, force: true })));
      throw err;
    }
  }

  /** The keys and certificates of a new CA; `made` collects each path written, for cleaning up. */
  static async #create(
    dir: string,
    made: string[],
    algorithm: CaAlgorithm,
    cn: string,
    rootDays: number,
    interDays: number,
    policy: ResolvedPolicy,
  ): Promise<CertificateAuthority> {
    const write = async (name: string, text: string, mode: number) => {
      await writeNew(join(dir, name), text, mode);
      made.push(join(dir, name));
    };
    try {
      await mkdir(join(dir, CERTS), { mode: 0o700 });
      made.push(join(dir, CERTS));
    } catch (err) {
      throw fileError("io", `cannot create ${join(dir, CERTS)}`, err);
    }
    const x509 = await loadX509();
    const alg = ALGORITHMS[algorithm];
    const gen = () =>
      subtle.generateKey(alg.generate, true, ["sign", "verify"]) as Promise<webcrypto.CryptoKeyPair>;
    const [rootKeys, interKeys] = await Promise.all([gen(), gen()]);
    const now = Date.now();
    const caUsage = x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign;
    const root = await x509.X509CertificateGenerator.createSelfSigned(
      {
        serialNumber: certSerial(),
        name: [{ CN: [cn] }],
        notBefore: new Date(now - BACKDATE_MS),
        notAfter: new Date(now + rootDays * DAY_MS),
        signingAlgorithm: alg.sign,
        keys: rootKeys,
        extensions: [
          new x509.BasicConstraintsExtension(true, undefined, true),
          new x509.KeyUsagesExtension(caUsage, true),
          await x509.SubjectKeyIdentifierExtension.create(rootKeys.publicKey, false, x509Crypto),
        ],
      },
      x509Crypto,
    );
    const inter = await x509.X509CertificateGenerator.create(
      {
        serialNumber: certSerial(),
        subject: [{ CN: [`${cn} Intermediate`] }],
        issuer: root.subjectName,
        notBefore: new Date(now - BACKDATE_MS),
        notAfter: new Date(now + interDays * DAY_MS),
        signingAlgorithm: alg.sign,
        publicKey: interKeys.publicKey,
        signingKey: rootKeys.privateKey,
        extensions: [
          // path length 0: it signs leaves only
          new x509.BasicConstraintsExtension(true, 0, true),
          new x509.KeyUsagesExtension(caUsage, true),
          await x509.SubjectKeyIdentifierExtension.create(interKeys.publicKey, false, x509Crypto),
          await x509.AuthorityKeyIdentifierExtension.create(root, false, x509Crypto),
        ],
      },
      x509Crypto,
    );
    const rootPem = `${root.toString("pem")}\n`;
    const interPem = `${inter.toString("pem")}\n`;
    await write(ROOT_KEY, await keyPem(x509, rootKeys.privateKey), 0o600);
    await write(INTERMEDIATE_KEY, await keyPem(x509, interKeys.privateKey), 0o600);
    await write(ROOT_CERT, rootPem, 0o644);
    await write(INTERMEDIATE_CERT, interPem, 0o644);
    await write(CHAIN, interPem + rootPem, 0o644);
    const index: IndexFile = {
      version: 1,
      algorithm,
      cn,
      created_at: new Date(now).toISOString(),
      policy,
      crl_number: 0,
      certificates: [],
    };
    // the index last: a directory without it is not a CA, so a failed init is not half-usable
    made.push(join(dir, INDEX_FILE));
    await writeAtomic(dir, INDEX_FILE, `${JSON.stringify(index, null, 2)}\n`, 0o600);
    return new CertificateAuthority(dir, index, rootPem, interPem);
  }

  /** Opens the CA in `dir` (made by init); the root key need not be there. */
  static async open(dir: string): Promise<CertificateAuthority> {
    const index = await readIndex(dir);
    const read = async (name: string) => {
      try {
        return await readFile(join(dir, name), "utf8");
      } catch (err) {
        throw fileError("bad_state", `cannot read ${join(dir, name)}`, err);
      }
    };
    const [rootPem, interPem] = await Promise.all([read(ROOT_CERT), read(INTERMEDIATE_CERT)]);
    let ok: boolean;
    try {
      const root = new X509Certificate(rootPem);
      const inter = new X509Certificate(interPem);
      ok = inter.checkIssued(root) && inter.verify(root.publicKey);
    } catch (err) {
      throw fileError("bad_state", `the CA certificates in ${dir} are unreadable`, err);
    }
    if (!ok)
      throw new CaError(
        "bad_state",
        `${join(dir, INTERMEDIATE_CERT)} is not issued by ${join(dir, ROOT_CERT)}`,
      );
    let policy: ResolvedPolicy;
    try {
      // policies written by hand are checked as init checks them
      policy = resolvePolicy(index.policy);
    } catch (err) {
      throw fileError("bad_state", `${join(dir, INDEX_FILE)} has a bad policy`, err);
    }
    return new CertificateAuthority(dir, { ...index, policy }, rootPem, interPem);
  }

  #key(): Promise<CryptoKey> {
    this.#signingKey ??= (async () => {
      const path = join(this.dir, INTERMEDIATE_KEY);
      let pem: string;
      try {
        pem = await readFile(path, "utf8");
      } catch (err) {
        const missing = (err as NodeJS.ErrnoException).code === "ENOENT";
        throw fileError(missing ? "no_key" : "io", `cannot read the intermediate key ${path}`, err);
      }
      const der = pemBlock(pem, ["PRIVATE KEY"]);
      try {
        if (!der) throw new Error("no PKCS#8 PEM block");
        return await subtle.importKey("pkcs8", der, ALGORITHMS[this.algorithm].import, false, ["sign"]);
      } catch (err) {
        throw fileError("no_key", `the intermediate key ${path} is not a ${this.algorithm} private key`, err);
      }
    })();
    // a failed read is not cached: the key may be put back
    this.#signingKey.catch(() => (this.#signingKey = undefined));
    return this.#signingKey;
  }

  /**
   * Signs a PKCS#10 CSR (PEM) after checking its self-signature, its key and the
   * policy (the CN and every DNS SAN against the allowed and denied names; validity).
   */
  async sign(csrPem: string, o: SignOptions = {}): Promise<SignedCertificate> {
    if (typeof csrPem !== "string") throw new CaError("bad_csr", "the CSR must be PEM text");
    if (Buffer.byteLength(csrPem) > MAX_CSR_BYTES)
      throw new CaError("bad_csr", `the CSR is larger than ${MAX_CSR_BYTES / 1024} KiB`);
    const usage = o.usage ?? "both";
    if (usage !== "server" && usage !== "client" && usage !== "both")
      throw new CaError("bad_input", `usage must be server, client or both, got ${String(usage)}`);
    // with no validity asked for, the default shrinks to fit a stricter policy
    const days = checkDays(
      "validity",
      o.validityDays ?? Math.min(DEFAULT_LEAF_DAYS, this.policy.max_validity_days),
    );
    if (days > this.policy.max_validity_days)
      throw new CaError(
        "policy",
        `validity of ${days} days exceeds the CA policy's maximum of ${this.policy.max_validity_days}`,
      );
    const given = o.sans === undefined ? undefined : checkSans(o.sans);

    const x509 = await loadX509();
    const der = pemBlock(csrPem, ["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"]);
    if (!der) throw new CaError("bad_csr", "no PEM certificate request found");
    let csr: X509.Pkcs10CertificateRequest;
    try {
      csr = new x509.Pkcs10CertificateRequest(der);
    } catch (err) {
      throw new CaError("bad_csr", "the certificate request is not valid DER", { cause: err });
    }
    const key = leafKey(csr.publicKey.rawData);
    let signed = false;
    try {
      signed = await csr.verify(x509Crypto);
    } catch {
      // an algorithm the library cannot check counts as a bad signature
    }
    if (!signed) throw new CaError("bad_csr", "the CSR's signature does not match its public key");

    const cns = csr.subjectName.getField("CN");
    if (cns.length !== 1)
      throw new CaError("bad_csr", `the CSR must name exactly one common name, it has ${cns.length}`);
    const cn = checkCn(cns[0], "bad_csr");

    let sans: CaSans;
    if (hasSans(given)) sans = given as CaSans;
    else {
      sans = {};
      const ext = csr.getExtension("2.5.29.17");
      if (ext) {
        let names: readonly X509.GeneralName[];
        try {
          names = new x509.SubjectAlternativeNameExtension(ext.rawData).names.items;
        } catch (err) {
          throw new CaError("bad_csr", "the CSR's subject alternative names are unreadable", { cause: err });
        }
        const kinds = { dns: "dns", ip: "ip", email: "email", url: "uri" } as const;
        const found: Required<CaSans> = { dns: [], ip: [], email: [], uri: [] };
        for (const n of names) {
          const kind = kinds[n.type as keyof typeof kinds] as keyof CaSans | undefined;
          if (!kind)
            throw new CaError("bad_csr", `the CSR asks for a ${n.type} SAN, which this CA does not issue`);
          found[kind].push(n.value);
        }
        try {
          sans = checkSans(found);
        } catch (err) {
          throw new CaError("bad_csr", `the CSR's ${(err as Error).message}`, { cause: err });
        }
      }
      // TLS stacks check host names against SANs only, never the CN
      if (!hasSans(sans) && isDnsName(cn)) sans = { dns: [cn] };
    }
    checkNames(this.policy, [cn, ...(sans.dns ?? [])]);

    const interCert = new x509.X509Certificate(this.intermediatePem);
    const now = Date.now();
    const notBefore = new Date(now - BACKDATE_MS);
    const notAfter = new Date(now + days * DAY_MS);
    if (notAfter > interCert.notAfter)
      throw new CaError(
        "policy",
        `a ${days}-day certificate would outlive the intermediate, which expires ${interCert.notAfter.toISOString()}`,
      );

    const eku: string[] = [];
    if (usage !== "client") eku.push(x509.ExtendedKeyUsage.serverAuth);
    if (usage !== "server") eku.push(x509.ExtendedKeyUsage.clientAuth);
    // RSA keys may also be used for TLS 1.2 RSA key exchange
    const ku = key.startsWith("rsa")
      ? x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment
      : x509.KeyUsageFlags.digitalSignature;
    const general: X509.JsonGeneralName[] = [
      ...(sans.dns ?? []).map((value) => ({ type: "dns" as const, value })),
      ...(sans.ip ?? []).map((value) => ({ type: "ip" as const, value })),
      ...(sans.email ?? []).map((value) => ({ type: "email" as const, value })),
      ...(sans.uri ?? []).map((value) => ({ type: "url" as const, value })),
    ];
    // the CA decides the extensions: anything else the CSR asks for (CA:true, ...) is ignored
    const extensions: X509.Extension[] = [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(ku, true),
      new x509.ExtendedKeyUsageExtension(eku, false),
      await x509.SubjectKeyIdentifierExtension.create(csr.publicKey, false, x509Crypto),
      await x509.AuthorityKeyIdentifierExtension.create(interCert, false, x509Crypto),
    ];
    if (general.length) extensions.push(new x509.SubjectAlternativeNameExtension(general, false));

    const serial = certSerial();
    const cert = await x509.X509CertificateGenerator.create(
      {
        serialNumber: serial,
        subject: csr.subjectName,
        issuer: interCert.subjectName,
        notBefore,
        notAfter,
        signingAlgorithm: ALGORITHMS[this.algorithm].sign,
        publicKey: csr.publicKey,
        signingKey: await this.#key(),
        extensions,
      },
      x509Crypto,
    );
    const certificatePem = `${cert.toString("pem")}\n`;
    // the file first: an index entry always has its certificate
    await writeNew(join(this.dir, CERTS, `${serial}.pem`), certificatePem, 0o644);
    await mutateIndex(this.dir, (index) => {
      if (index.certificates.some((c) => c.serial === serial))
        throw new CaError("bad_state", `serial ${serial} was issued before`);
      index.certificates.push({
        serial,
        subject: cert.subject,
        cn,
        sans,
        usage,
        key,
        not_before: notBefore.toISOString(),
        not_after: notAfter.toISOString(),
        issued_at: new Date(now).toISOString(),
      });
    });
    return { certificatePem, chainPem: this.chainPem, serial, notAfter };
  }

  /** Marks a certificate revoked; it is in every CRL from now until it expires. */
  async revoke(serial: string, reason: RevocationReason = "unspecified"): Promise<CertificateInfo> {
    if (!REVOCATION_REASONS.includes(reason))
      throw new CaError("bad_input", `revocation reason must be one of ${REVOCATION_REASONS.join(", ")}`);
    const want = normalizeSerial(serial);
    return mutateIndex(this.dir, (index) => {
      const rec = index.certificates.find((c) => c.serial === want);
      if (!rec) throw new CaError("not_found", `no certificate with serial ${want}`);
      if (rec.revoked_at)
        throw new CaError("revoked", `certificate ${want} was revoked at ${rec.revoked_at}`);
      rec.revoked_at = new Date().toISOString();
      rec.revocation_reason = reason;
      return info(rec, Date.now());
    });
  }

  /** Every certificate issued, oldest first. */
  async list(): Promise<CertificateInfo[]> {
    const now = Date.now();
    return (await readIndex(this.dir)).certificates.map((r) => info(r, now));
  }

  /** The issued certificate with this serial (PEM). */
  async certificate(serial: string): Promise<string> {
    const want = normalizeSerial(serial);
    const path = join(this.dir, CERTS, `${want}.pem`);
    try {
      return await readFile(path, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT")
        throw new CaError("not_found", `no certificate with serial ${want}`);
      throw fileError("io", `cannot read ${path}`, err);
    }
  }

  /**
   * A CRL (PEM) signed by the intermediate, listing revoked certificates that have not
   * expired yet (an expired one is refused anyway, so it need not be listed).
   */
  async crl(o: CrlOptions = {}): Promise<string> {
    const days = checkDays("CRL next update", o.nextUpdateDays ?? DEFAULT_CRL_DAYS);
    const x509 = await loadX509();
    const signingKey = await this.#key();
    const interCert = new x509.X509Certificate(this.intermediatePem);
    const aki = await x509.AuthorityKeyIdentifierExtension.create(interCert, false, x509Crypto);
    return mutateIndex(this.dir, async (index) => {
      index.crl_number += 1;
      const now = Date.now();
      const crl = await x509.X509CrlGenerator.create(
        {
          issuer: interCert.subjectName,
          thisUpdate: new Date(now),
          nextUpdate: new Date(now + days * DAY_MS),
          signingAlgorithm: ALGORITHMS[this.algorithm].sign,
          signingKey,
          extensions: [aki, new x509.Extension("2.5.29.20", false, derInteger(index.crl_number))],
          entries: index.certificates
            .filter((c) => c.revoked_at && Date.parse(c.not_after) > now)
            .map((c) => ({
              serialNumber: c.serial,
              revocationDate: new Date(c.revoked_at as string),
              // RFC 5280: leave the reason out rather than say "unspecified"
              ...(c.revocation_reason && c.revocation_reason !== "unspecified"
                ? { reason: x509.X509CrlReason[c.revocation_reason] }
                : {}),
            })),
        },
        x509Crypto,
      );
      // RFC 7468's label; the library writes "CRL", which openssl does not read
      return `${x509.PemConverter.encode(crl.rawData, "X509 CRL")}\n`;
    });
  }

  /** Whether `certPem` (its first certificate) was issued by this CA, is in date and not revoked. */
  async verifyChain(certPem: string, at: Date = new Date()): Promise<ChainVerdict> {
    if (typeof certPem !== "string" || Buffer.byteLength(certPem) > MAX_CSR_BYTES)
      return { valid: false, reason: "malformed", message: "not a PEM certificate of a sensible size" };
    const der = pemBlock(certPem, ["CERTIFICATE"]);
    let leaf: X509Certificate;
    try {
      if (!der) throw new Error("no PEM block");
      leaf = new X509Certificate(der);
    } catch {
      return { valid: false, reason: "malformed", message: "no readable PEM certificate" };
    }
    const serial = normalizeSerial(leaf.serialNumber);
    const root = new X509Certificate(this.rootPem);
    const inter = new X509Certificate(this.intermediatePem);
    if (leaf.ca || !leaf.checkIssued(inter) || !leaf.verify(inter.publicKey) || !inter.verify(root.publicKey))
      return {
        valid: false,
        reason: "untrusted",
        message: "not a leaf signed by this CA's intermediate",
        serial,
      };
    const t = at.getTime();
    for (const c of [leaf, inter, root]) {
      if (Date.parse(c.validFrom) > t)
        return {
          valid: false,
          reason: "not_yet_valid",
          message: `${c.subject} is valid from ${c.validFrom}`,
          serial,
        };
      if (Date.parse(c.validTo) < t)
        return { valid: false, reason: "expired", message: `${c.subject} expired ${c.validTo}`, serial };
    }
    const rec = (await readIndex(this.dir)).certificates.find((c) => c.serial === serial);
    // signed with our key yet never recorded: the key was misused, or the index lost it
    if (!rec)
      return {
        valid: false,
        reason: "unknown",
        message: `serial ${serial} is not in the CA's index`,
        serial,
      };
    if (rec.revoked_at)
      return { valid: false, reason: "revoked", message: `revoked at ${rec.revoked_at}`, serial };
    return { valid: true, serial, subject: leaf.subject, notAfter: new Date(leaf.validTo) };
  }
}
