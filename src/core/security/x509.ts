import { createPrivateKey, randomBytes, webcrypto } from "node:crypto";
import type * as X509 from "@peculiar/x509";
import { SecurityError } from "./errors.js";

export interface CertPair {
  certPem: string;
  keyPem: string;
}

export interface SubjectAltNames {
  dns?: string[];
  ip?: string[];
  /** also add DNS localhost, IP 127.0.0.1 and ::1 (a broker on this host) */
  localhost?: boolean;
}

export type CertUsage = "server" | "client" | "both";

// Loaded on first use: most processes never make certificates, and the library
// needs the Reflect metadata API (tsyringe) in place before it loads.
let lib: Promise<typeof X509> | undefined;
/** @peculiar/x509, loaded on first use (every module making certificates shares it). */
export function loadX509(): Promise<typeof X509> {
  lib ??= import("reflect-metadata").then(() => import("@peculiar/x509"));
  return lib;
}

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;
// @peculiar/x509 is typed against the DOM Crypto; node's webcrypto is the same API
const crypto = webcrypto;
export const x509Crypto = webcrypto as unknown as NonNullable<
  Parameters<typeof X509.X509CertificateGenerator.create>[1]
>;
const P256 = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIGNING = { name: "ECDSA", hash: "SHA-256" } as const;
// a little slack so certs work at once on hosts whose clocks are a bit behind
const BACKDATE_MS = 60 * 60 * 1000;

/** The SANs a dev broker needs to be reachable on loopback by name and address. */
export const LOCALHOST_SANS: { readonly dns: readonly string[]; readonly ip: readonly string[] } = {
  dns: ["localhost"],
  ip: ["127.0.0.1", "::1"],
};

/** 16 random bytes as a positive DER integer with no leading zero byte, so its hex is the same everywhere. */
export function certSerial(): string {
  const b = randomBytes(16);
  b[0] = (b[0] as number) & 0x7f || 0x01;
  return b.toString("hex");
}

function validity(days: number): { notBefore: Date; notAfter: Date } {
  const now = Date.now();
  return { notBefore: new Date(now - BACKDATE_MS), notAfter: new Date(now + days * 86_400_000) };
}

async function keyPem(key: CryptoKey): Promise<string> {
  const x509 = await loadX509();
  const der = await crypto.subtle.exportKey("pkcs8", key);
  return x509.PemConverter.encode(der, "PRIVATE KEY");
}

async function newKeys(): Promise<CryptoKeyPair> {
  return crypto.subtle.generateKey(P256, true, ["sign", "verify"]);
}

const RSA_SIGNING = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" } as const;

/** The CA key for signing, and the algorithm it signs with: ECDSA P-256/P-384 or RSA. */
async function importSigningKey(
  pem: string,
): Promise<{ key: CryptoKey; algorithm: typeof SIGNING | typeof RSA_SIGNING }> {
  let details: { type: string | undefined; curve: string | undefined };
  try {
    const k = createPrivateKey(pem);
    details = { type: k.asymmetricKeyType, curve: k.asymmetricKeyDetails?.namedCurve };
  } catch (err) {
    throw new SecurityError("bad_key", "CA key is not a readable private key", { cause: err });
  }
  // webcrypto imports PKCS#8 only; an RSA CA (chorus ca) may hold PKCS#1
  const der = createPrivateKey(pem).export({ type: "pkcs8", format: "der" });
  if (details.type === "rsa") {
    const key = await crypto.subtle.importKey("pkcs8", der, RSA_SIGNING, false, ["sign"]);
    return { key, algorithm: RSA_SIGNING };
  }
  const namedCurve = { prime256v1: "P-256", secp384r1: "P-384" }[details.curve ?? ""];
  if (!namedCurve)
    throw new SecurityError(
      "bad_key",
      `CA key must be RSA, ECDSA P-256 or P-384, got ${details.curve ?? details.type ?? "another type"}`,
    );
  const key = await crypto.subtle.importKey("pkcs8", der, { name: "ECDSA", namedCurve }, false, ["sign"]);
  return { key, algorithm: SIGNING };
}

/** A self-signed ECDSA P-256 CA for development TLS. */
export async function createCA(cn: string, validityDays: number): Promise<CertPair> {
  const x509 = await loadX509();
  const keys = await newKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: certSerial(),
      name: `CN=${cn}`,
      ...validity(validityDays),
      signingAlgorithm: SIGNING,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature,
          true,
        ),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, x509Crypto),
      ],
    },
    x509Crypto,
  );
  return { certPem: cert.toString("pem"), keyPem: await keyPem(keys.privateKey) };
}

export interface IssueOptions {
  /** an RSA 2048 leaf key instead of ECDSA P-256: protocol v1 signs with the leaf's RSA key */
  rsa?: boolean;
  /** explicit validity (tests make expired and future certificates with it) */
  notBefore?: Date;
  notAfter?: Date;
}

const RSA_LEAF = {
  name: "RSASSA-PKCS1-v1_5",
  modulusLength: 2048,
  publicExponent: new Uint8Array([1, 0, 1]),
  hash: "SHA-256",
} as const;

/** Issues a leaf certificate (ECDSA P-256, or RSA) signed by `ca`, with SANs and EKUs for `usage`. */
export async function issueCert(
  ca: CertPair,
  cn: string,
  sans: SubjectAltNames,
  validityDays: number,
  usage: CertUsage,
  opts: IssueOptions = {},
): Promise<CertPair> {
  const x509 = await loadX509();
  const caCert = new x509.X509Certificate(ca.certPem);
  const { key: signingKey, algorithm } = await importSigningKey(ca.keyPem);
  const keys = opts.rsa
    ? ((await crypto.subtle.generateKey(RSA_LEAF, true, ["sign", "verify"])) as CryptoKeyPair)
    : await newKeys();
  const eku: string[] = [];
  if (usage === "server" || usage === "both") eku.push(x509.ExtendedKeyUsage.serverAuth);
  if (usage === "client" || usage === "both") eku.push(x509.ExtendedKeyUsage.clientAuth);
  const dns = new Set([...(sans.dns ?? []), ...(sans.localhost ? LOCALHOST_SANS.dns : [])]);
  const ips = new Set([...(sans.ip ?? []), ...(sans.localhost ? LOCALHOST_SANS.ip : [])]);
  const names: X509.JsonGeneralName[] = [
    ...[...dns].map((value) => ({ type: "dns" as const, value })),
    ...[...ips].map((value) => ({ type: "ip" as const, value })),
  ];
  const extensions: X509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension(eku, false),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, x509Crypto),
    await x509.AuthorityKeyIdentifierExtension.create(caCert, false, x509Crypto),
  ];
  if (names.length) extensions.push(new x509.SubjectAlternativeNameExtension(names, false));
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: certSerial(),
      subject: `CN=${cn}`,
      issuer: caCert.subject,
      ...validity(validityDays),
      ...(opts.notBefore && { notBefore: opts.notBefore }),
      ...(opts.notAfter && { notAfter: opts.notAfter }),
      signingAlgorithm: algorithm,
      publicKey: keys.publicKey,
      signingKey,
      extensions,
    },
    x509Crypto,
  );
  return { certPem: cert.toString("pem"), keyPem: await keyPem(keys.privateKey) };
}
