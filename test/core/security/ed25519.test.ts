import { describe, expect, it } from "vitest";
import { ed25519, ed25519Backends, generateKeyPair, sign, verify } from "../../../src/core/security/index.js";

// RFC 8032 section 7.1, TEST 2 (one-byte message)
const RFC = {
  seed: "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
  publicKey: "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
  message: "72",
  signature:
    "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da" +
    "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
};

describe("ed25519 backends", () => {
  const backends = ed25519Backends();

  it("uses libsodium here unless told not to", () => {
    // sodium-native ships prebuilt binaries for this platform; falling back silently would
    // cost half the verification rate, so the suite notices
    if (process.env.CHORUS_ED25519 === "node") expect(ed25519.name).toBe("node:crypto");
    else expect(ed25519.name).toBe("libsodium");
    expect(backends.map((b) => b.name)).toContain("node:crypto");
  });

  for (const b of backends) {
    it(`${b.name}: matches the RFC 8032 test vector`, () => {
      const { key, publicRaw } = b.fromSeed(Buffer.from(RFC.seed, "hex"));
      expect(publicRaw.toString("hex")).toBe(RFC.publicKey);
      const sig = b.sign(key, Buffer.from(RFC.message, "hex"));
      expect(sig.toString("hex")).toBe(RFC.signature);
      const vk = b.verifyingKey(publicRaw);
      expect(vk).toBeDefined();
      expect(b.verify(vk!, Buffer.from(RFC.message, "hex"), sig)).toBe(true);
      expect(b.verify(vk!, Buffer.from("73", "hex"), sig)).toBe(false);
    });

    it(`${b.name}: rejects bad signatures and keys without throwing`, () => {
      const { key, publicRaw } = b.generate();
      const data = Buffer.from("hello fleet");
      const sig = b.sign(key, data);
      const vk = b.verifyingKey(publicRaw)!;
      expect(b.verify(vk, data, sig)).toBe(true);
      const flipped = Buffer.from(sig);
      flipped[10] = (flipped[10] as number) ^ 1;
      expect(b.verify(vk, data, flipped)).toBe(false);
      expect(b.verify(vk, data, sig.subarray(0, 63))).toBe(false);
      const other = b.verifyingKey(b.generate().publicRaw)!;
      expect(b.verify(other, data, sig)).toBe(false);
      expect(b.verifyingKey(Buffer.alloc(31))).toBeUndefined();
    });
  }

  it("all backends sign identically and verify each other", () => {
    const seed = Buffer.from(generateKeyPair().seedHex, "hex");
    const data = Buffer.from(JSON.stringify({ agent: "rpcutil", action: "ping" }));
    const made = backends.map((b) => {
      const { key, publicRaw } = b.fromSeed(seed);
      return { b, sig: b.sign(key, data), publicRaw };
    });
    for (const m of made) {
      expect(m.sig.equals(made[0]!.sig)).toBe(true);
      expect(m.publicRaw.equals(made[0]!.publicRaw)).toBe(true);
      for (const v of backends) expect(v.verify(v.verifyingKey(m.publicRaw)!, data, m.sig)).toBe(true);
    }
  });

  it("keys.ts sign/verify go through the chosen backend and stay compatible", () => {
    const kp = generateKeyPair();
    const data = Buffer.from("x");
    const sig = sign(kp.seedHex, data);
    expect(verify(kp.publicHex, data, sig)).toBe(true);
    const node = backends.find((b) => b.name === "node:crypto")!;
    expect(node.sign(node.fromSeed(Buffer.from(kp.seedHex, "hex")).key, data).equals(sig)).toBe(true);
    expect(verify("zz", data, sig)).toBe(false);
  });
});
