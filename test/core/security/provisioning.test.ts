import { fromSeed } from "@nats-io/nkeys";
import { describe, expect, it } from "vitest";
import {
  SecurityError,
  createChainIssuer,
  createClientToken,
  createProvisioningToken,
  decodeTokenUnverified,
  generateKeyPair,
  nkeyPublicFromEd25519Public,
  nkeySeedTextFromEd25519Seed,
  nkeySeedToEd25519Seed,
  openFromProvisioner,
  orgIssuer,
  provisioningKeyPair,
  provisioningTokenIssuer,
  sealForNode,
  sign,
  verifyProvisioningToken,
} from "../../../src/core/security/index.js";

const orgKp = generateKeyPair();
const org = orgIssuer(orgKp);
const trusted = [orgKp.publicHex];
const now = () => Math.floor(Date.now() / 1000);

function b64(o: unknown): string {
  return Buffer.from(JSON.stringify(o)).toString("base64url");
}

/** Signs arbitrary claims with a seed, to build tokens createProvisioningToken refuses to make. */
function forge(claims: Record<string, unknown>, seedHex = orgKp.seedHex): string {
  const input = `${b64({ alg: "EdDSA", typ: "JWT" })}.${b64(claims)}`;
  return `${input}.${sign(seedHex, Buffer.from(input)).toString("base64url")}`;
}

function baseClaims(extra: Record<string, unknown> = {}): Record<string, unknown> {
  const t = now();
  return {
    purpose: "choria_provisioning",
    iss: `I-${orgKp.publicHex}`,
    public_key: orgKp.publicHex,
    iat: t,
    nbf: t,
    exp: t + 600,
    jti: `j${Math.random().toString(16).slice(2)}`,
    cht: "s3cret",
    chu: "nats://broker:4222",
    ...extra,
  };
}

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SecurityError);
    return (err as SecurityError).code;
  }
  return undefined;
}

