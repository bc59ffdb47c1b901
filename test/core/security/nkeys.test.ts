import { fromSeed } from "@nats-io/nkeys";
import { describe, expect, it } from "vitest";
import {
  generateKeyPair,
  nkeyPublicFromEd25519Public,
  nkeySeedFromEd25519Seed,
  nkeySeedTextFromEd25519Seed,
  sign,
} from "../../../src/core/security/index.js";

describe("nkeys from ed25519 keys", () => {
  for (const role of ["user", "account", "operator", "server"] as const) {
    it(`encodes ${role} keys that @nats-io/nkeys accepts`, () => {
      const kp = generateKeyPair();
      const nk = fromSeed(nkeySeedFromEd25519Seed(kp.seedHex, role));
      expect(nk.getPublicKey()).toBe(nkeyPublicFromEd25519Public(kp.publicHex, role));
      expect(nk.getPublicKey()[0]).toBe({ user: "U", account: "A", operator: "O", server: "N" }[role]);
      expect(nkeySeedTextFromEd25519Seed(kp.seedHex, role)).toMatch(new RegExp(`^S${nk.getPublicKey()[0]}`));
      // same key material: signatures are interchangeable
      const data = Buffer.from("nonce");
      expect(Buffer.from(nk.sign(data)).equals(sign(kp.seedHex, data))).toBe(true);
    });
  }
});
