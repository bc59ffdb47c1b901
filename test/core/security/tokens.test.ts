import { describe, expect, it } from "vitest";
import {
  clearTokenCache,
  createChainIssuer,
  createClientToken,
  createServerToken,
  decodeTokenUnverified,
  generateKeyPair,
  orgIssuer,
  sign,
  verifyStats,
  verifyToken,
  type ClientClaims,
  type ServerClaims,
} from "../../../src/core/security/index.js";

const orgKp = generateKeyPair();
const org = orgIssuer(orgKp);
const trusted = [orgKp.publicHex];
const user = generateKeyPair();
const now = () => Math.floor(Date.now() / 1000);

function b64(o: unknown): string {
  return Buffer.from(JSON.stringify(o)).toString("base64url");
}

/** Re-signs arbitrary header/claims with a seed, to build hostile tokens. */
function forge(header: unknown, claims: unknown, seedHex: string): string {
  const input = `${b64(header)}.${b64(claims)}`;
  return `${input}.${sign(seedHex, Buffer.from(input)).toString("base64url")}`;
}

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

describe("client and server tokens", () => {
  it("round trips a client token", () => {
    const jwt = createClientToken(
      {
        callerid: "choria=rip",
        publicKeyHex: user.publicHex,
        validityS: 3600,
        permissions: { fleet_management: true },
        agents: ["rpcutil.*"],
      },
      org,
    );
    const [h] = jwt.split(".");
    expect(JSON.parse(Buffer.from(h as string, "base64url").toString())).toEqual({
      alg: "EdDSA",
      typ: "JWT",
    });
    const c = verifyToken(jwt, trusted) as ClientClaims;
    expect(c).toMatchObject({
      purpose: "choria_client_id",
      iss: `I-${orgKp.publicHex}`,
      sub: "choria=rip",
      callerid: "choria=rip",
      public_key: user.publicHex,
      ou: "choria",
      agents: ["rpcutil.*"],
      permissions: { fleet_management: true },
    });
    expect(c.jti).toMatch(/^[0-9a-f]{32}$/);
    expect(c.exp! - c.iat!).toBe(3600);
    expect(c.nbf).toBe(c.iat);
    expect(c.tcs).toBeUndefined();
  });

  it("round trips a server token", () => {
    const jwt = createServerToken(
      {
        identity: "n1.example",
        collectives: ["mcollective", "other"],
        publicKeyHex: user.publicHex,
        validityS: 60,
        permissions: { submission: true },
      },
      org,
    );
    const c = verifyToken(jwt, trusted) as ServerClaims;
    expect(c).toMatchObject({
      purpose: "choria_server",
      sub: "n1.example",
      identity: "n1.example",
      collectives: ["mcollective", "other"],
      permissions: { submission: true },
    });
    expect(decodeTokenUnverified(jwt).identity).toBe("n1.example");
  });

  it("refuses to issue tokens for bad keys or validity", () => {
    expect(code(() => createClientToken({ callerid: "a", publicKeyHex: "abc", validityS: 60 }, org))).toBe(
      "bad_key",
    );
    expect(
      code(() =>
        createServerToken(
          { identity: "a", collectives: [], publicKeyHex: user.publicHex, validityS: 0 },
          org,
        ),
      ),
    ).toBe("malformed");
  });

  it("gives each token a fresh jti", () => {
    const a = createClientToken({ callerid: "a", publicKeyHex: user.publicHex, validityS: 60 }, org);
    const b = createClientToken({ callerid: "a", publicKeyHex: user.publicHex, validityS: 60 }, org);
    expect(decodeTokenUnverified(a).jti).not.toBe(decodeTokenUnverified(b).jti);
  });
});

