import { SecurityError } from "./errors.js";

// NATS nkeys are raw ed25519 material with a role prefix and a CRC16, in base32.
// Encoding them here (rather than through @nats-io/nkeys, which only parses) lets a
// Chorus ed25519 key and its NATS user nkey be the very same 32 bytes.

export type NkeyRole = "user" | "account" | "operator" | "server";

const ROLE_BYTE: Record<NkeyRole, number> = { operator: 14 << 3, server: 13 << 3, account: 0, user: 20 << 3 };
const SEED_BYTE = 18 << 3;
const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

function crc16(data: Uint8Array): number {
  // CRC-16/XMODEM, as NATS uses for nkey checksums
  let crc = 0;
  for (const b of data) {
    crc ^= b << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

function base32(data: Uint8Array): string {
  let out = "";
  let bits = 0;
  let value = 0;
  for (const b of data) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31];
  return out;
}

function withChecksum(prefix: number[], raw: Buffer): string {
  const body = Buffer.concat([Buffer.from(prefix), raw]);
  const crc = crc16(body);
  return base32(Buffer.concat([body, Buffer.from([crc & 0xff, crc >> 8])]));
}

function raw32(hex: string): Buffer {
  if (!/^[0-9a-fA-F]{64}$/.test(hex))
    throw new SecurityError("bad_key", "ed25519 key must be 32 bytes of hex");
  return Buffer.from(hex, "hex");
}

/** The nkey public key ("U...", "A...") for a raw ed25519 public key. */
export function nkeyPublicFromEd25519Public(publicHex: string, role: NkeyRole = "user"): string {
  return withChecksum([ROLE_BYTE[role]], raw32(publicHex));
}

/** The nkey seed text ("SU...", "SA...") for a raw ed25519 seed. */
export function nkeySeedTextFromEd25519Seed(seedHex: string, role: NkeyRole = "user"): string {
  const r = ROLE_BYTE[role];
  return withChecksum([SEED_BYTE | (r >> 5), (r & 31) << 3], raw32(seedHex));
}

/** The nkey seed as bytes, the form NATS authenticators take. */
export function nkeySeedFromEd25519Seed(seedHex: string, role: NkeyRole = "user"): Uint8Array {
  return new TextEncoder().encode(nkeySeedTextFromEd25519Seed(seedHex, role));
}

function base32Decode(text: string): Buffer | undefined {
  const out: number[] = [];
  let bits = 0;
  let value = 0;
  for (const ch of text) {
    const v = ALPHABET.indexOf(ch);
    if (v < 0) return undefined;
    value = ((value << 5) | v) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/**
 * The raw ed25519 seed (hex) inside an nkey user seed ("SU..."), so the connector can
 * sign the broker's nonce with it. The checksum and prefix are checked by encoding the
 * result again and comparing.
 */
export function nkeySeedToEd25519Seed(seedText: string): string {
  const text = typeof seedText === "string" ? seedText.trim() : "";
  const raw = text.startsWith("SU") ? base32Decode(text) : undefined;
  // 2 prefix bytes, the 32 byte seed, a 2 byte CRC
  if (!raw || raw.length !== 36) throw new SecurityError("bad_key", "not an nkey user seed");
  const seedHex = raw.subarray(2, 34).toString("hex");
  if (nkeySeedTextFromEd25519Seed(seedHex, "user") !== text)
    throw new SecurityError("bad_key", "nkey user seed checksum does not match");
  return seedHex;
}
