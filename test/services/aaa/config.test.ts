import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AaaConfigError, loadAaaConfig, parseAaaConfig } from "../../../src/services/aaa/index.js";
import { aaaFixture, type AaaFixture } from "./fixture.js";

let fx: AaaFixture;
beforeAll(() => {
  fx = aaaFixture();
});
afterAll(() => fx.cleanup());

/** The config with one key path changed (undefined deletes it). */
function variant(path: string, value: unknown): Record<string, unknown> {
  const cfg = structuredClone(fx.config);
  const keys = path.split(".");
  let o = cfg as Record<string, unknown>;
  for (const k of keys.slice(0, -1)) o = o[k] as Record<string, unknown>;
  const last = keys[keys.length - 1] as string;
  if (value === undefined) delete o[last];
  else o[last] = value;
  return cfg;
}

function errorOf(cfg: Record<string, unknown>): string {
  try {
    parseAaaConfig(cfg, join(fx.dir, "aaa.yaml"));
  } catch (err) {
    expect(err).toBeInstanceOf(AaaConfigError);
    return (err as Error).message;
  }
  throw new Error("config was accepted");
}

describe("AAA config", () => {
  it("loads YAML and JSON alike, resolving paths from the config's folder and parsing durations", () => {
    const y = loadAaaConfig(fx.writeConfig(fx.config, "aaa.yaml"));
    const j = loadAaaConfig(fx.writeConfig(fx.config, "aaa.json"));
    for (const c of [y, j]) {
      expect(c.site).toBe("testsite");
      expect(c.authorizer).toBe("actionlist");
      expect(c.basicjwt_signer.issuers).toEqual([fx.orgKp.publicHex]);
      expect(c.basicjwt_signer.maxValidityS).toBe(7200);
      expect(c.basicjwt_signer.signing_seed).toBe(join(fx.dir, "signer.seed"));
      expect(c.userlist?.validityS).toBe(3600);
      expect(c.userlist?.users_file).toBe(join(fx.dir, "users.yaml"));
      // Chorus defaults for the limits Choria does not have
      expect(c.userlist?.max_failures_per_user).toBe(5);
      expect(c.userlist?.max_failures_per_address).toBe(20);
      expect(c.userlist?.lockoutS).toBe(300);
      expect(c.logfile_auditor?.logfile).toBe(fx.auditFile);
    }
  });

  it("defaults site to default, as Choria", () => {
    const c = parseAaaConfig(variant("site", undefined), join(fx.dir, "x.yaml"));
    expect(c.site).toBe("default");
  });

  it("reads signing_certificate from a file of hex keys too", () => {
    const f = join(fx.dir, "issuers.txt");
    writeFileSync(f, `${fx.orgKp.publicHex}\n`);
    const c = parseAaaConfig(
      variant("basicjwt_signer.signing_certificate", "issuers.txt"),
      join(fx.dir, "a.yaml"),
    );
    expect(c.basicjwt_signer.issuers).toEqual([fx.orgKp.publicHex]);
    expect(errorOf(variant("basicjwt_signer.signing_certificate", "nope.pem"))).toMatch(
      /^basicjwt_signer\.signing_certificate: .*neither a hex ed25519 public key nor a readable file/,
    );
  });

  it("requires an authorizer (Choria panics without one)", () => {
    expect(errorOf(variant("authorizer", undefined))).toMatch(/authorizer: is required/);
  });

  it("refuses opa with a pointer to cedar", () => {
    expect(errorOf(variant("authorizer", "opa"))).toMatch(/authorizer: opa is not supported; use cedar/);
    expect(errorOf(variant("authorizer", "magic"))).toMatch(
      /authorizer: must be one of "actionlist", "cedar"/,
    );
  });

  it("names the key of every problem", () => {
    expect(errorOf(variant("basicjwt_signer.max_validity", undefined))).toMatch(
      /basicjwt_signer\.max_validity: is required/,
    );
    expect(errorOf(variant("basicjwt_signer.max_validity", "forever"))).toMatch(
      /basicjwt_signer\.max_validity: "forever" is not a duration/,
    );
    expect(errorOf(variant("userlist_authenticator.validity", "1y"))).toMatch(
      /userlist_authenticator\.validity: "1y" is not a duration/,
    );
    expect(errorOf(variant("port", "eighty"))).toMatch(/port: must be integer/);
    expect(errorOf(variant("auditors", ["syslog"]))).toMatch(/auditors\[0\]: must be one of/);
    expect(
      errorOf(variant("userlist_authenticator.users", [{ username: "bob", password: "plaintext" }])),
    ).toMatch(/userlist_authenticator\.users\[0\]\.password: must match pattern/);
    expect(errorOf(variant("logfile_auditor", undefined))).toMatch(
      /logfile_auditor: is required with the logfile auditor/,
    );
    expect(errorOf(variant("userlist_authenticator", undefined))).toMatch(
      /userlist_authenticator: is required/,
    );
    expect(errorOf(variant("tls_key", "key.pem"))).toMatch(/tls_certificate and tls_key/);
    expect(errorOf(variant("basicjwt_signer.choria_service", true))).toMatch(/choria_config: is required/);
  });

  it("says which file could not be read or parsed", () => {
    expect(() => loadAaaConfig(join(fx.dir, "missing.yaml"))).toThrow(/cannot read .*missing\.yaml/);
    const bad = join(fx.dir, "bad.yaml");
    writeFileSync(bad, "site: [unclosed\n");
    expect(() => loadAaaConfig(bad)).toThrow(/bad\.yaml: cannot parse/);
  });
});