describe("provisioning token", () => {
  it("round trips every claim through create and verify", () => {
    const user = generateKeyPair();
    const seed = nkeySeedTextFromEd25519Seed(user.seedHex);
    const jwt = createProvisioningToken(
      {
        cht: "tok",
        chu: "nats://a:4222,nats://b:4222",
        chs: true,
        chpd: true,
        chrd: "/etc/reg.json",
        chf: "/etc/facts.yaml",
        chusr: "user.jwt.here",
        chpwd: seed,
        extensions: { site: "lon" },
        ou: "choria",
        v2: true,
        update: false,
        validityS: 600,
      },
      org,
    );
    const c = verifyProvisioningToken(jwt, trusted);
    expect(c).toMatchObject({
      purpose: "choria_provisioning",
      iss: `I-${orgKp.publicHex}`,
      cht: "tok",
      chu: "nats://a:4222,nats://b:4222",
      chs: true,
      chpd: true,
      chrd: "/etc/reg.json",
      chf: "/etc/facts.yaml",
      chusr: "user.jwt.here",
      chpwd: seed,
      extensions: { site: "lon" },
      v2: true,
      update: false,
      // the key the token lets a node connect with
      public_key: user.publicHex,
    });
    expect((c.exp as number) - (c.iat as number)).toBe(600);
    expect(provisioningTokenIssuer(jwt)).toBe(orgKp.publicHex);
  });

  it("accepts chsrv instead of chu", () => {
    const jwt = createProvisioningToken({ cht: "t", chsrv: "example.net", validityS: 60 }, org);
    expect(verifyProvisioningToken(jwt, trusted).chsrv).toBe("example.net");
  });

  it("refuses to make a token without cht, with both or neither of chu/chsrv, or from a chain issuer", () => {
    expect(code(() => createProvisioningToken({ cht: "", chu: "nats://x:1", validityS: 60 }, org))).toBe(
      "malformed",
    );
    expect(
      code(() => createProvisioningToken({ cht: "t", chu: "nats://x:1", chsrv: "d", validityS: 60 }, org)),
    ).toBe("malformed");
    expect(code(() => createProvisioningToken({ cht: "t", validityS: 60 }, org))).toBe("malformed");
    expect(code(() => createProvisioningToken({ cht: "t", chu: "nats://x:1", validityS: 0 }, org))).toBe(
      "malformed",
    );
    expect(
      code(() => createProvisioningToken({ cht: "t", chu: "nats://x:1", chusr: "jwt", validityS: 60 }, org)),
    ).toBe("malformed");
    const chain = createChainIssuer(org, generateKeyPair(), 600);
    expect(code(() => createProvisioningToken({ cht: "t", chu: "nats://x:1", validityS: 60 }, chain))).toBe(
      "bad_chain",
    );
  });

  it("refuses forged, untrusted, expired and not yet valid tokens", () => {
    const jwt = createProvisioningToken({ cht: "t", chu: "nats://x:1", validityS: 60 }, org);
    // a changed claim under the original signature
    const [h, , s] = jwt.split(".");
    const changed = `${h}.${b64({ ...decodeTokenUnverified(jwt), cht: "mine" })}.${s}`;
    expect(code(() => verifyProvisioningToken(changed, trusted))).toBe("bad_signature");
    // signed by someone else claiming to be the org
    expect(code(() => verifyProvisioningToken(forge(baseClaims(), generateKeyPair().seedHex), trusted))).toBe(
      "bad_signature",
    );
    expect(code(() => verifyProvisioningToken(jwt, [generateKeyPair().publicHex]))).toBe("untrusted");
    expect(code(() => verifyProvisioningToken(jwt, []))).toBe("untrusted");
    expect(code(() => verifyProvisioningToken(jwt, trusted, now() + 61))).toBe("expired");
    expect(code(() => verifyProvisioningToken(jwt, trusted, now() - 10))).toBe("not_yet_valid");
  });

  it("refuses tokens without cht, with an empty cht, with both chu and chsrv, or bad claim types", () => {
    const { cht: _drop, ...noCht } = baseClaims();
    expect(code(() => verifyProvisioningToken(forge(noCht), trusted))).toBe("malformed");
    expect(code(() => verifyProvisioningToken(forge(baseClaims({ cht: "" })), trusted))).toBe("malformed");
    expect(code(() => verifyProvisioningToken(forge(baseClaims({ cht: "  " })), trusted))).toBe("malformed");
    expect(code(() => verifyProvisioningToken(forge(baseClaims({ chsrv: "d.example" })), trusted))).toBe(
      "malformed",
    );
    expect(code(() => verifyProvisioningToken(forge(baseClaims({ chu: undefined })), trusted))).toBe(
      "malformed",
    );
    expect(code(() => verifyProvisioningToken(forge(baseClaims({ chs: "yes" })), trusted))).toBe("malformed");
    expect(code(() => verifyProvisioningToken(forge(baseClaims({ chu: 42 })), trusted))).toBe("malformed");
    expect(code(() => verifyProvisioningToken(forge(baseClaims({ extensions: [1] })), trusted))).toBe(
      "malformed",
    );
  });

  it("refuses other purposes and garbage", () => {
    const client = createClientToken(
      { callerid: "choria=x", publicKeyHex: generateKeyPair().publicHex, validityS: 60 },
      org,
    );
    expect(code(() => verifyProvisioningToken(client, trusted))).toBe("wrong_purpose");
    expect(code(() => verifyProvisioningToken("not.a.jwt", trusted))).toBe("malformed");
    expect(code(() => verifyProvisioningToken("", trusted))).toBe("malformed");
  });

  it("names the org issuer of a token only when it is one", () => {
    expect(code(() => provisioningTokenIssuer(forge(baseClaims({ iss: "C-abc.def" }))))).toBe("untrusted");
    expect(code(() => provisioningTokenIssuer("garbage"))).toBe("malformed");
  });
});

