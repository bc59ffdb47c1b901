import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  ChoriaSecurity,
  createClientToken,
  createServerToken,
  generateKeyPair,
  orgIssuer,
  verifyStats,
  writeSeedFile,
  type KeyPair,
} from "../../../src/core/security/index.js";

const dir = mkdtempSync(join(tmpdir(), "chorus-provider-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const orgKp = generateKeyPair();
const org = orgIssuer(orgKp);

function files(name: string, kp: KeyPair, token: string): { seedFile: string; tokenFile: string } {
  const seedFile = join(dir, `${name}.seed`);
  const tokenFile = join(dir, `${name}.jwt`);
  writeSeedFile(seedFile, kp);
  writeFileSync(tokenFile, token);
  return { seedFile, tokenFile };
}

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

describe("ChoriaSecurity", () => {
  const ckp = generateKeyPair();
  const clientJwt = createClientToken(
    {
      callerid: "choria=alice",
      publicKeyHex: ckp.publicHex,
      validityS: 600,
      permissions: { fleet_management: true },
    },
    org,
  );
  const skp = generateKeyPair();
  const serverJwt = createServerToken(
    { identity: "n1", collectives: ["mcollective"], publicKeyHex: skp.publicHex, validityS: 600 },
    org,
  );

  it("loads a client identity", () => {
    const f = files("client", ckp, clientJwt);
    writeFileSync(`${f.tokenFile}.nats`, "nats-jwt\n");
    const sec = new ChoriaSecurity({ ...f, issuers: [orgKp.publicHex] });
    expect(sec.callerId).toBe("choria=alice");
    expect(sec.identity).toBeUndefined();
    expect(sec.publicHex).toBe(ckp.publicHex);
    expect(sec.token).toBe(clientJwt);
    expect(sec.natsJwt).toBe("nats-jwt");
    const sig = sec.sign(Buffer.from("m"));
    expect(sec.verifySignature(ckp.publicHex, Buffer.from("m"), sig)).toBe(true);
  });

  it("loads a server identity", () => {
    const sec = new ChoriaSecurity({ ...files("server", skp, serverJwt), issuers: [orgKp.publicHex] });
    expect(sec.identity).toBe("n1");
    expect(sec.callerId).toBe("choria=n1");
    expect(sec.natsJwt).toBeUndefined();
  });

  it("refuses a token for another key", () => {
    expect(
      code(() => new ChoriaSecurity({ ...files("mismatch", generateKeyPair(), clientJwt), issuers: [] })),
    ).toBe("bad_key");
  });

  it("verifies client tokens with the fleet rules, caching successes", () => {
    const sec = new ChoriaSecurity({ ...files("server2", skp, serverJwt), issuers: [orgKp.publicHex] });
    const before = verifyStats.count;
    expect(sec.verifyClientToken(clientJwt).callerid).toBe("choria=alice");
    const after = verifyStats.count;
    expect(after).toBeGreaterThan(before);
    for (let i = 0; i < 50; i++) sec.verifyClientToken(clientJwt);
    expect(verifyStats.count).toBe(after);

    const noFleet = createClientToken({ callerid: "u", publicKeyHex: ckp.publicHex, validityS: 60 }, org);
    expect(code(() => sec.verifyClientToken(noFleet))).toBe("no_fleet_management");
    const signed = createClientToken(
      {
        callerid: "u",
        publicKeyHex: ckp.publicHex,
        validityS: 60,
        permissions: { fleet_management: true, signed_fleet_management: true },
      },
      org,
    );
    expect(code(() => sec.verifyClientToken(signed))).toBe("requires_signer");
    expect(code(() => sec.verifyClientToken(serverJwt))).toBe("wrong_purpose");
    expect(code(() => sec.verifyServerToken(clientJwt))).toBe("wrong_purpose");
    expect(sec.verifyServerToken(serverJwt).identity).toBe("n1");
    const rogue = createClientToken(
      { callerid: "u", publicKeyHex: ckp.publicHex, validityS: 60, permissions: { fleet_management: true } },
      orgIssuer(generateKeyPair()),
    );
    expect(code(() => sec.verifyClientToken(rogue))).toBe("untrusted");
  });

  it("verifies signer tokens", () => {
    const sec = new ChoriaSecurity({ ...files("server3", skp, serverJwt), issuers: [orgKp.publicHex] });
    const signer = createClientToken(
      {
        callerid: "aaa",
        publicKeyHex: ckp.publicHex,
        validityS: 60,
        permissions: { authentication_delegator: true },
      },
      org,
    );
    expect(sec.verifySignerToken(signer).callerid).toBe("aaa");
    expect(code(() => sec.verifySignerToken(clientJwt))).toBe("not_delegator");
  });
});
