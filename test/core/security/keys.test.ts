import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  generateKeyPair,
  loadSeedFile,
  publicHexFromSeed,
  sign,
  verify,
  verifyStats,
  writeSeedFile,
} from "../../../src/core/security/index.js";

const dir = mkdtempSync(join(tmpdir(), "chorus-keys-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("ed25519 keys", () => {
  it("generates 32 byte hex seeds and public keys", () => {
    const kp = generateKeyPair();
    expect(kp.seedHex).toMatch(/^[0-9a-f]{64}$/);
    expect(kp.publicHex).toMatch(/^[0-9a-f]{64}$/);
    expect(publicHexFromSeed(kp.seedHex)).toBe(kp.publicHex);
  });

  it("matches the RFC 8032 test vector 1", () => {
    const seed = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    expect(publicHexFromSeed(seed)).toBe("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
    const sig = sign(seed, new Uint8Array());
    expect(sig.toString("hex")).toBe(
      "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    );
  });

  it("signs and verifies, rejecting tampering and junk keys", () => {
    const kp = generateKeyPair();
    const data = Buffer.from("hello");
    const sig = sign(kp.seedHex, data);
    expect(verify(kp.publicHex, data, sig)).toBe(true);
    expect(verify(kp.publicHex, Buffer.from("hellO"), sig)).toBe(false);
    expect(verify(generateKeyPair().publicHex, data, sig)).toBe(false);
    expect(verify("zz", data, sig)).toBe(false);
    expect(verify(kp.publicHex, data, sig.subarray(1))).toBe(false);
  });

  it("counts verifications", () => {
    const kp = generateKeyPair();
    const sig = sign(kp.seedHex, Buffer.from("x"));
    const before = verifyStats.count;
    verify(kp.publicHex, Buffer.from("x"), sig);
    verify(kp.publicHex, Buffer.from("x"), sig);
    expect(verifyStats.count - before).toBe(2);
  });

  it("writes seed files 0600 as hex text and reads them back", () => {
    const kp = generateKeyPair();
    const p = join(dir, "seed");
    writeSeedFile(p, kp);
    expect(statSync(p).mode & 0o777).toBe(0o600);
    expect(readFileSync(p, "utf8")).toBe(kp.seedHex);
    expect(loadSeedFile(p)).toEqual(kp);
    writeFileSync(p, `${kp.seedHex.toUpperCase()}\n`);
    expect(loadSeedFile(p)).toEqual(kp);
  });

  it("rejects bad seed files", () => {
    const p = join(dir, "bad");
    writeFileSync(p, "abcd");
    expect(() => loadSeedFile(p)).toThrow(expect.objectContaining({ code: "bad_key" }));
    expect(() => loadSeedFile(join(dir, "missing"))).toThrow(expect.objectContaining({ code: "io" }));
  });
});
