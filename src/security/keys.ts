import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign as cryptoSign,
  verify as cryptoVerify,
  type KeyObject,
} from "node:crypto";
import { chmodSync, readFileSync, writeFileSync } from "node:fs";
import { SecurityError } from "./errors.js";

export interface KeyPair {
  seedHex: string;
  publicHex: string;
}

// Raw 32-byte ed25519 material is imported as JWK: on Node 20 / OpenSSL 3 that is
// about 12x faster than DER (PKCS8 ~465 us, SPKI ~80 us; JWK ~37 us and ~8 us), which
// matters when an emulator makes 50 000 keys or a client meets thousands of senders.
const HEX32 = /^[0-9a-fA-F]{64}$/;

/** Counts ed25519 verifications actually performed, so tests can prove caches work. */
export const verifyStats = { count: 0 };

// Importing a key costs about three verifications, and the same few keys are
// used over and over, so KeyObjects are kept. Bounded so hostile input cannot
// grow them without limit.
const MAX_CACHED_KEYS = 32_768; // see MAX_CACHED_TOKENS
const privateKeys = new Map<string, KeyObject>();
const publicKeys = new Map<string, KeyObject>();

function remember(cache: Map<string, KeyObject>, k: string, v: KeyObject): KeyObject {
  if (cache.size >= MAX_CACHED_KEYS) cache.delete(cache.keys().next().value as string);
  cache.set(k, v);
  return v;
}

function rawSeed(seedHex: string): Buffer {
  if (!HEX32.test(seedHex)) throw new SecurityError("bad_key", "ed25519 seed must be 32 bytes of hex");
  return Buffer.from(seedHex, "hex");
}

export function privateKeyObject(seedHex: string): KeyObject {
  const hit = privateKeys.get(seedHex);
  if (hit) return hit;
  // The private key is derived from d alone; x is required by the JWK parser but not used.
  const key = createPrivateKey({
    key: { kty: "OKP", crv: "Ed25519", d: rawSeed(seedHex).toString("base64url"), x: "" },
    format: "jwk",
  });
  return remember(privateKeys, seedHex, key);
}

/** Returns undefined for anything that is not 32 bytes of hex, so verify can just say false. */
export function publicKeyObject(publicHex: string): KeyObject | undefined {
  const hit = publicKeys.get(publicHex);
  if (hit) return hit;
  if (!HEX32.test(publicHex)) return undefined;
  try {
    const key = createPublicKey({
      key: { kty: "OKP", crv: "Ed25519", x: Buffer.from(publicHex, "hex").toString("base64url") },
      format: "jwk",
    });
    return remember(publicKeys, publicHex, key);
  } catch {
    return undefined;
  }
}

export function publicHexFromSeed(seedHex: string): string {
  const jwk = createPublicKey(privateKeyObject(seedHex)).export({ format: "jwk" });
  return Buffer.from(jwk.x as string, "base64url").toString("hex");
}

export function generateKeyPair(): KeyPair {
  // OpenSSL's own generator, exported as JWK: no seed import round trip
  const jwk = generateKeyPairSync("ed25519").privateKey.export({ format: "jwk" });
  return {
    seedHex: Buffer.from(jwk.d as string, "base64url").toString("hex"),
    publicHex: Buffer.from(jwk.x as string, "base64url").toString("hex"),
  };
}

/** Choria seed files hold the 32-byte seed as hex text (whitespace tolerated). */
export function loadSeedFile(path: string): KeyPair {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new SecurityError("io", `cannot read seed file ${path}: ${(err as Error).message}`, { cause: err });
  }
  const seedHex = text.trim().toLowerCase();
  if (!HEX32.test(seedHex))
    throw new SecurityError("bad_key", `seed file ${path} does not hold a 32 byte hex ed25519 seed`);
  return { seedHex, publicHex: publicHexFromSeed(seedHex) };
}

export function writeSeedFile(path: string, kp: KeyPair): void {
  writeFileSync(path, kp.seedHex, { mode: 0o600 });
  // mode only applies when the file is created; tighten an existing one too
  chmodSync(path, 0o600);
}

export function sign(seedHex: string, data: Uint8Array): Buffer {
  return cryptoSign(null, data, privateKeyObject(seedHex));
}

export function verify(publicHex: string, data: Uint8Array, sig: Uint8Array): boolean {
  if (sig.length !== 64) return false;
  const key = publicKeyObject(publicHex);
  if (!key) return false;
  verifyStats.count++;
  return cryptoVerify(null, data, key, sig);
}
