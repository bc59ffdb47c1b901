import { createHash, createPrivateKey, sign, verify, X509Certificate, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { SecurityError } from "./errors.js";

// The x509 `file` security provider of go-choria (providers/security/filesec): RSA keys
// and certificates from files, trust rooted in a CA file. It signs v1 requests with RSA
// PKCS#1 v1.5 SHA-256 and decides whether a caller's certificate may act as its caller id.

/** go-choria's defaults for plugin.choria.security.privileged_users and certname_whitelist. */
export const DEFAULT_PRIVILEGED_USERS: readonly string[] = [
  "\\.privileged.mcollective$",
  "\\.privileged.choria$",
];
export const DEFAULT_CERTNAME_ALLOW_LIST: readonly string[] = ["\\.mcollective$", "\\.choria$"];

const CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";
// the caller id's name part, as go-choria extracts it
const CALLER_ID = /^[a-z]+=([\w.-]+)/;
const MAX_CHAIN = 8;
const MAX_CACHED = 32_768;
// a pubcert is one certificate, maybe with its intermediates: a few KiB
export const MAX_PUBCERT_BYTES = 64 * 1024;

export interface FileSecurityOptions {
  certFile: string;
  keyFile: string;
  caFile: string;
  /** the certname to act as; default the certificate's CN. Must be a name of the certificate. */
  identity?: string | undefined;
  /** regexes; a certificate with a matching name may use any caller id */
  privilegedUsers?: readonly string[] | undefined;
  /** regexes; a non-privileged certname must match one */
  allowList?: readonly string[] | undefined;
}

export interface CallerVerdict {
  certname: string;
  privileged: boolean;
  /** unix ms after which the certificate is no longer valid */
  notAfter: number;
}

interface CachedCert {
  key: KeyObject;
  names: string[];
  notBefore: number;
  notAfter: number;
  /** chain verified against our CA; undefined until first checked */
  chainError?: SecurityError | undefined;
  chained: boolean;
}

function read(path: string, what: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    throw new SecurityError("io", `cannot read ${what} ${path}: ${(err as Error).message}`, { cause: err });
  }
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Every certificate in a PEM bundle, in order. */
export function parseCertificates(pem: string, what: string): X509Certificate[] {
  const blocks = pem.match(PEM_CERT) ?? [];
  if (blocks.length === 0) throw new SecurityError("malformed", `${what} holds no PEM certificate`);
  return blocks.map((b) => {
    try {
      return new X509Certificate(b);
    } catch (err) {
      throw new SecurityError(
        "malformed",
        `${what} is not a readable certificate: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
  });
}

/** The subject CN and DNS SANs: the names go-choria matches a certname against. */
export function certificateNames(cert: X509Certificate): string[] {
  const names: string[] = [];
  for (const line of cert.subject.split("\n")) if (line.startsWith("CN=")) names.push(line.slice(3));
  for (const part of (cert.subjectAltName ?? "").split(", "))
    if (part.startsWith("DNS:")) names.push(part.slice(4));
  return names;
}

function compile(patterns: readonly string[], key: string): RegExp[] {
  return patterns.map((p) => {
    try {
      return new RegExp(p);
    } catch (err) {
      throw new SecurityError(
        "malformed",
        `${key} pattern ${JSON.stringify(p)} is not a regular expression`,
        {
          cause: err,
        },
      );
    }
  });
}

/**
 * The x509 provider. Checks of a caller's certificate (chain to the CA, clientAuth,
 * validity, names) are cached per certificate until it expires, because every request
 * of that caller carries the same PEM; the name rules are re-applied per request.
 */
export class FileSecurity {
  readonly certname: string;
  /** `choria=<certname>` as go-choria's file provider names callers */
  readonly callerId: string;
  readonly certPem: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly caFile: string;
  /** unix ms */
  readonly notAfter: number;
  private readonly key: KeyObject;
  private readonly roots: X509Certificate[];
  private readonly privileged: RegExp[];
  private readonly allowList: RegExp[];
  private readonly certs = new Map<string, CachedCert>();
  /** certificate checks actually performed (tests prove the cache with it) */
  readonly stats = { chainChecks: 0, signatureChecks: 0 };

  constructor(opts: FileSecurityOptions) {
    this.certFile = opts.certFile;
    this.keyFile = opts.keyFile;
    this.caFile = opts.caFile;
    this.roots = parseCertificates(read(opts.caFile, "CA file"), `CA file ${opts.caFile}`);
    this.certPem = read(opts.certFile, "certificate file").trim();
    const own = parseCertificates(this.certPem, `certificate file ${opts.certFile}`)[0] as X509Certificate;
    try {
      this.key = createPrivateKey(read(opts.keyFile, "key file"));
    } catch (err) {
      if (err instanceof SecurityError) throw err;
      throw new SecurityError("bad_key", `key file ${opts.keyFile} is not a readable private key`, {
        cause: err,
      });
    }
    if (this.key.asymmetricKeyType !== "rsa")
      throw new SecurityError(
        "bad_key",
        `key file ${opts.keyFile} holds a ${String(this.key.asymmetricKeyType)} key: protocol v1 signs with RSA`,
      );
    if (!own.checkPrivateKey(this.key))
      throw new SecurityError(
        "bad_key",
        `key file ${opts.keyFile} does not belong to certificate ${opts.certFile}`,
      );
    const names = certificateNames(own);
    const certname = opts.identity ?? names[0];
    if (certname === undefined || certname === "")
      throw new SecurityError("malformed", `certificate ${opts.certFile} has no CN or DNS name`);
    if (!names.includes(certname))
      throw new SecurityError(
        "name_mismatch",
        `identity ${certname} does not match certificate ${opts.certFile}, which is for ${names.join(", ")}`,
      );
    this.certname = certname;
    this.callerId = `choria=${certname}`;
    this.notAfter = Date.parse(own.validTo);
    this.privileged = compile(opts.privilegedUsers ?? DEFAULT_PRIVILEGED_USERS, "privileged_users");
    this.allowList = compile(opts.allowList ?? DEFAULT_CERTNAME_ALLOW_LIST, "certname_whitelist");
  }

  /** RSA PKCS#1 v1.5 over SHA-256, base64'd on the wire by the codec. */
  sign(data: Uint8Array): Buffer {
    return sign("sha256", data, this.key);
  }

  /** Whether `sig` is `pubcert`'s signature over `data`; the certificate itself is judged by verifyCaller. */
  verifySignature(pubcertPem: string, data: Uint8Array, sig: Uint8Array): boolean {
    let c: CachedCert;
    try {
      c = this.cert(pubcertPem);
    } catch {
      return false;
    }
    return this.verifyWith(c, data, sig);
  }

  private verifyWith(c: CachedCert, data: Uint8Array, sig: Uint8Array): boolean {
    this.stats.signatureChecks++;
    try {
      return verify("sha256", data, c.key, sig);
    } catch {
      return false;
    }
  }

  /**
   * go-choria's ShouldAllowCaller: the certificate must chain to our CA with the
   * clientAuth usage and be valid now; a privileged certificate may then act as any
   * caller, any other must carry the caller id's certname as CN or DNS SAN and that
   * name must be on the allow-list. Throws SecurityError with a code a counter can use.
   */
  verifyCaller(
    callerId: string,
    pubcertPem: string,
    nowMs: number = Date.now(),
    signed?: { data: Uint8Array; signature: Uint8Array },
  ): CallerVerdict {
    const c = this.cert(pubcertPem);
    const verdict = this.judge(c, pubcertPem, callerId, nowMs);
    // with `signed`, the signature is checked against the same parsed certificate
    if (signed && !this.verifyWith(c, signed.data, signed.signature))
      throw new SecurityError(
        "bad_signature",
        `the signature does not verify with ${callerId}'s certificate`,
      );
    return verdict;
  }

  private judge(c: CachedCert, pubcertPem: string, callerId: string, nowMs: number): CallerVerdict {
    const m = CALLER_ID.exec(callerId);
    if (!m)
      throw new SecurityError(
        "caller_mismatch",
        `caller id ${JSON.stringify(callerId.slice(0, 100))} names no certname`,
      );
    const certname = m[1] as string;
    if (!c.chained) {
      this.stats.chainChecks++;
      c.chainError = this.chain(pubcertPem);
      c.chained = true;
    }
    if (c.chainError) throw c.chainError;
    if (nowMs < c.notBefore)
      throw new SecurityError("not_yet_valid", `certificate for ${c.names[0]} is not valid yet`);
    if (nowMs > c.notAfter)
      throw new SecurityError(
        "expired",
        `certificate for ${c.names[0]} expired at ${new Date(c.notAfter).toISOString()}`,
      );
    const privileged = c.names.some((n) => this.isPrivileged(n));
    if (privileged) return { certname, privileged, notAfter: c.notAfter };
    if (!c.names.includes(certname))
      throw new SecurityError(
        "caller_mismatch",
        `caller ${callerId} does not match its certificate, which is for ${c.names.join(", ")}`,
      );
    if (!this.allowList.some((r) => r.test(certname)))
      throw new SecurityError("not_allowed", `certname ${certname} is not on the certname allow-list`);
    return { certname, privileged, notAfter: c.notAfter };
  }

  /** Whether `name` matches the privileged_users patterns (such a certificate signs for anyone). */
  isPrivileged(name: string): boolean {
    return this.privileged.some((r) => r.test(name));
  }

  /** Parsed once per distinct PEM (bounded, oldest first out). */
  private cert(pem: string): CachedCert {
    if (pem.length > MAX_PUBCERT_BYTES)
      throw new SecurityError("malformed", `caller certificate of ${pem.length} bytes is too large`);
    const k = createHash("sha256").update(pem).digest("base64");
    const hit = this.certs.get(k);
    if (hit) return hit;
    const leaf = parseCertificates(pem, "caller certificate")[0] as X509Certificate;
    const key = leaf.publicKey;
    if (key.asymmetricKeyType !== "rsa")
      throw new SecurityError(
        "bad_key",
        `caller certificate has a ${String(key.asymmetricKeyType)} key, v1 needs RSA`,
      );
    const c: CachedCert = {
      key,
      names: certificateNames(leaf),
      notBefore: Date.parse(leaf.validFrom),
      notAfter: Date.parse(leaf.validTo),
      chained: false,
    };
    if (this.certs.size >= MAX_CACHED) this.certs.delete(this.certs.keys().next().value as string);
    this.certs.set(k, c);
    return c;
  }

  /** Walks leaf → intermediates (from the pubcert bundle) → one of our roots; undefined when sound. */
  private chain(pem: string): SecurityError | undefined {
    let bundle: X509Certificate[];
    try {
      bundle = parseCertificates(pem, "caller certificate");
    } catch (err) {
      return err as SecurityError;
    }
    const leaf = bundle[0] as X509Certificate;
    if (!(leaf.keyUsage ?? [CLIENT_AUTH]).includes(CLIENT_AUTH))
      return new SecurityError(
        "untrusted",
        `certificate for ${certificateNames(leaf)[0]} is not for client authentication`,
      );
    const now = Date.now();
    let cur = leaf;
    for (let depth = 0; depth < MAX_CHAIN; depth++) {
      const root = this.roots.find((r) => cur.checkIssued(r) && cur.verify(r.publicKey));
      if (root) {
        if (now > Date.parse(root.validTo))
          return new SecurityError("expired", "the CA certificate has expired");
        return undefined;
      }
      const next = bundle.find((i) => i !== cur && i.ca && cur.checkIssued(i) && cur.verify(i.publicKey));
      if (!next) break;
      if (now > Date.parse(next.validTo) || now < Date.parse(next.validFrom))
        return new SecurityError(
          "expired",
          `intermediate ${next.subject.replaceAll("\n", ", ")} is not valid now`,
        );
      cur = next;
    }
    return new SecurityError(
      "untrusted",
      `certificate for ${certificateNames(leaf)[0] ?? "?"} is not issued by the CA in ${this.caFile}`,
    );
  }
}