describe("nkey seeds", () => {
  it("turns a user seed back into the ed25519 seed nats.js would use", () => {
    const kp = generateKeyPair();
    const text = nkeySeedTextFromEd25519Seed(kp.seedHex);
    expect(nkeySeedToEd25519Seed(text)).toBe(kp.seedHex);
    expect(fromSeed(new TextEncoder().encode(text)).getPublicKey()).toBe(
      nkeyPublicFromEd25519Public(kp.publicHex),
    );
  });

  it("refuses bad checksums, other roles and garbage", () => {
    const kp = generateKeyPair();
    const text = nkeySeedTextFromEd25519Seed(kp.seedHex);
    const flipped = `${text.slice(0, 10)}${text[10] === "A" ? "B" : "A"}${text.slice(11)}`;
    expect(code(() => nkeySeedToEd25519Seed(flipped))).toBe("bad_key");
    expect(code(() => nkeySeedToEd25519Seed(nkeySeedTextFromEd25519Seed(kp.seedHex, "account")))).toBe(
      "bad_key",
    );
    expect(code(() => nkeySeedToEd25519Seed("SU!!"))).toBe("bad_key");
    expect(code(() => nkeySeedToEd25519Seed(""))).toBe("bad_key");
  });
});

describe("key transport", () => {
  const secret = Buffer.from("-----BEGIN PRIVATE KEY-----\nnot really\n-----END PRIVATE KEY-----\n");

  it("opens what was sealed for this node", () => {
    const node = provisioningKeyPair();
    expect(node.publicHex).toMatch(/^[0-9a-f]{64}$/);
    const { sealed, ecdhPublic } = sealForNode(secret, node.publicHex);
    expect(ecdhPublic).toMatch(/^[0-9a-f]{64}$/);
    expect(openFromProvisioner(sealed, ecdhPublic, node).equals(secret)).toBe(true);
    // a fresh provisioner key and nonce every time
    const again = sealForNode(secret, node.publicHex);
    expect(again.sealed).not.toBe(sealed);
    expect(again.ecdhPublic).not.toBe(ecdhPublic);
  });

  it("detects any change, the wrong node and the wrong provisioner key", () => {
    const node = provisioningKeyPair();
    const { sealed, ecdhPublic } = sealForNode(secret, node.publicHex);
    const raw = Buffer.from(sealed, "base64");
    for (const i of [0, 12, raw.length - 1]) {
      const t = Buffer.from(raw);
      t[i] = (t[i] as number) ^ 1;
      expect(code(() => openFromProvisioner(t.toString("base64"), ecdhPublic, node))).toBe("tampered");
    }
    expect(code(() => openFromProvisioner(sealed, ecdhPublic, provisioningKeyPair()))).toBe("tampered");
    expect(code(() => openFromProvisioner(sealed, provisioningKeyPair().publicHex, node))).toBe("tampered");
    const truncated = raw.subarray(0, raw.length - 4).toString("base64");
    expect(code(() => openFromProvisioner(truncated, ecdhPublic, node))).toBe("tampered");
  });

  it("refuses malformed input with a clear code", () => {
    const node = provisioningKeyPair();
    const { sealed, ecdhPublic } = sealForNode(secret, node.publicHex);
    expect(code(() => openFromProvisioner("not base64!", ecdhPublic, node))).toBe("malformed");
    expect(code(() => openFromProvisioner("AAAA", ecdhPublic, node))).toBe("malformed");
    expect(code(() => openFromProvisioner(sealed, "zz", node))).toBe("bad_key");
    expect(code(() => sealForNode(secret, "abc"))).toBe("bad_key");
    // a low-order point would give a secret anyone can compute
    expect(code(() => sealForNode(secret, "00".repeat(32)))).toBe("bad_key");
    expect(code(() => openFromProvisioner(sealed, "00".repeat(32), node))).toBe("bad_key");
  });
});
