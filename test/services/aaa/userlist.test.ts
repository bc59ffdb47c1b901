import { writeFileSync } from "node:fs";
import { join } from "node:path";
import bcrypt from "bcrypt";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  clearTokenCache,
  generateKeyPair,
  tokenExpiry,
  verifyToken,
  type ClientClaims,
} from "../../../src/core/security/index.js";
import { lineLogger } from "../../../src/core/util/index.js";
import {
  AaaMetrics,
  FailureWindow,
  UserlistAuthenticator,
  hashPassword,
  loadAaaConfig,
  type UserlistConfig,
} from "../../../src/services/aaa/index.js";
import { ALICE, aaaFixture, hashPw, loginBody, type AaaFixture } from "./fixture.js";

let fx: AaaFixture;
let auth: UserlistAuthenticator;
let metrics: AaaMetrics;
let logs: string[];
let clock: number;
const userKp = generateKeyPair();

function userlistConfig(over: Partial<UserlistConfig> = {}): UserlistConfig {
  const cfg = loadAaaConfig(fx.writeConfig(fx.config)).userlist as UserlistConfig;
  return { ...cfg, ...over };
}

async function startAuth(
  over: Partial<UserlistConfig> = {},
  now?: () => number,
): Promise<UserlistAuthenticator> {
  auth?.stop();
  metrics = new AaaMetrics("testsite");
  auth = new UserlistAuthenticator(userlistConfig(over), {
    site: "testsite",
    metrics,
    log: lineLogger((level, line) => logs.push(`${level} ${line}`)),
    ...(now && { now }),
  });
  await auth.start();
  return auth;
}

async function metric(name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = (await metrics.registry.getSingleMetric(name)?.get())?.values ?? [];
  return m
    .filter((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))
    .reduce((s, v) => s + v.value, 0);
}

beforeEach(() => {
  fx = aaaFixture();
  logs = [];
  clock = Date.now();
});
afterEach(() => {
  auth?.stop();
  fx.cleanup();
});