describe("chain issuers", () => {
  const chainKp = generateKeyPair();
  const chain = createChainIssuer(org, chainKp, 600);

  it("issues a chain issuer token signed by the org", () => {
    const c = verifyToken(chain.token!, trusted) as ClientClaims;
    expect(c.permissions?.authentication_delegator).toBe(true);
    expect(c.tcs).toBe(chain.tcs);
    expect(c.jti).toBe(chain.jti);
    expect(chain.issexp).toBe(c.exp);
  });

  it("round trips client and server tokens issued by a chain issuer", () => {
    const jwt = createClientToken(
      {
        callerid: "up=bob",
        publicKeyHex: user.publicHex,
        validityS: 3600,
        permissions: { fleet_management: true },
      },
      chain,
    );
    const c = verifyToken(jwt, trusted) as ClientClaims;
    expect(c.iss).toBe(`C-${chain.jti}.${chainKp.publicHex}`);
    expect(c.tcs?.startsWith(`${chain.tcs}.`)).toBe(true);
    expect(c.issexp).toBe(chain.issexp);
    const s = createServerToken(
      { identity: "n2", collectives: ["c"], publicKeyHex: user.publicHex, validityS: 60 },
      chain,
    );
    expect((verifyToken(s, trusted) as ServerClaims).identity).toBe("n2");
  });

  it("rejects chain tokens from an untrusted org", () => {
    const otherOrg = orgIssuer(generateKeyPair());
    const rogue = createChainIssuer(otherOrg, generateKeyPair(), 600);
    const jwt = createClientToken({ callerid: "x", publicKeyHex: user.publicHex, validityS: 60 }, rogue);
    expect(code(() => verifyToken(jwt, trusted))).toBe("untrusted");
  });

  it("rejects a broken chain link", () => {
    const jwt = createClientToken({ callerid: "x", publicKeyHex: user.publicHex, validityS: 60 }, chain);
    const c = decodeTokenUnverified(jwt);
    const [issuerTcs] = (c.tcs as string).split(".");
    // claims re-signed by the chain key, but the link signature is for another jti
    const badLink = sign(chainKp.seedHex, Buffer.from(`other.${issuerTcs}`)).toString("hex");
    const forged = forge(
      { alg: "EdDSA", typ: "JWT" },
      { ...c, tcs: `${issuerTcs}.${badLink}` },
      chainKp.seedHex,
    );
    expect(code(() => verifyToken(forged, trusted))).toBe("bad_chain");
    expect(
      code(() =>
        verifyToken(forge({ alg: "EdDSA", typ: "JWT" }, { ...c, tcs: undefined }, chainKp.seedHex), trusted),
      ),
    ).toBe("bad_chain");
  });

  it("expires chain issued tokens with their issuer (issexp)", () => {
    const jwt = createClientToken({ callerid: "x", publicKeyHex: user.publicHex, validityS: 3600 }, chain);
    expect(verifyToken(jwt, trusted, chain.issexp! - 1)).toBeTruthy();
    expect(code(() => verifyToken(jwt, trusted, chain.issexp!))).toBe("expired");
  });
});

