import { describe, expect, it } from "vitest";
import type { ClientClaims } from "../../../src/core/security/index.js";
import {
  AaasvcAuthorizer,
  actionListAuthorizer,
  evaluateAgentList,
  type AuthzInput,
} from "../../../src/server/index.js";

function input(claims: Partial<ClientClaims>, over: Partial<AuthzInput> = {}): AuthzInput {
  return {
    agent: "rpcutil",
    action: "ping",
    data: {},
    callerid: "up=bob",
    sender: "bob.example",
    collective: "mcollective",
    ttl: 60,
    time: 1_700_000_000,
    site: "test",
    claims: { purpose: "choria_client_id", iss: "I-x", public_key: "00", callerid: "up=bob", ...claims },
    filter: undefined,
    ...over,
  };
}

describe("evaluateAgentList (Choria's actionlist rules)", () => {
  const table: [string[], string, string, boolean][] = [
    [["*"], "puppet", "disable", true],
    [["rpcutil.*"], "rpcutil", "inventory", true],
    [["rpcutil.*"], "puppet", "status", false],
    [["rpcutil.ping"], "rpcutil", "ping", true],
    [["rpcutil.ping"], "rpcutil", "inventory", false],
    [["rpcutil.ping", "package.status"], "package", "status", true],
    [["package.status", "*"], "puppet", "enable", true],
    // no wildcard agents: "*.ping" names an agent called "*"
    [["*.ping"], "rpcutil", "ping", false],
    // invalid entries grant nothing and do not stop later ones
    [["rpcutil", "a.b.c", "puppet.status"], "puppet", "status", true],
    [["rpcutil"], "rpcutil", "ping", false],
    [["a.b.c"], "a", "b", false],
    [[], "rpcutil", "ping", false],
    // exact names only
    [["rpcutil.pin"], "rpcutil", "ping", false],
    [["RPCUTIL.ping"], "rpcutil", "ping", false],
  ];
  it.each(table)("%j allows %s.%s: %s", (list, agent, action, allowed) => {
    expect(evaluateAgentList(agent, action, list).allowed).toBe(allowed);
  });

  it("names the entry that allowed in the reason", () => {
    expect(evaluateAgentList("rpcutil", "ping", ["puppet.*", "rpcutil.*"]).reason).toContain('"rpcutil.*"');
    expect(evaluateAgentList("rpcutil", "ping", ["puppet.*"]).reason).toContain("rpcutil.ping");
  });
});

describe("actionListAuthorizer", () => {
  const a = actionListAuthorizer();
  it("decides by the agents claim and denies a token without one", () => {
    expect(a.name).toBe("actionlist");
    expect(a.authorize(input({ agents: ["rpcutil.ping"] })).allowed).toBe(true);
    expect(a.authorize(input({ agents: ["rpcutil.ping"] }, { action: "inventory" })).allowed).toBe(false);
    expect(a.authorize(input({})).allowed).toBe(false);
    expect(a.authorize(input({ agents: [] })).reason).toContain("no agents claim");
  });
  it("always allows discovery, as Choria", () => {
    expect(a.authorize(input({}, { agent: "discovery" })).allowed).toBe(true);
  });
});

describe("AaasvcAuthorizer.decide (node side, Choria's claim rules)", () => {
  const z = new AaasvcAuthorizer();
  const permitAll = "permit(principal, action, resource);";
  it("uses the agents list", () => {
    expect(z.decide(input({ agents: ["rpcutil.ping"] })).allowed).toBe(true);
    expect(z.decide(input({ agents: ["rpcutil.ping"] }, { action: "inventory" })).allowed).toBe(false);
  });
  it("uses the cedar policy", () => {
    expect(z.decide(input({ cedar_policy: permitAll })).allowed).toBe(true);
  });
  it("denies agents together with a policy", () => {
    for (const c of [
      { agents: ["*"], cedar_policy: permitAll },
      { agents: ["*"], opa_policy: "package io.choria.aaasvc\nallow = true" },
    ]) {
      const d = z.decide(input(c));
      expect(d).toEqual({ allowed: false, reason: "the caller's token has both agents and a policy" });
    }
  });
  it("denies a token with neither", () => {
    const d = z.decide(input({}));
    expect(d.allowed).toBe(false);
    expect(d.reason).toContain("no agents or policy");
  });
  it("denies rego with a reason that says to use cedar", () => {
    const d = z.decide(input({ opa_policy: "package io.choria.aaasvc\nallow = true" }));
    expect(d).toEqual({ allowed: false, reason: "rego policies are not supported; use cedar_policy" });
  });
  it("evaluates cedar when a token carries both cedar and rego (mixed fleets)", () => {
    const d = z.decide(input({ cedar_policy: permitAll, opa_policy: "package x" }));
    expect(d.allowed).toBe(true);
  });
  it("passes the request through with site server and time in seconds", () => {
    const policy = `permit(principal, action, resource) when { context.site == "server" && context.time == 1700000000 && context.sender == "bob.example" && context.ttl == 60 };`;
    const req = {
      agent: "rpcutil",
      action: "ping",
      caller: "up=bob",
      callerClaims: input({ cedar_policy: policy }).claims,
      collective: "mcollective",
      data: {},
      node: undefined as never,
      sender: "bob.example",
      ttl: 60,
      time: 1_700_000_000 * 1e9 + 123,
    };
    expect(z.authorize(req)).toMatchObject({ allowed: true });
    expect(z.authorize({ ...req, ttl: 61 })).toMatchObject({ allowed: false });
  });
});
