import {
  createCipheriv,
  createDecipheriv,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  randomBytes,
  type KeyObject,
} from "node:crypto";
import { SecurityError } from "./errors.js";
import { publicHexFromSeed } from "./keys.js";
import { nkeySeedToEd25519Seed } from "./nkeys.js";
import {
  decodeTokenUnverified,
  issueToken,
  verifyToken,
  type Issuer,
  type StandardClaims,
} from "./tokens.js";

/** A provisioning.jwt: how an unprovisioned node finds and reaches its provisioner. */
export interface ProvisioningClaims extends StandardClaims {
  purpose: "choria_provisioning";
  /** the token every choria_provision request must carry; never empty */
  cht: string;
  /** connect with TLS */
  chs?: boolean;
  /** broker URLs, comma separated (exactly one of chu / chsrv) */
  chu?: string;
  /** SRV domain: brokers from _choria-provisioner._tcp.<chsrv> */
  chsrv?: string;
  /** provision when the config does not say plugin.choria.server.provision */
  chpd?: boolean;
  /** registration data file */
  chrd?: string;
  /** facts file */
  chf?: string;
  /** Chorus: the PROVISIONING-account NATS user JWT */
  chusr?: string;
  /** Chorus: that user's nkey seed text ("SU...") */
  chpwd?: string;
  extensions?: Record<string, unknown>;
  ou?: string;
  v2?: boolean;
  update?: boolean;
}

/** The claims a provisioning token is made of, plus its lifetime. */
export type ProvisioningTokenOptions = Pick<
  ProvisioningClaims,
  | "cht"
  | "chs"
  | "chu"
  | "chsrv"
  | "chpd"
  | "chrd"
  | "chf"
  | "chusr"
  | "chpwd"
  | "extensions"
  | "ou"
  | "v2"
  | "update"
> & { validityS: number };

const PURPOSE = "choria_provisioning";

function nonEmpty(v: unknown): v is string {
  return typeof v === "string" && v.trim() !== "";
}

/** What every provisioning token must hold, whoever made it. */
function checkProvisioningClaims(c: Record<string, unknown>): void {
  if (!nonEmpty(c.cht))
    throw new SecurityError("malformed", "provisioning token has no cht (provisioning token)");
  if (nonEmpty(c.chu) === nonEmpty(c.chsrv))
    throw new SecurityError("malformed", "provisioning token must set exactly one of chu and chsrv");
  for (const k of ["chs", "chpd", "v2", "update"]) {
    if (c[k] !== undefined && typeof c[k] !== "boolean")
      throw new SecurityError("malformed", `provisioning token ${k} is not a boolean`);
  }
  for (const k of ["chu", "chsrv", "chrd", "chf", "chusr", "chpwd", "ou"]) {
    if (c[k] !== undefined && typeof c[k] !== "string")
      throw new SecurityError("malformed", `provisioning token ${k} is not a string`);
  }
  if (nonEmpty(c.chusr) !== nonEmpty(c.chpwd))
    throw new SecurityError("malformed", "provisioning token must set chusr and chpwd together");
  const ext = c.extensions;
  if (ext !== undefined && (typeof ext !== "object" || ext === null || Array.isArray(ext)))
    throw new SecurityError("malformed", "provisioning token extensions is not an object");
}

/**
 * Signs a provisioning token with an org issuer. Only org issuers: a node whose config
 * names no issuers trusts the token's own `iss`, which must then be the org key itself.
 */
export function createProvisioningToken(c: ProvisioningTokenOptions, issuer: Issuer): string {
  if (issuer.kind !== "org")
    throw new SecurityError("bad_chain", "provisioning tokens are signed by an org issuer");
  if (!Number.isFinite(c.validityS) || c.validityS <= 0)
    throw new SecurityError("malformed", "token validity must be a positive number of seconds");
  const { validityS, ...claims } = c;
  checkProvisioningClaims(claims);
  // verifyToken wants a public key in every token: the key the token lets a node
  // connect with when it carries one, else the issuer's own
  const publicKey = c.chpwd ? publicHexFromSeed(nkeySeedToEd25519Seed(c.chpwd)) : issuer.publicHex;
  const body: Record<string, unknown> = { purpose: PURPOSE, ...claims, public_key: publicKey };
  for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k];
  return issueToken(body, validityS, issuer);
}

/**
 * Checks a provisioning token against trusted org issuer keys (hex): signature, times,
 * purpose, a non-empty `cht` and exactly one of `chu`/`chsrv`. Throws SecurityError.
 */
export function verifyProvisioningToken(
  jwt: string,
  issuers: string[],
  nowS: number = Math.floor(Date.now() / 1000),
): ProvisioningClaims {
  if (issuers.length === 0)
    throw new SecurityError("untrusted", "no trusted issuers for the provisioning token");
  const c = verifyToken(jwt, issuers, nowS) as unknown as ProvisioningClaims & Record<string, unknown>;
  if (c.purpose !== PURPOSE)
    throw new SecurityError("wrong_purpose", `token purpose is ${String(c.purpose)}, need ${PURPOSE}`);
  checkProvisioningClaims(c);
  return c;
}

