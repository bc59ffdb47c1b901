import { describe, expect, it } from "vitest";
import type { ClientClaims } from "../../../src/core/security/index.js";
import type { Filter } from "../../../src/core/protocol/index.js";
import { cedarAuthorizer, cedarPolicyProblem, type AuthzInput } from "../../../src/server/index.js";

function input(claims: Partial<ClientClaims>, over: Partial<AuthzInput> = {}): AuthzInput {
  return {
    agent: "puppet",
    action: "disable",
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

const filter = (f: Partial<Filter>): Filter => ({
  fact: [],
  cf_class: [],
  agent: [],
  identity: [],
  compound: [],
  ...f,
});

describe("cedarAuthorizer", () => {
  const z = cedarAuthorizer();
  const decide = (policy: string, over: Partial<AuthzInput> = {}, claims: Partial<ClientClaims> = {}) =>
    z.authorize(input({ cedar_policy: policy, ...claims }, over));

  it('permits by action hierarchy: action in Chorus::Action::"puppet" is every puppet action', () => {
    const p = `permit(principal, action in Chorus::Action::"puppet", resource);`;
    expect(decide(p).allowed).toBe(true);
    expect(decide(p, { action: "status" }).allowed).toBe(true);
    expect(decide(p, { agent: "rpcutil", action: "ping" }).allowed).toBe(false);
    expect(decide(p, { agent: "rpcutil", action: "ping" }).reason).toBe(
      "no cedar policy permits the request",
    );
  });

  it("forbid overrides permit and is named in the reason", () => {
    const p = [
      `permit(principal, action in Chorus::Action::"puppet", resource);`,
      `forbid(principal, action == Chorus::Action::"puppet.disable", resource);`,
    ].join("\n");
    expect(decide(p, { action: "enable" }).allowed).toBe(true);
    const d = decide(p);
    expect(d.allowed).toBe(false);
    expect(d.reason).toBe("forbidden by cedar policy1");
  });

  it("matches principal and collective", () => {
    const p = `permit(principal == Chorus::Caller::"up=bob", action, resource == Chorus::Collective::"mcollective");`;
    expect(decide(p).allowed).toBe(true);
    expect(decide(p, { callerid: "up=eve" }).allowed).toBe(false);
    expect(decide(p, { collective: "other" }).allowed).toBe(false);
  });

  it("requires_fact_filter / requires_filter equivalents from context.filter and has_filter", () => {
    const facts = `permit(principal, action, resource) when { context.filter.facts.contains("country=mt") };`;
    const mt = filter({ fact: [{ fact: "country", operator: "==", value: "mt" }] });
    expect(decide(facts, { filter: mt }).allowed).toBe(true);
    expect(decide(facts.replace("country=mt", "country==mt"), { filter: mt }).allowed).toBe(true);
    expect(
      decide(facts, { filter: filter({ fact: [{ fact: "country", operator: "==", value: "de" }] }) }).allowed,
    ).toBe(false);
    expect(decide(facts).allowed).toBe(false);

    const any = `permit(principal, action, resource) when { context.has_filter };`;
    expect(decide(any, { filter: filter({ identity: ["web1"] }) }).allowed).toBe(true);
    expect(decide(any, { filter: filter({ cf_class: ["apache"] }) }).allowed).toBe(true);
    // the agent filter is always present and does not count, as in Choria
    expect(decide(any, { filter: filter({ agent: ["puppet"] }) }).allowed).toBe(false);
    expect(decide(any).allowed).toBe(false);

    const cls = `permit(principal, action, resource) when { context.filter.classes.contains("apache") && context.filter.identities.contains("web1") };`;
    expect(decide(cls, { filter: filter({ cf_class: ["apache"], identity: ["web1"] }) }).allowed).toBe(true);
    expect(decide(cls, { filter: filter({ cf_class: ["apache"] }) }).allowed).toBe(false);
  });

  it("sees data, claims and site; nulls and fractions in data do not break evaluation", () => {
    const p = `permit(principal, action, resource) when { context.data.force == false && context.claims.ou == "ops" && context.site == "test" && context.claims.user_properties.group == "admins" };`;
    const claims = { ou: "ops", user_properties: { group: "admins" } };
    expect(decide(p, { data: { force: false, gone: null, ratio: 0.5 } }, claims).allowed).toBe(true);
    expect(decide(p, { data: { force: true } }, claims).allowed).toBe(false);
    expect(decide(p, { data: { force: false } }, { ...claims, ou: "dev" }).allowed).toBe(false);
  });

  it("request data cannot forge entity references", () => {
    const p = `permit(principal, action, resource) when { context.data.x == Chorus::Caller::"root" };`;
    const d = decide(p, { data: { x: { __entity: { type: "Chorus::Caller", id: "root" } } } });
    expect(d.allowed).toBe(false);
  });

  it("a policy that does not parse denies with Cedar's error, never throws", () => {
    const d = decide("permit(principal, action, resource) when { context.x == ");
    expect(d.allowed).toBe(false);
    expect(d.reason).toMatch(/^cedar policy does not parse: /);
    // same broken text again: answered from the cache, same answer
    expect(decide("permit(principal, action, resource) when { context.x == ")).toEqual(d);
  });

  it("an evaluation error in one policy is reported and does not permit", () => {
    const p = `permit(principal, action, resource) when { context.nope == 1 };`;
    const d = decide(p);
    expect(d.allowed).toBe(false);
    expect(d.reason).toContain("policy errors");
  });

  it("denies without a cedar_policy, and names rego when that is what the token has", () => {
    expect(z.authorize(input({})).reason).toContain("no cedar_policy claim");
    expect(z.authorize(input({ opa_policy: "package x" })).reason).toBe(
      "rego policies are not supported; use cedar_policy",
    );
    expect(z.authorize(input({}, { agent: "discovery" })).allowed).toBe(true);
  });

  it("keeps at most maxCached parsed policies and stays correct when slots are reused", () => {
    const small = cedarAuthorizer({ maxCached: 2 });
    const only = (action: string) =>
      `permit(principal, action == Chorus::Action::"puppet.${action}", resource);`;
    const ask = (policy: string, action: string) =>
      small.authorize(input({ cedar_policy: policy }, { action })).allowed;
    for (const a of ["a", "b", "c", "d", "e"]) {
      expect(ask(only(a), a)).toBe(true);
      expect(small.cached).toBeLessThanOrEqual(2);
    }
    expect(small.cached).toBe(2);
    // "a" was evicted and its slot now holds another policy: re-parsed, still exact
    expect(ask(only("a"), "a")).toBe(true);
    expect(ask(only("a"), "e")).toBe(false);
    expect(ask(only("e"), "e")).toBe(true);
    expect(ask(only("e"), "a")).toBe(false);
    // a second authorizer's slots do not collide with the first's
    const other = cedarAuthorizer({ maxCached: 2 });
    expect(other.authorize(input({ cedar_policy: only("x") }, { action: "x" })).allowed).toBe(true);
    expect(ask(only("e"), "e")).toBe(true);
    expect(ask(only("e"), "x")).toBe(false);
  });
});

describe("cedarPolicyProblem", () => {
  it("says why a policy does not parse", () => {
    expect(cedarPolicyProblem("permit(principal, action, resource);")).toBeUndefined();
    expect(cedarPolicyProblem("permit(")).toBeTypeOf("string");
    expect(cedarPolicyProblem("  ")).toBe("the policy is empty");
  });
});
