import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ClientError, login, needsLogin, tokenExpiresAt } from "../../src/client/index.js";
import {
  createChainIssuer,
  generateKeyPair,
  loadSeedFile,
  orgIssuer,
  verifyToken,
  writeSeedFile,
  type ClientClaims,
} from "../../src/core/security/index.js";
import { startAaaTestServer, type AaaTestServer } from "./signer-server.js";

let aaa: AaaTestServer;
let issuers: string[];
let dir: string;
let n = 0;

beforeAll(async () => {
  const orgKp = generateKeyPair();
  const org = orgIssuer(orgKp);
  issuers = [orgKp.publicHex];
  const chain = createChainIssuer(org, generateKeyPair(), 7200, { callerid: "aaa=authenticator" });
  const d = generateKeyPair();
  aaa = await startAaaTestServer({
    issuers,
    delegator: { seedHex: d.seedHex, token: "unused" },
    loginIssuer: chain,
    users: { alice: "s3cret:with:colons" },
    loginValidityS: 3600,
  });
  dir = mkdtempSync(join(tmpdir(), "chorus-login-"));
}, 30_000);

afterAll(async () => {
  await aaa?.stop();
  rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => {
  aaa.calls.length = 0;
  aaa.failLogin = false;
});

/** Fresh paths for each test, in a directory that does not exist yet. */
function paths(): { seedFile: string; tokenFile: string } {
  n++;
  return { seedFile: join(dir, `u${n}`, "key.seed"), tokenFile: join(dir, `u${n}`, "token.jwt") };
}

const mode = (p: string) => statSync(p).mode & 0o777;
const loginUrl = () => `${aaa.url}/choria/v1/login`;

/** A loopback URL nobody listens on. */
async function deadUrl(): Promise<string> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return `https://127.0.0.1:${port}/choria/v1/login`;
}

describe("login", () => {
  it("proves the key, and saves a token for it with mode 0600", async () => {
    const p = paths();
    const before = Math.floor(Date.now() / 1000);
    const r = await login({
      urls: [loginUrl()],
      username: "alice",
      password: "s3cret:with:colons",
      ...p,
      caFile: aaa.caFile,
    });
    expect(r.createdSeed).toBe(true);
    expect(mode(p.seedFile)).toBe(0o600);
    expect(mode(p.tokenFile)).toBe(0o600);
    const kp = loadSeedFile(p.seedFile);
    expect(r.publicHex).toBe(kp.publicHex);

    const call = aaa.calls[0]!;
    expect(call.proofOk).toBe(true);
    expect(call.body.public_key).toBe(kp.publicHex);
    expect(call.body.username).toBe("alice");
    // Choria sends the timestamp as a string of unix seconds
    expect(typeof call.body.timestamp).toBe("string");
    expect(Number(call.body.timestamp)).toBeGreaterThanOrEqual(before);

    const token = readFileSync(p.tokenFile, "utf8").trim();
    const claims = verifyToken(token, issuers) as ClientClaims;
    expect(claims.callerid).toBe("up=alice");
    expect(claims.public_key).toBe(kp.publicHex);
    expect(r.expiresAt?.getTime()).toBe(tokenExpiresAt(p.tokenFile)?.getTime());
    // no temporary files are left beside the token
    expect(readdirSync(join(p.tokenFile, "..")).sort()).toEqual(["key.seed", "token.jwt"]);
  });

  it("keeps an existing seed", async () => {
    const p = paths();
    const kp = generateKeyPair();
    writeSeedFile(join(dir, "keep.seed"), kp);
    const r = await login({
      urls: [loginUrl()],
      username: "alice",
      password: "s3cret:with:colons",
      seedFile: join(dir, "keep.seed"),
      tokenFile: p.tokenFile,
      caFile: aaa.caFile,
    });
    expect(r.createdSeed).toBe(false);
    expect(r.publicHex).toBe(kp.publicHex);
  });

  it("a refused login leaves the saved token alone and tries no other endpoint", async () => {
    const p = paths();
    await login({
      urls: [loginUrl()],
      username: "alice",
      password: "s3cret:with:colons",
      ...p,
      caFile: aaa.caFile,
    });
    const saved = readFileSync(p.tokenFile, "utf8");
    aaa.calls.length = 0;
    const err = await login({
      urls: [loginUrl(), loginUrl()],
      username: "alice",
      password: "wrong",
      ...p,
      caFile: aaa.caFile,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ClientError);
    expect((err as ClientError).code).toBe("login_failed");
    expect((err as ClientError).message).toContain("Login failed");
    expect(aaa.calls).toHaveLength(1);
    expect(readFileSync(p.tokenFile, "utf8")).toBe(saved);
  });

  it("moves on to the next endpoint when one is down or failing", async () => {
    const p = paths();
    const r = await login({
      urls: [await deadUrl(), loginUrl()],
      username: "alice",
      password: "s3cret:with:colons",
      ...p,
      caFile: aaa.caFile,
    });
    expect(r.url).toBe(loginUrl());
    aaa.failLogin = true;
    const err = await login({
      urls: [await deadUrl(), loginUrl()],
      username: "alice",
      password: "s3cret:with:colons",
      ...paths(),
      caFile: aaa.caFile,
    }).catch((e: unknown) => e);
    expect((err as ClientError).code).toBe("login_failed");
    expect((err as ClientError).message).toMatch(
      /no login endpoint answered: .*ECONNREFUSED.*; .*backend down/,
    );
  });

  it("refuses an endpoint whose certificate the CA did not issue, before sending the password", async () => {
    const p = paths();
    const err = await login({
      urls: [loginUrl()],
      username: "alice",
      password: "s3cret:with:colons",
      ...p,
      caFile: aaa.otherCaFile,
    }).catch((e: unknown) => e);
    expect((err as ClientError).code).toBe("login_failed");
    expect((err as ClientError).message).toMatch(/certificate/i);
    expect(aaa.calls).toHaveLength(0);
    expect(existsSync(p.tokenFile)).toBe(false);
  });
});

describe("token refresh", () => {
  it("needs a login only when the token expires within the given time", async () => {
    const p = paths();
    expect(needsLogin(p.tokenFile, 0)).toBe(true); // no token yet
    await login({
      urls: [loginUrl()],
      username: "alice",
      password: "s3cret:with:colons",
      ...p,
      caFile: aaa.caFile,
    });
    // the test server issues 1h tokens
    expect(needsLogin(p.tokenFile, 10 * 60_000)).toBe(false);
    expect(needsLogin(p.tokenFile, 2 * 3600_000)).toBe(true);
    expect(needsLogin(p.tokenFile, 0, Date.now() + 2 * 3600_000)).toBe(true);
    writeFileSync(p.tokenFile, "not a token");
    expect(needsLogin(p.tokenFile, 0)).toBe(true);
  });
});
