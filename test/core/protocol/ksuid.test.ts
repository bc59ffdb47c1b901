import { describe, expect, it } from "vitest";
import {
  KSUID_EPOCH,
  ksuidFromParts,
  newRequestId,
  nowNanos,
  parseKsuid,
} from "../../../src/core/protocol/index.js";

describe("KSUID request ids", () => {
  it("are 27 base62 characters", () => {
    for (let i = 0; i < 200; i++) expect(newRequestId()).toMatch(/^[0-9A-Za-z]{27}$/);
  });

  it("are unique", () => {
    const ids = new Set(Array.from({ length: 5000 }, () => newRequestId()));
    expect(ids.size).toBe(5000);
  });

  it("carry the current time in seconds since the KSUID epoch", () => {
    const before = Math.floor(Date.now() / 1000);
    const { unixSeconds, payload } = parseKsuid(newRequestId());
    const after = Math.floor(Date.now() / 1000);
    expect(unixSeconds).toBeGreaterThanOrEqual(before);
    expect(unixSeconds).toBeLessThanOrEqual(after);
    expect(payload.length).toBe(16);
  });

  it("match known KSUID encodings at the extremes", () => {
    // all-zero KSUID and the maximum 20-byte value, as defined by the KSUID format
    expect(ksuidFromParts(KSUID_EPOCH, new Uint8Array(16))).toBe("000000000000000000000000000");
    expect(ksuidFromParts(KSUID_EPOCH + 0xffffffff, new Uint8Array(16).fill(255))).toBe(
      "aWgEPTl1tmebfsQzFP4bxwgy80V",
    );
  });

  it("round trip timestamp and payload", () => {
    const payload = Uint8Array.from({ length: 16 }, (_, i) => i * 13);
    const id = ksuidFromParts(1_700_000_000, payload);
    const back = parseKsuid(id);
    expect(back.unixSeconds).toBe(1_700_000_000);
    expect(Array.from(back.payload)).toEqual(Array.from(payload));
  });

  it("sort lexicographically by timestamp", () => {
    const hi = new Uint8Array(16).fill(255);
    const lo = new Uint8Array(16);
    const ids = [
      ksuidFromParts(1_700_000_002, lo),
      ksuidFromParts(1_700_000_001, hi),
      ksuidFromParts(1_700_000_000, hi),
      ksuidFromParts(1_700_000_001, lo),
    ];
    const sorted = [...ids].sort();
    expect(sorted.map((id) => parseKsuid(id).unixSeconds)).toEqual([
      1_700_000_000, 1_700_000_001, 1_700_000_001, 1_700_000_002,
    ]);
  });

  it("parseKsuid rejects bad input", () => {
    expect(() => parseKsuid("short")).toThrow();
    expect(() => parseKsuid("!".repeat(27))).toThrow();
    expect(() => parseKsuid("z".repeat(27))).toThrow(/range/);
  });
});

describe("nowNanos", () => {
  it("is unix time in nanoseconds", () => {
    const ms = Date.now();
    const ns = nowNanos();
    expect(Number.isInteger(ns)).toBe(true);
    // compare in the ns domain: ns / 1e6 can round below ms since 1e18-scale doubles are spaced 256 apart
    expect(ns).toBeGreaterThanOrEqual(ms * 1e6);
    expect(ns).toBeLessThan((ms + 1000) * 1e6);
  });
});
