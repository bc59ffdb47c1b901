import { randomFillSync } from "node:crypto";

/** KSUID epoch (2014-05-13T16:53:20Z) as used by segmentio/ksuid and so by go-choria request ids. */
export const KSUID_EPOCH = 1_400_000_000;
const KSUID_BYTES = 20;
const KSUID_CHARS = 27;
const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/** Base62 of a 20-byte KSUID, left padded with '0' to 27 characters. */
function encodeBase62(bytes: Uint8Array): string {
  // Long division of the big-endian number by 62, one output digit per pass.
  const digits = Array.from(bytes);
  const out: string[] = [];
  let start = 0;
  while (start < digits.length) {
    let rem = 0;
    for (let i = start; i < digits.length; i++) {
      const acc = rem * 256 + (digits[i] as number);
      digits[i] = Math.floor(acc / 62);
      rem = acc % 62;
    }
    out.push(BASE62[rem] as string);
    while (start < digits.length && digits[start] === 0) start++;
  }
  while (out.length < KSUID_CHARS) out.push("0");
  return out.reverse().join("");
}

function decodeBase62(id: string): Uint8Array {
  const bytes = new Uint8Array(KSUID_BYTES);
  for (const ch of id) {
    const v = BASE62.indexOf(ch);
    if (v < 0) throw new Error(`invalid KSUID character ${JSON.stringify(ch)}`);
    let carry = v;
    for (let i = KSUID_BYTES - 1; i >= 0; i--) {
      const acc = (bytes[i] as number) * 62 + carry;
      bytes[i] = acc & 0xff;
      carry = acc >>> 8;
    }
    if (carry !== 0) throw new Error("KSUID out of range");
  }
  return bytes;
}

/** Builds a KSUID from its parts; exposed so tests can pin timestamps. */
export function ksuidFromParts(unixSeconds: number, payload: Uint8Array): string {
  if (payload.length !== 16) throw new Error("KSUID payload must be 16 bytes");
  const buf = new Uint8Array(KSUID_BYTES);
  new DataView(buf.buffer).setUint32(0, Math.floor(unixSeconds) - KSUID_EPOCH, false);
  buf.set(payload, 4);
  return encodeBase62(buf);
}

/** Splits a KSUID into unix seconds and its 16 random bytes. */
export function parseKsuid(id: string): { unixSeconds: number; payload: Uint8Array } {
  if (id.length !== KSUID_CHARS) throw new Error(`KSUID must be ${KSUID_CHARS} characters`);
  const bytes = decodeBase62(id);
  const ts = new DataView(bytes.buffer).getUint32(0, false);
  return { unixSeconds: ts + KSUID_EPOCH, payload: bytes.slice(4) };
}

/** A new request id: KSUID, 27 characters of base62, sortable by creation second. */
export function newRequestId(): string {
  const payload = new Uint8Array(16);
  randomFillSync(payload);
  return ksuidFromParts(Date.now() / 1000, payload);
}

/** Current time in unix nanoseconds (millisecond resolution; a JS number cannot hold ns exactly anyway). */
export function nowNanos(): number {
  return Date.now() * 1_000_000;
}
