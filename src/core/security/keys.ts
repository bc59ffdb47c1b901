import { chmodSync, readFileSync, writeFileSync } from "node:fs";
import { ed25519, type SigningKey, type VerifyingKey } from "./ed25519.js";
import { SecurityError } from "./errors.js";

export interface KeyPair {
  seedHex: string;
  publicHex: string;
}

const HEX32 = /^[0-9a-fA-F]{64}$/;

/** Counts ed25519 verifications actually performed, so tests can prove caches work. */
export const verifyStats = { count: 0 };

// Importing a key costs about three verifications with node:crypto, and the same few
// keys are used over and over, so prepared keys are kept. Bounded so hostile input
// cannot grow them without limit.
const MAX_CACHED_KEYS = 32_768; // see MAX_CACHED_TOKENS
const privateKeys = new Map<string, { key: SigningKey; publicHex: string }>();
const publicKeys = new Map<string, VerifyingKey>();

function remember<V>(cache: Map<string, V>, k: string, v: V): V {
  if (cache.size >= MAX_CACHED_KEYS) cache.delete(cache.keys().next().value as string);
  cache.set(k, v);
  return v;
}

function rawSeed(seedHex: string): Buffer {
  if (!HEX32.test(seedHex)) throw new SecurityError("bad_key", "ed25519 seed must be 32 bytes of hex");
  return Buffer.from(seedHex, "hex");
}

function privateKey(seedHex: string): { key: SigningKey; publicHex: string } {
  const hit = privateKeys.get(seedHex);
  if (hit) return hit;
  const { key, publicRaw } = ed25519.fromSeed(rawSeed(seedHex));
  return remember(privateKeys, seedHex, { key, publicHex: publicRaw.toString("hex") });
}

/** Returns undefined for anything that is not 32 bytes of hex, so verify can just say false. */
function publicKey(publicHex: string): VerifyingKey | undefined {
  const hit = publicKeys.get(publicHex);
  if (hit) return hit;
  if (!HEX32.test(publicHex)) return undefined;
  const key = ed25519.verifyingKey(Buffer.from(publicHex, "hex"));
  return key === undefined ? undefined : remember(publicKeys, publicHex, key);
}

export function publicHexFromSeed(seedHex: string): string {
  return privateKey(seedHex).publicHex;
}

export function generateKeyPair(): KeyPair {
  const { seed, publicRaw } = ed25519.generate();
  return { seedHex: seed.toString("hex"), publicHex: publicRaw.toString("hex") };
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
  return ed25519.sign(privateKey(seedHex).key, data);
}

export function verify(publicHex: string, data: Uint8Array, sig: Uint8Array): boolean {
  if (sig.length !== 64) return false;
  const key = publicKey(publicHex);
  if (!key) return false;
  verifyStats.count++;
  return ed25519.verify(key, data, sig);
}

/**
 * Issuer public keys from a config setting: hex ed25519 keys given directly (comma or
 * space separated) or the path of a file holding them. Throws SecurityError naming
 * neither the setting nor the config: callers add that.
 */
export function issuerKeysFromSetting(setting: string, resolvePath: (p: string) => string): string[] {
  const asKeys = (s: string): string[] | undefined => {
    const keys = s
      .split(/[\s,]+/)
      .map((k) => k.trim().toLowerCase())
      .filter((k) => k !== "");
    return keys.length > 0 && keys.every((k) => /^[0-9a-f]{64}$/.test(k)) ? keys : undefined;
  };
  const direct = asKeys(setting);
  if (direct) return direct;
  const path = resolvePath(setting);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new SecurityError(
      "bad_key",
      `"${setting}" is neither a hex ed25519 public key nor a readable file`,
      {
        cause: err,
      },
    );
  }
  const fromFile = asKeys(text);
  if (!fromFile) throw new SecurityError("bad_key", `${path} does not hold hex ed25519 public keys`);
  return fromFile;
}
