import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { decodeTokenUnverified } from "../../../src/core/security/index.js";
import { chorus } from "../../helpers/cli.js";

const dir = mkdtempSync(join(tmpdir(), "chorus-jwt-claims-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const issuerSeed = join(dir, "issuer.seed");
const claimsOf = (file: string) =>
  decodeTokenUnverified(readFileSync(file, "utf8").trim()) as Record<string, unknown>;

describe("chorus jwt client: authorization and subject claims", () => {
  it("writes agents, ou and extra subjects into the token", () => {
    expect(chorus(["jwt", "issuer", issuerSeed]).status).toBe(0);
    const token = join(dir, "ops.jwt");
    const r = chorus([
      "jwt",
      "client",
      token,
      "up=ops",
      "--issuer-seed",
      issuerSeed,
      "--agents",
      "rpcutil.ping, puppet.*",
      "--ou",
      "ops",
      "--pub-subjects",
      "a.b,c.>",
      "--sub-subjects",
      "x.*",
    ]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const c = claimsOf(token);
    expect(c.agents).toEqual(["rpcutil.ping", "puppet.*"]);
    expect(c.ou).toBe("ops");
    expect(c.pub_subjects).toEqual(["a.b", "c.>"]);
    expect(c.sub_subjects).toEqual(["x.*"]);
    expect(c.cedar_policy).toBeUndefined();
  });

  it("writes a cedar policy and a rego policy (as opa_policy) from files", () => {
    const cedar = join(dir, "p.cedar");
    const rego = join(dir, "p.rego");
    const policy = `permit(principal, action in Chorus::Action::"puppet", resource);\n`;
    writeFileSync(cedar, policy);
    writeFileSync(rego, "package io.choria.aaasvc\ndefault allow = false\n");
    const token = join(dir, "policy.jwt");
    const r = chorus([
      "jwt",
      "client",
      token,
      "up=pol",
      "--issuer-seed",
      issuerSeed,
      "--cedar-policy",
      cedar,
      "--opa-policy",
      rego,
    ]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const c = claimsOf(token);
    expect(c.cedar_policy).toBe(policy);
    expect(c.opa_policy).toContain("package io.choria.aaasvc");
    expect(c.ou).toBe("choria");
  });

  it("refuses a cedar policy that does not parse, a bad agents entry, and agents with a policy", () => {
    const broken = join(dir, "broken.cedar");
    writeFileSync(broken, "permit(principal, action, resource) when {");
    const good = join(dir, "good.cedar");
    writeFileSync(good, "permit(principal, action, resource);");
    const base = ["jwt", "client", join(dir, "bad.jwt"), "up=bad", "--issuer-seed", issuerSeed];
    const cases: [string[], string][] = [
      [["--cedar-policy", broken], `cedar policy ${broken}: `],
      [["--cedar-policy", join(dir, "missing.cedar")], "cannot read cedar policy"],
      [["--agents", "rpcutil"], 'agents entry "rpcutil" is not *, agent.* or agent.action'],
      [["--agents", "rpcutil.ping", "--cedar-policy", good], "both agents and a policy"],
    ];
    for (const [extra, message] of cases) {
      const r = chorus([...base, ...extra]);
      expect(r.status, extra.join(" ")).toBe(1);
      expect(r.stderr).toContain(message);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
    }
  });
});