describe("verifyToken failures", () => {
  const good = createClientToken({ callerid: "c", publicKeyHex: user.publicHex, validityS: 60 }, org);
  const claims = decodeTokenUnverified(good);

  it("expired", () => {
    expect(code(() => verifyToken(good, trusted, now() + 61))).toBe("expired");
  });

  it("not yet valid", () => {
    expect(code(() => verifyToken(good, trusted, now() - 10))).toBe("not_yet_valid");
  });

  it("issexp passed", () => {
    const t = forge({ alg: "EdDSA", typ: "JWT" }, { ...claims, issexp: now() - 1 }, orgKp.seedHex);
    expect(code(() => verifyToken(t, trusted))).toBe("expired");
  });

  it("other issuer", () => {
    const other = orgIssuer(generateKeyPair());
    expect(
      code(() =>
        verifyToken(
          createClientToken({ callerid: "c", publicKeyHex: user.publicHex, validityS: 60 }, other),
          trusted,
        ),
      ),
    ).toBe("untrusted");
    // claims naming our org but signed by someone else
    expect(code(() => verifyToken(forge({ alg: "EdDSA", typ: "JWT" }, claims, other.seedHex), trusted))).toBe(
      "bad_signature",
    );
  });

  it("tampered payload", () => {
    const [h, , s] = good.split(".");
    const tampered = `${h}.${b64({ ...claims, callerid: "choria=admin" })}.${s}`;
    expect(code(() => verifyToken(tampered, trusted))).toBe("bad_signature");
  });

  it("wrong alg", () => {
    expect(code(() => verifyToken(forge({ alg: "none", typ: "JWT" }, claims, orgKp.seedHex), trusted))).toBe(
      "malformed",
    );
    expect(code(() => verifyToken(forge({ alg: "HS256", typ: "JWT" }, claims, orgKp.seedHex), trusted))).toBe(
      "malformed",
    );
  });

  it("malformed", () => {
    for (const bad of [
      "",
      "a.b",
      "a.b.c.d",
      "###.x.y",
      `${b64("x")}.${b64({})}.AAAA`,
      good.replace(/\.[^.]*$/, "."),
    ]) {
      expect(code(() => verifyToken(bad, trusted))).toBe("malformed");
    }
    expect(
      code(() =>
        verifyToken(
          forge({ alg: "EdDSA", typ: "JWT" }, { ...claims, public_key: "xyz" }, orgKp.seedHex),
          trusted,
        ),
      ),
    ).toBe("malformed");
  });

  it("wrong or missing purpose", () => {
    expect(
      code(() =>
        verifyToken(
          forge({ alg: "EdDSA", typ: "JWT" }, { ...claims, purpose: "other" }, orgKp.seedHex),
          trusted,
        ),
      ),
    ).toBe("wrong_purpose");
    expect(
      code(() =>
        verifyToken(
          forge({ alg: "EdDSA", typ: "JWT" }, { ...claims, purpose: undefined }, orgKp.seedHex),
          trusted,
        ),
      ),
    ).toBe("wrong_purpose");
  });
});

describe("token cache", () => {
  it("verifies a token once, then serves it from cache until it expires", () => {
    clearTokenCache();
    const chain = createChainIssuer(org, generateKeyPair(), 600);
    const jwt = createClientToken({ callerid: "c", publicKeyHex: user.publicHex, validityS: 60 }, chain);
    const before = verifyStats.count;
    verifyToken(jwt, trusted);
    expect(verifyStats.count - before).toBe(3); // token, chain link, org trust signature
    for (let i = 0; i < 100; i++) verifyToken(jwt, trusted);
    expect(verifyStats.count - before).toBe(3);
    expect(code(() => verifyToken(jwt, trusted, now() + 61))).toBe("expired");
    // a different trust set is not served from the cache
    expect(code(() => verifyToken(jwt, [generateKeyPair().publicHex]))).toBe("untrusted");
  });

  it("returns frozen claims", () => {
    const jwt = createClientToken(
      { callerid: "c", publicKeyHex: user.publicHex, validityS: 60, permissions: { fleet_management: true } },
      org,
    );
    const c = verifyToken(jwt, trusted) as ClientClaims;
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.permissions)).toBe(true);
  });
});

describe("verified-token cache", () => {
  it("keeps a 12 000-node fleet's tokens: a second pass verifies nothing again", () => {
    clearTokenCache();
    const pub = generateKeyPair().publicHex;
    const tokens = Array.from({ length: 12_000 }, (_, i) =>
      createServerToken({ identity: `n${i}`, collectives: ["c"], publicKeyHex: pub, validityS: 600 }, org),
    );
    const first = verifyStats.count;
    for (const t of tokens) verifyToken(t, trusted);
    expect(verifyStats.count - first).toBe(tokens.length);
    // a cache that empties itself when full (as it once did at 10 000) re-verifies here
    const second = verifyStats.count;
    for (const t of tokens) expect((verifyToken(t, trusted) as ServerClaims).identity).toMatch(/^n\d+$/);
    expect(verifyStats.count - second).toBe(0);
  });
});