/**
 * The org issuer key (hex) a provisioning token names in `iss`, for a node that has no
 * issuers configured: its provisioning.jwt is its root of trust. Not a verification.
 */
export function provisioningTokenIssuer(jwt: string): string {
  const iss = decodeTokenUnverified(jwt).iss;
  const m = typeof iss === "string" ? /^I-([0-9a-f]{64})$/.exec(iss) : null;
  if (!m)
    throw new SecurityError(
      "untrusted",
      "provisioning token is not signed by an org issuer; configure the issuers",
    );
  return m[1] as string;
}

// ---- key transport: the provisioner sends the node a private key only it can read ----

/** A node's X25519 pair for one process; the private half never leaves memory. */
export interface ProvisioningKeyPair {
  publicHex: string;
  privateKey: KeyObject;
}

const HKDF_INFO = Buffer.from("chorus provisioning key v1");
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

export function provisioningKeyPair(): ProvisioningKeyPair {
  const { publicKey, privateKey } = generateKeyPairSync("x25519");
  const x = publicKey.export({ format: "jwk" }).x as string;
  return { publicHex: Buffer.from(x, "base64url").toString("hex"), privateKey };
}

function x25519Public(hex: string, who: string): KeyObject {
  if (typeof hex !== "string" || !/^[0-9a-fA-F]{64}$/.test(hex))
    throw new SecurityError("bad_key", `${who} ECDH public key must be 32 bytes of hex`);
  try {
    return createPublicKey({
      key: { kty: "OKP", crv: "X25519", x: Buffer.from(hex, "hex").toString("base64url") },
      format: "jwk",
    });
  } catch (err) {
    throw new SecurityError("bad_key", `${who} ECDH public key is not usable`, { cause: err });
  }
}

/** Both sides derive the same AES key; salting with both public keys binds it to this pair. */
function sharedKey(privateKey: KeyObject, peer: KeyObject, provisionerHex: string, nodeHex: string): Buffer {
  let secret: Buffer;
  try {
    secret = diffieHellman({ privateKey, publicKey: peer });
  } catch (err) {
    throw new SecurityError("bad_key", "ECDH key agreement failed", { cause: err });
  }
  // a low-order peer key gives an all-zero secret anyone can compute
  if (secret.every((b) => b === 0)) throw new SecurityError("bad_key", "ECDH peer key is of low order");
  const salt = Buffer.concat([
    Buffer.from(provisionerHex.toLowerCase(), "hex"),
    Buffer.from(nodeHex.toLowerCase(), "hex"),
  ]);
  return Buffer.from(hkdfSync("sha256", secret, salt, HKDF_INFO, 32));
}

/**
 * Encrypts `plain` (a private key) for the node whose `jwt` answer carried
 * `nodePublicHex`: a fresh X25519 pair, HKDF-SHA256 and AES-256-GCM. `sealed` is
 * base64(nonce || ciphertext || tag); send `ecdhPublic` along as configure's ecdh_public.
 */
export function sealForNode(plain: Buffer, nodePublicHex: string): { sealed: string; ecdhPublic: string } {
  const peer = x25519Public(nodePublicHex, "node");
  const own = provisioningKeyPair();
  const key = sharedKey(own.privateKey, peer, own.publicHex, nodePublicHex);
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv("aes-256-gcm", key, nonce);
  const body = Buffer.concat([cipher.update(plain), cipher.final()]);
  return {
    sealed: Buffer.concat([nonce, body, cipher.getAuthTag()]).toString("base64"),
    ecdhPublic: own.publicHex,
  };
}

/** The node's side of sealForNode; throws SecurityError (code tampered) when anything was changed. */
export function openFromProvisioner(
  sealed: string,
  provisionerPublicHex: string,
  own: ProvisioningKeyPair,
): Buffer {
  const peer = x25519Public(provisionerPublicHex, "provisioner");
  const raw =
    typeof sealed === "string" && /^[A-Za-z0-9+/]+={0,2}$/.test(sealed.trim())
      ? Buffer.from(sealed.trim(), "base64")
      : undefined;
  if (!raw || raw.length <= NONCE_BYTES + TAG_BYTES)
    throw new SecurityError("malformed", "sealed key is not base64 of nonce, ciphertext and tag");
  const key = sharedKey(own.privateKey, peer, provisionerPublicHex, own.publicHex);
  const decipher = createDecipheriv("aes-256-gcm", key, raw.subarray(0, NONCE_BYTES));
  decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES));
  try {
    return Buffer.concat([
      decipher.update(raw.subarray(NONCE_BYTES, raw.length - TAG_BYTES)),
      decipher.final(),
    ]);
  } catch (err) {
    throw new SecurityError(
      "tampered",
      "sealed key does not authenticate: wrong keys or changed in transit",
      {
        cause: err,
      },
    );
  }
}
