import {
  createPrivateKey,
  createPublicKey,
  randomBytes,
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

// DER headers that turn raw 32-byte ed25519 material into PKCS8 / SPKI, which
// node:crypto imports far faster than JWK and without base64 round trips.
const PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");
const SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");
const HEX32 = /^[0-9a-fA-F]{64}$/;

/** Counts ed25519 verifications actually performed, so tests can prove caches work. */
export const verifyStats = { count: 0 };

// Importing a key costs about three verifications, and the same few keys are
// used over and over, so KeyObjects are kept. Bounded so hostile input cannot
// grow them without limit.
const MAX_CACHED_KEYS = 10_000;
const privateKeys = new Map<string, KeyObject>();
const publicKeys = new Map<string, KeyObject>();

function remember(cache: Map<string, KeyObject>, k: string, v: KeyObject): KeyObject {
  if (cache.size >= MAX_CACHED_KEYS) cache.clear();
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
  const key = createPrivateKey({
    key: Buffer.concat([PKCS8_PREFIX, rawSeed(seedHex)]),
    format: "der",
    type: "pkcs8",
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
      key: Buffer.concat([SPKI_PREFIX, Buffer.from(publicHex, "hex")]),
      format: "der",
      type: "spki",
    });
    return remember(publicKeys, publicHex, key);
  } catch {
    return undefined;
  }
}

export function publicHexFromSeed(seedHex: string): string {
  const spki = createPublicKey(privateKeyObject(seedHex)).export({ format: "der", type: "spki" });
  return spki.subarray(spki.length - 32).toString("hex");
}

export function generateKeyPair(): KeyPair {
  const seedHex = randomBytes(32).toString("hex");
  return { seedHex, publicHex: publicHexFromSeed(seedHex) };
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
