import { describe, expect, it } from "vitest";
import type { AgentDDL } from "../../../src/core/ddl/index.js";
import { validateInputs } from "../../../src/core/ddl/index.js";
import {
  ExpressionError,
  MAX_REGEX_LENGTH,
  MAX_REGEX_PROGRAM,
  compileCompound,
  compileRegex,
  matchFilter,
  matchIdentity,
  regexProblem,
  regexTest,
  type NodeInfo,
} from "../../../src/core/filter/index.js";
import { identityMatcher } from "../../../src/services/lifecycle/index.js";
import {
  REGEX_CACHE_ENTRIES,
  REGEX_CACHE_PROGRAM,
  emptyFilter,
  regexCacheStats,
  type Filter,
} from "../../../src/core/protocol/index.js";
import { evaluatePolicy, parseGroups, parsePolicy } from "../../../src/server/index.js";

// Security point 6: one broadcast with this identity filter held a backtracking
// engine for minutes per node. On a linear-time engine it is an ordinary miss.
const EVIL = "^(.*)*(.*)*(.*)*(.*)*!$";
const VICTIM = "a".repeat(40);

/** Runs f and asserts it finished well inside what backtracking would need (minutes). */
function quick<T>(f: () => T): T {
  const t0 = performance.now();
  const v = f();
  expect(performance.now() - t0).toBeLessThan(500);
  return v;
}

const node: NodeInfo = {
  identity: VICTIM,
  facts: { name: VICTIM, os: "debian" },
  classes: [VICTIM, "roles::web"],
  agents: [VICTIM, "rpcutil"],
};
const f = (parts: Partial<Filter>): Filter => ({ ...emptyFilter(), ...parts });

function ddl(validation: string): AgentDDL {
  return {
    metadata: {
      name: "demo",
      description: "d",
      author: "a",
      license: "Apache-2.0",
      version: "1.0.0",
      url: "https://example.net",
      timeout: 10,
    },
    actions: [
      {
        action: "run",
        description: "d",
        input: {
          name: {
            prompt: "Name",
            description: "d",
            type: "string",
            optional: false,
            validation,
            maxlength: 0,
          },
        },
        output: {},
      },
    ],
  };
}

describe("a catastrophic-backtracking pattern is a quick miss", () => {
  it("as an identity, class, agent or fact filter (matchFilter)", () => {
    expect(quick(() => matchFilter(f({ identity: [`/${EVIL}/`] }), node))).toBe(false);
    expect(quick(() => matchFilter(f({ cf_class: [`/${EVIL}/`] }), node))).toBe(false);
    expect(quick(() => matchFilter(f({ agent: [`/${EVIL}/`] }), node))).toBe(false);
    expect(
      quick(() => matchFilter(f({ fact: [{ fact: "name", operator: "=~", value: `/${EVIL}/` }] }), node)),
    ).toBe(false);
  });

  it("in the compound expression language: a /regex/ literal, a string pattern and with()", () => {
    for (const expr of [
      `identity =~ /${EVIL}/`,
      `identity matches ${JSON.stringify(EVIL)}`,
      `facts.name =~ /${EVIL}/i`,
      `with(${JSON.stringify(`/${EVIL}/`)})`,
    ]) {
      expect(quick(() => matchFilter(f({ compound: [[{ expr }]] }), node))).toBe(false);
    }
    expect(quick(() => regexTest(VICTIM, `/${EVIL}/`))).toBe(false);
  });

  it("as an action policy caller, directly or as a group member", () => {
    const caller = `choria=${VICTIM}`;
    const subject = { caller, action: "ping", facts: {}, classes: [] };
    const direct = parsePolicy(`policy default deny\nallow\t/${EVIL}/\t*\t*\t*\n`, "evil.policy");
    expect(quick(() => evaluatePolicy(direct, subject).allowed)).toBe(false);
    const viaGroup = parsePolicy(`policy default deny\nallow\tevil\t*\t*\t*\n`, "group.policy");
    const groups = parseGroups(`evil /${EVIL}/\n`, "groups");
    expect(quick(() => evaluatePolicy(viaGroup, subject, groups).allowed)).toBe(false);
    // The same rule still works for a caller it does match.
    const ok = parsePolicy(`policy default deny\nallow\t/^choria=a+$/\t*\t*\t*\n`, "ok.policy");
    expect(evaluatePolicy(ok, subject).allowed).toBe(true);
  });

  it("as a DDL validation applied to a caller's input, and in a lifecycle watch", () => {
    const issues = quick(() => validateInputs(ddl(EVIL), "run", { name: VICTIM }));
    expect(issues[0]?.reason).toMatch(/does not match/);
    expect(quick(() => identityMatcher(`/${EVIL}/`)(VICTIM))).toBe(false);
  });

  it("stays linear on a much longer subject", () => {
    expect(quick(() => matchIdentity([`/${EVIL}/`], "a".repeat(100_000)))).toBe(false);
  });
});

