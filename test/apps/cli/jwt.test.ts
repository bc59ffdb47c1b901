import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { decodeTokenUnverified } from "../../../src/core/security/index.js";
import { chorus } from "../../helpers/cli.js";

const dir = mkdtempSync(join(tmpdir(), "chorus-jwt-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("chorus jwt", () => {
  const issuerSeed = join(dir, "issuer.seed");
  let issuerPublic = "";

  it("creates an org issuer and prints its public key", () => {
    const r = chorus(["jwt", "issuer", issuerSeed]);
    expect(r.status).toBe(0);
    issuerPublic = r.stdout.trim();
    expect(issuerPublic).toMatch(/^[0-9a-f]{64}$/);
  });

  it("issues a client token with permissions that verifies against the issuer", () => {
    const token = join(dir, "alice.jwt");
    const r = chorus([
      "jwt",
      "client",
      token,
      "choria=alice",
      "--issuer-seed",
      issuerSeed,
      "--permission",
      "fleet_management",
      "events_viewer",
      "--validity",
      "1h",
    ]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const claims = decodeTokenUnverified(readFileSync(token, "utf8").trim()) as Record<string, unknown>;
    expect(claims.purpose).toBe("choria_client_id");
    expect(claims.callerid).toBe("choria=alice");
    expect(claims.iss).toBe(`I-${issuerPublic}`);
    expect(claims.permissions).toEqual({ fleet_management: true, events_viewer: true });
    expect((claims.exp as number) - (claims.iat as number)).toBe(3600);
    expect(readFileSync(join(dir, "alice.seed"), "utf8").trim()).toMatch(/^[0-9a-f]{64}$/);

    const v = chorus(["jwt", "verify", token, "--issuer", issuerPublic]);
    expect(v.status).toBe(0);
    const view = JSON.parse(chorus(["jwt", "view", token, "--issuer", issuerPublic]).stdout) as {
      verified: boolean;
    };
    expect(view.verified).toBe(true);
  });

  it("issues a server token with collectives", () => {
    const token = join(dir, "node.jwt");
    const r = chorus([
      "jwt",
      "server",
      token,
      "node1.example",
      "--issuer-seed",
      issuerSeed,
      "--collectives",
      "a,b",
      "--permission",
      "service_host",
    ]);
    expect(r.status).toBe(0);
    const claims = decodeTokenUnverified(readFileSync(token, "utf8").trim()) as Record<string, unknown>;
    expect(claims).toMatchObject({
      purpose: "choria_server",
      identity: "node1.example",
      collectives: ["a", "b"],
    });
  });

  it("fails verification against another issuer with one clear line", () => {
    const other = chorus(["jwt", "issuer", join(dir, "other.seed")]).stdout.trim();
    const r = chorus(["jwt", "verify", join(dir, "alice.jwt"), "--issuer", other]);
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toContain("does not verify");
  });

  it("names a bad argument and exits non-zero", () => {
    const bad = chorus([
      "jwt",
      "client",
      join(dir, "x.jwt"),
      "choria=x",
      "--issuer-seed",
      issuerSeed,
      "--permission",
      "fly",
    ]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain('unknown permission "fly"');
    const badValidity = chorus([
      "jwt",
      "client",
      join(dir, "x.jwt"),
      "choria=x",
      "--issuer-seed",
      issuerSeed,
      "--validity",
      "soon",
    ]);
    expect(badValidity.status).toBe(1);
    expect(badValidity.stderr).toContain('validity "soon"');
    const missingSeed = chorus([
      "jwt",
      "client",
      join(dir, "x.jwt"),
      "choria=x",
      "--issuer-seed",
      join(dir, "nope.seed"),
    ]);
    expect(missingSeed.status).toBe(1);
    expect(missingSeed.stderr).toContain("nope.seed");
  });
});
