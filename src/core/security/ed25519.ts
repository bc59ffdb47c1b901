import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign as nodeSign,
  verify as nodeVerify,
  type KeyObject,
} from "node:crypto";
import { createRequire } from "node:module";

/**
 * ed25519 sign and verify, on libsodium (sodium-native) when it loads and on Node's
 * OpenSSL otherwise. On this project's machines libsodium signs ~1.5x and verifies
 * ~1.8x faster than OpenSSL 3 through node:crypto, and signing and verifying are the
 * dominant per-node and per-reply costs of a fleet request. ed25519 signatures are
 * deterministic, so both backends produce byte-identical signatures.
 * `CHORUS_ED25519=node` forces node:crypto (to compare, or where the addon cannot load).
 */
export interface Ed25519Backend {
  readonly name: "libsodium" | "node:crypto";
  /** A signing key from a 32-byte seed, and its 32-byte public key. */
  fromSeed(seed: Uint8Array): { key: SigningKey; publicRaw: Buffer };
  /** A fresh random key pair; the seed is returned as well for callers that store it. */
  generate(): { key: SigningKey; publicRaw: Buffer; seed: Buffer };
  sign(key: SigningKey, data: Uint8Array): Buffer;
  /** Undefined when the bytes are not a usable public key. */
  verifyingKey(publicRaw: Uint8Array): VerifyingKey | undefined;
  verify(key: VerifyingKey, data: Uint8Array, sig: Uint8Array): boolean;
}

/** libsodium's 64-byte secret key, or an OpenSSL KeyObject. */
export type SigningKey = Uint8Array | KeyObject;
/** libsodium's raw 32-byte public key, or an OpenSSL KeyObject. */
export type VerifyingKey = Uint8Array | KeyObject;

interface Sodium {
  crypto_sign_detached(sig: Uint8Array, m: Uint8Array, sk: Uint8Array): void;
  crypto_sign_verify_detached(sig: Uint8Array, m: Uint8Array, pk: Uint8Array): boolean;
  crypto_sign_seed_keypair(pk: Uint8Array, sk: Uint8Array, seed: Uint8Array): void;
  crypto_sign_keypair(pk: Uint8Array, sk: Uint8Array): void;
}

// Raw 32-byte keys are imported as JWK: on Node 20 / OpenSSL 3 about 12x faster than
// DER (PKCS8 ~465 us, SPKI ~80 us; JWK ~37 us and ~8 us).
const nodeBackend: Ed25519Backend = {
  name: "node:crypto",
  fromSeed(seed) {
    const key = createPrivateKey({
      // the private key is derived from d alone; x is required by the parser but not used
      key: { kty: "OKP", crv: "Ed25519", d: Buffer.from(seed).toString("base64url"), x: "" },
      format: "jwk",
    });
    const x = createPublicKey(key).export({ format: "jwk" }).x as string;
    return { key, publicRaw: Buffer.from(x, "base64url") };
  },
  generate() {
    const { privateKey } = generateKeyPairSync("ed25519");
    const jwk = privateKey.export({ format: "jwk" });
    return {
      key: privateKey,
      publicRaw: Buffer.from(jwk.x as string, "base64url"),
      seed: Buffer.from(jwk.d as string, "base64url"),
    };
  },
  sign: (key, data) => nodeSign(null, data, key as KeyObject),
  verifyingKey(publicRaw) {
    try {
      return createPublicKey({
        key: { kty: "OKP", crv: "Ed25519", x: Buffer.from(publicRaw).toString("base64url") },
        format: "jwk",
      });
    } catch {
      return undefined;
    }
  },
  verify: (key, data, sig) => nodeVerify(null, data, key as KeyObject, sig),
};

function sodiumBackend(s: Sodium): Ed25519Backend {
  return {
    name: "libsodium",
    fromSeed(seed) {
      const publicRaw = Buffer.alloc(32);
      const key = Buffer.alloc(64);
      s.crypto_sign_seed_keypair(publicRaw, key, seed);
      return { key, publicRaw };
    },
    generate() {
      // pooled slices, fully written by libsodium: an emulator makes 50 000 of these
      const publicRaw = Buffer.allocUnsafe(32);
      const key = Buffer.allocUnsafe(64);
      s.crypto_sign_keypair(publicRaw, key);
      // libsodium's secret key is seed || public key
      return { key, publicRaw, seed: Buffer.from(key.subarray(0, 32)) };
    },
    sign(key, data) {
      const sig = Buffer.allocUnsafe(64);
      s.crypto_sign_detached(sig, data, key as Uint8Array);
      return sig;
    },
    verifyingKey: (publicRaw) => (publicRaw.length === 32 ? Buffer.from(publicRaw) : undefined),
    verify: (key, data, sig) =>
      sig.length === 64 && s.crypto_sign_verify_detached(sig, data, key as Uint8Array),
  };
}

function loadSodium(): Sodium | undefined {
  if (process.env.CHORUS_ED25519 === "node") return undefined;
  try {
    return createRequire(import.meta.url)("sodium-native") as Sodium;
  } catch {
    return undefined;
  }
}

const sodium = loadSodium();

/** The backend in use for this process. */
export const ed25519: Ed25519Backend = sodium ? sodiumBackend(sodium) : nodeBackend;

/** Every backend that loads here (tests check that they agree). */
export function ed25519Backends(): Ed25519Backend[] {
  const s = sodium ?? loadSodium();
  return s ? [sodiumBackend(s), nodeBackend] : [nodeBackend];
}