describe("pattern size limits", () => {
  it("a pattern longer than MAX_REGEX_LENGTH matches nothing; one at the limit works", () => {
    const over = "a".repeat(MAX_REGEX_LENGTH + 1);
    expect(compileRegex(over)).toBeNull();
    expect(regexProblem(over)).toMatch(/longer than/);
    expect(matchIdentity([`/${over}/`], over)).toBe(false);
    expect(matchFilter(f({ identity: [`/${over}/`] }), { ...node, identity: over })).toBe(false);
    expect(() => compileCompound(`identity =~ /${over}/`)).toThrow(/longer than/);
    const policy = parsePolicy(`policy default deny\nallow\t/${over}/\t*\t*\t*\n`, "big.policy");
    expect(evaluatePolicy(policy, { caller: over, action: "x", facts: {}, classes: [] }).allowed).toBe(false);

    const atLimit = "a".repeat(MAX_REGEX_LENGTH);
    expect(matchIdentity([`/${atLimit}/`], atLimit)).toBe(true);
  });

  it("a pattern whose compiled program is over MAX_REGEX_PROGRAM matches nothing", () => {
    // 121 characters that expand to ~11,000 instructions.
    const big = "(?:.{1000})".repeat(11);
    expect(big.length).toBeLessThan(MAX_REGEX_LENGTH);
    expect(compileRegex(big)).toBeNull();
    expect(regexProblem(big)).toMatch(new RegExp(`at most ${MAX_REGEX_PROGRAM}`));
    expect(compileRegex("(?:.{1000})".repeat(9))).not.toBeNull();
  });

  it("the compiled-pattern cache is a bounded LRU", () => {
    const hot = compileRegex("^hot\\d+$");
    for (let i = 0; i < REGEX_CACHE_ENTRIES + 500; i++) {
      compileRegex(`^node${i}\\.example\\.net$`);
      if (i % 100 === 0) expect(compileRegex("^hot\\d+$")).toBe(hot); // kept while in use
      expect(regexCacheStats().entries).toBeLessThanOrEqual(REGEX_CACHE_ENTRIES);
    }
    expect(compileRegex("^hot\\d+$")).toBe(hot);
    // Heavy programs are bounded by total size as well as count.
    for (let i = 0; i < 40; i++) expect(compileRegex(`x${i}` + "(?:.{1000})".repeat(9))).not.toBeNull();
    expect(regexCacheStats().program).toBeLessThanOrEqual(REGEX_CACHE_PROGRAM);
    expect(regexCacheStats().program).toBeGreaterThan(REGEX_CACHE_PROGRAM / 2);
  });
});

describe("RE2 syntax, as go-choria's Go regexp", () => {
  it("JS-only lookaround and backreferences do not compile and match nothing", () => {
    const jsOnly = ["(?<=web)1", "web(?=1)", "web(?!2)", "(w)eb\\1"];
    for (const p of jsOnly) {
      expect(compileRegex(p)).toBeNull();
      expect(matchIdentity([`/${p}/`], "web1")).toBe(false);
      expect(matchFilter(f({ identity: [`/${p}/`] }), { ...node, identity: "web1" })).toBe(false);
      expect(regexTest("web1", p)).toBe(false);
      expect(() => compileCompound(`identity =~ /${p}/`)).toThrow(ExpressionError);
      const policy = parsePolicy(`policy default deny\nallow\t/${p}/\t*\t*\t*\n`, "js.policy");
      expect(evaluatePolicy(policy, { caller: "web1", action: "x", facts: {}, classes: [] }).allowed).toBe(
        false,
      );
      expect(validateInputs(ddl(p), "run", { name: "web1" })[0]?.reason).toMatch(/is invalid/);
    }
    // A JS RegExp would have matched the lookarounds.
    for (const p of jsOnly.slice(0, 3)) expect(new RegExp(p).test("web1")).toBe(true);
  });

  it("keeps case-insensitive flags, RE2 named groups and literal braces", () => {
    expect(matchFilter(f({ fact: [{ fact: "os", operator: "=~", value: "/DEBIAN/" }] }), node)).toBe(true);
    expect(matchFilter(f({ compound: [[{ expr: "facts.os =~ /DEB/i" }]] }), node)).toBe(true);
    expect(matchFilter(f({ compound: [[{ expr: "facts.os =~ /DEB/" }]] }), node)).toBe(false);
    expect(compileRegex("(?i)WEB")?.test("web1")).toBe(true);
    expect(compileRegex("^(?P<role>web|db)\\d+$")?.test("db12")).toBe(true);
    expect(compileRegex("^{.+}$")?.test('{"a":1}')).toBe(true);
    expect(compileRegex("x", "g")).toBeNull();
  });
});
