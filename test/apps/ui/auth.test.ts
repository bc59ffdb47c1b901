import bcrypt from "bcrypt";
import { describe, expect, it } from "vitest";
import { LocalUsers, SessionStore, sessionIdFrom } from "../../../src/apps/ui/index.js";

describe("LocalUsers", () => {
  it("checks bcrypt users and the dev password", async () => {
    const users = new LocalUsers(
      { alice: await bcrypt.hash("pw1", 4) },
      { username: "admin", password: "dev" },
    );
    expect(await users.check("alice", "pw1")).toBe(true);
    expect(await users.check("alice", "pw2")).toBe(false);
    expect(await users.check("admin", "dev")).toBe(true);
    expect(await users.check("admin", "devx")).toBe(false);
    expect(await users.check("bob", "pw1")).toBe(false);
    // inherited names are not users
    expect(await users.check("constructor", "")).toBe(false);
  });
});

describe("SessionStore", () => {
  it("expires sessions and tells why", () => {
    let now = 0;
    const ended: string[] = [];
    const s = new SessionStore(
      1000,
      (x) => ended.push(x.username),
      () => now,
    );
    const a = s.create("alice", "local");
    expect(a.id.length).toBeGreaterThanOrEqual(40);
    expect(s.lookup(a.id)).toMatchObject({ ok: true });
    expect(s.lookup("nope")).toEqual({ ok: false, error: "not logged in" });
    expect(s.lookup(undefined)).toEqual({ ok: false, error: "not logged in" });
    now = 1000;
    expect(s.lookup(a.id)).toEqual({ ok: false, error: "session expired: log in again" });
    expect(ended).toEqual(["alice"]);
    expect(s.size).toBe(0);
  });

  it("reads the session cookie among others", () => {
    expect(sessionIdFrom("a=b; chorus_session=xyz; c=d")).toBe("xyz");
    expect(sessionIdFrom("a=b")).toBeUndefined();
  });
});