describe("userlist login", () => {
  it("issues a chain-issued client JWT that verifies against the org issuer", async () => {
    await startAuth();
    const out = await auth.login(loginBody(userKp, ALICE.username, ALICE.password), "10.0.0.1");
    if (!out.ok) throw new Error(out.reason);
    clearTokenCache();
    const claims = verifyToken(out.token, [fx.orgKp.publicHex]) as ClientClaims;
    expect(claims.iss).toBe(`C-${fx.chain.jti}.${fx.chain.publicHex}`);
    expect(claims.purpose).toBe("choria_client_id");
    expect(claims.callerid).toBe("up=alice");
    expect(claims.public_key).toBe(userKp.publicHex);
    expect(claims.agents).toEqual(["rpcutil.*", "puppet.status"]);
    expect(claims.ou).toBe("acme");
    expect(claims.user_properties).toEqual({ group: "ops" });
    expect(claims.permissions).toEqual({ streams_user: true });
    expect(claims.issexp).toBe(fx.chain.issexp);
    expect((claims.exp as number) - Math.floor(Date.now() / 1000)).toBeGreaterThan(3590);
    // another org does not trust it
    expect(() => verifyToken(out.token, [generateKeyPair().publicHex])).toThrow(
      /not signed by a trusted org/,
    );
    expect(logs.some((l) => l.startsWith("info logged in") && l.includes("user=alice"))).toBe(true);
  });

  it("never issues a token that outlives its chain issuer", async () => {
    fx.cleanup();
    fx = aaaFixture({ chainValidityS: 120 });
    await startAuth();
    const out = await auth.login(loginBody(userKp, ALICE.username, ALICE.password), "10.0.0.1");
    if (!out.ok) throw new Error(out.reason);
    const claims = verifyToken(out.token, [fx.orgKp.publicHex]);
    expect(claims.exp).toBeLessThanOrEqual(fx.chain.issexp as number);
    expect(tokenExpiry(claims)).toBe(fx.chain.issexp);
  });

  it("carries cedar_policy (inline or from a file) and opa_policy", async () => {
    const policy = 'permit(principal, action, resource) when { context.agent == "rpcutil" };';
    writeFileSync(join(fx.dir, "bob.cedar"), policy);
    fx.writeUsers([
      { username: "bob", password: hashPw("pw"), cedar_policy_file: join(fx.dir, "bob.cedar") },
      { username: "carol", password: hashPw("pw"), opa_policy: "package choria.aaa.policy" },
    ]);
    await startAuth();
    const bob = await auth.login(loginBody(userKp, "bob", "pw"), "a");
    const carol = await auth.login(loginBody(userKp, "carol", "pw"), "a");
    if (!bob.ok || !carol.ok) throw new Error("login failed");
    const bc = verifyToken(bob.token, [fx.orgKp.publicHex]) as ClientClaims;
    expect(bc.cedar_policy).toBe(policy);
    expect(bc.agents).toBeUndefined();
    expect((verifyToken(carol.token, [fx.orgKp.publicHex]) as ClientClaims).opa_policy).toBe(
      "package choria.aaa.policy",
    );
  });

  it("answers every credential failure with one generic message and logs the reason", async () => {
    await startAuth();
    const cases: [string, ReturnType<typeof loginBody>, RegExp][] = [
      ["bad password", loginBody(userKp, "alice", "wrong"), /incorrect password/],
      ["unknown user", loginBody(userKp, "mallory", "x"), /unknown user/],
      [
        "proof by another key",
        { ...loginBody(userKp, "alice", ALICE.password), public_key: generateKeyPair().publicHex },
        /invalid signature/,
      ],
      [
        "proof for another password",
        { ...loginBody(userKp, "alice", "other"), password: ALICE.password },
        /invalid signature/,
      ],
    ];
    for (const [what, body, reason] of cases) {
      logs = [];
      const out = await auth.login(body, `10.0.0.${cases.findIndex((c) => c[0] === what)}`);
      expect(out, what).toMatchObject({ ok: false, status: 401, error: "Login failed" });
      expect(logs.join("\n"), what).toMatch(reason);
    }
    expect(await metric("choria_aaa_authenticator_errors", { authenticator: "userlist" })).toBe(4);
    expect(await metric("chorus_aaa_login_failures_total", { reason: "incorrect password" })).toBe(1);
  });

  it("refuses a replayed proof older than 60 s and a timestamp in the future", async () => {
    await startAuth();
    const now = Math.floor(Date.now() / 1000);
    const old = await auth.login(loginBody(userKp, "alice", ALICE.password, now - 61), "a");
    expect(old).toMatchObject({ ok: false, status: 401, error: "Login failed" });
    expect(!old.ok && old.reason).toMatch(/stale proof/);
    const future = await auth.login(loginBody(userKp, "alice", ALICE.password, now + 5), "b");
    expect(future).toMatchObject({ ok: false, status: 401 });
    expect(!future.ok && future.reason).toMatch(/future timestamp/);
    // the same proof within the window is fine (Choria semantics: a window, not a nonce)
    expect((await auth.login(loginBody(userKp, "alice", ALICE.password, now - 50), "c")).ok).toBe(true);
  });

  it("refuses malformed fields with 400", async () => {
    await startAuth();
    const good = loginBody(userKp, "alice", ALICE.password);
    for (const body of [
      { ...good, timestamp: "yesterday" },
      { ...good, public_key: "zz" },
      { ...good, signature: "abcd" },
      { ...good, username: "" },
    ]) {
      expect(await auth.login(body, "a")).toMatchObject({ ok: false, status: 400, error: "Login failed" });
    }
  });

  it("locks a user out after max_failures_per_user, even with the right password, until the window passes", async () => {
    await startAuth({ max_failures_per_user: 3, lockoutS: 60 }, () => clock);
    for (let i = 0; i < 3; i++) {
      const out = await auth.login(
        loginBody(userKp, "alice", "wrong", Math.floor(clock / 1000)),
        `10.0.1.${i}`,
      );
      expect(out).toMatchObject({ status: 401 });
    }
    const locked = await auth.login(
      loginBody(userKp, "alice", ALICE.password, Math.floor(clock / 1000)),
      "10.0.2.1",
    );
    expect(locked).toMatchObject({ ok: false, status: 429 });
    expect(!locked.ok && locked.retryAfterS).toBeGreaterThan(55);
    expect(await metric("chorus_aaa_login_lockouts_total", { scope: "user" })).toBe(1);
    clock += 61_000;
    expect(
      (await auth.login(loginBody(userKp, "alice", ALICE.password, Math.floor(clock / 1000)), "10.0.2.1")).ok,
    ).toBe(true);
  });

  it("locks an address out after max_failures_per_address across usernames", async () => {
    await startAuth({ max_failures_per_address: 4, lockoutS: 60 }, () => clock);
    for (let i = 0; i < 4; i++)
      await auth.login(loginBody(userKp, `user${i}`, "x", Math.floor(clock / 1000)), "192.0.2.7");
    const out = await auth.login(
      loginBody(userKp, "alice", ALICE.password, Math.floor(clock / 1000)),
      "192.0.2.7",
    );
    expect(out).toMatchObject({ ok: false, status: 429 });
    // another address is not affected
    expect(
      (await auth.login(loginBody(userKp, "alice", ALICE.password, Math.floor(clock / 1000)), "192.0.2.8"))
        .ok,
    ).toBe(true);
  });

  it("re-reads the users file when it changes and keeps the last good list when it breaks", async () => {
    await startAuth();
    expect(auth.userNames()).toEqual(["alice"]);
    fx.writeUsers([
      { username: "alice", password: hashPw(ALICE.password) },
      { username: "dave", password: hashPw("dave-pw"), acls: ["*"] },
    ]);
    // the login itself checks the file's stamp, no need to wait for the watcher
    expect((await auth.login(loginBody(userKp, "dave", "dave-pw"), "a")).ok).toBe(true);
    expect(auth.userNames()).toEqual(["alice", "dave"]);

    writeFileSync(fx.usersFile, "- username: eve\n  password: not-a-bcrypt-hash\n");
    expect((await auth.login(loginBody(userKp, "dave", "dave-pw"), "a")).ok).toBe(true);
    expect(auth.userNames()).toEqual(["alice", "dave"]);
    expect(await metric("chorus_aaa_users_file_errors_total")).toBe(1);
    expect(logs.join("\n")).toMatch(/users file is broken; keeping the last good list.*users\[0\]\.password/);

    writeFileSync(fx.usersFile, "{ not yaml: [");
    await new Promise((r) => setTimeout(r, 200)); // the watcher sees it too
    expect((await auth.login(loginBody(userKp, "alice", ALICE.password), "a")).ok).toBe(true);
    expect(await metric("chorus_aaa_users_file_errors_total")).toBe(2);
  });

  it("reloads on its own through the file watcher", async () => {
    await startAuth();
    fx.writeUsers([{ username: "frank", password: hashPw("pw") }]);
    const deadline = Date.now() + 3000;
    while (!auth.userNames().includes("frank") && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 25));
    expect(auth.userNames()).toEqual(["frank"]);
  });

  it("refuses to start on a broken users file: there is no last good list", async () => {
    writeFileSync(fx.usersFile, "- username: x\n");
    await expect(startAuth()).rejects.toThrow(/users\[0\]\.password: is required/);
  });

  it("skips bcrypt for a recently verified credential, and forgets it when the file changes", async () => {
    await startAuth();
    for (let i = 0; i < 3; i++)
      expect((await auth.login(loginBody(userKp, "alice", ALICE.password), "a")).ok).toBe(true);
    expect(await metric("chorus_aaa_credential_cache_total", { result: "miss" })).toBe(1);
    expect(await metric("chorus_aaa_credential_cache_total", { result: "hit" })).toBe(2);
    // a wrong password never hits the cache
    expect((await auth.login(loginBody(userKp, "alice", "wrong"), "a")).ok).toBe(false);
    fx.writeUsers([{ username: "alice", password: hashPw("new-password") }]);
    expect((await auth.login(loginBody(userKp, "alice", ALICE.password), "a")).ok).toBe(false);
    expect((await auth.login(loginBody(userKp, "alice", "new-password"), "a")).ok).toBe(true);
  });

  it("FailureWindow locks at max failures and unlocks as they age out", () => {
    const w = new FailureWindow(2, 1000, 10);
    w.fail("k", 0);
    expect(w.lockedFor("k", 1)).toBe(0);
    w.fail("k", 500);
    expect(w.lockedFor("k", 600)).toBe(400);
    expect(w.lockedFor("k", 1000)).toBe(0);
    for (let i = 0; i < 50; i++) w.fail(`u${i}`, 2000);
    expect(w.size).toBeLessThanOrEqual(11);
  });
});

describe("crypt and login rate", () => {
  it("hashes with cost 10 by default", async () => {
    const h = await hashPassword("s3cret");
    expect(h).toMatch(/^\$2b\$10\$/);
    expect(await bcrypt.compare("s3cret", h)).toBe(true);
  });
});
