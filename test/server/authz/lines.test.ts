import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { AgentRegistry, NodeRuntime } from "../../../src/server/index.js";
import {
  ActionPolicyAuthorizer,
  PolicyError,
  compileRule,
  evaluatePolicy,
  isCompoundStatement,
  parseGroups,
  parsePolicy,
  readGroups,
  type PolicySubject,
} from "../../../src/server/authz/index.js";

// Lines Chorus cannot use, compound statements and empty fields (issue 12).

let dir: string;
let policies: string;
let n = 0;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "chorus-authz-lines-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
beforeEach(() => {
  policies = join(dir, `p${++n}`);
  mkdirSync(policies, { recursive: true });
});

const rule = (...f: string[]) => f.join("\t");
const write = (name: string, lines: string[]) => writeFileSync(join(policies, name), lines.join("\n") + "\n");

function authz(opts: Partial<ConstructorParameters<typeof ActionPolicyAuthorizer>[0]> = {}) {
  const warnings: string[] = [];
  const a = new ActionPolicyAuthorizer({
    policyDir: policies,
    recheckMs: 0,
    logger: { warn: (_o, m) => warnings.push(m ?? ""), error: () => {} },
    ...opts,
  });
  const ask = (q: Partial<PolicySubject> & { agent?: string } = {}) =>
    a.decide({
      caller: "choria=alice",
      agent: "puppet",
      action: "status",
      facts: { os: "linux" },
      classes: ["web"],
      ...q,
    });
  return { a, ask, warnings };
}

const subject = (q: Partial<PolicySubject> = {}): PolicySubject => ({
  caller: "choria=alice",
  action: "status",
  facts: { os: "linux" },
  classes: ["web"],
  ...q,
});

describe("a policy file with lines Chorus cannot use", () => {
  it("compound allow, unparsable allow, unparsable deny, a normal line and the default", () => {
    write("puppet.policy", [
      "policy default deny",
      rule("allow", "choria=alice", "*", "(os=linux or os=windows) and !db", "*"),
      rule("allow", "choria=bob", "*", "os=linux and (", "*"),
      rule("deny", "choria=carol", "*", "os=linux and and", "*"),
      rule("allow", "choria=bob choria=carol", "status", "os=linux", "web"),
    ]);
    const { a, ask, warnings } = authz();
    const linux = { facts: { os: "linux" }, classes: ["web"] };

    // line 2, evaluated with the compound language
    expect(ask({ caller: "choria=alice", action: "run", ...linux }).reason).toMatch(/allowed by .*:2$/);
    expect(ask({ caller: "choria=alice", facts: { os: "windows" }, classes: [] }).allowed).toBe(true);
    expect(ask({ caller: "choria=alice", facts: { os: "linux" }, classes: ["db"] }).allowed).toBe(false);
    expect(ask({ caller: "choria=alice", facts: { os: "solaris" }, classes: [] }).allowed).toBe(false);

    // line 3 is skipped: bob gets only what line 5 gives him
    expect(ask({ caller: "choria=bob", ...linux }).reason).toMatch(/allowed by .*:5$/);
    expect(ask({ caller: "choria=bob", action: "run", ...linux })).toMatchObject({
      allowed: false,
      reason: expect.stringMatching(/default is deny/),
    });

    // line 4 cannot be read, so its facts match everything: carol is denied even
    // where line 5 would allow her, and on nodes its facts would not have matched
    expect(ask({ caller: "choria=carol", ...linux }).reason).toMatch(/denied by .*:4$/);
    expect(ask({ caller: "choria=carol", facts: { os: "windows" } }).reason).toMatch(/denied by .*:4$/);

    // the default
    expect(ask({ caller: "choria=dave", ...linux }).reason).toMatch(/no rule matched.*default is deny/);

    expect(warnings.filter((w) => !w.startsWith("denying"))).toEqual([
      expect.stringMatching(/puppet\.policy:3: facts field: .*line skipped$/),
      expect.stringMatching(/puppet\.policy:4: facts field: .*deny line match every request$/),
    ]);
    // counted once per read of the file, not per request
    expect(a.stats).toEqual({ skippedLines: 1, widenedDenyLines: 1, skippedGroupLines: 0 });
  });

  it("counts again when an edited file is read again", () => {
    write("puppet.policy", ["policy default deny", rule("allow", "*", "*", "os=", "*")]);
    const { a, ask } = authz();
    ask();
    ask();
    expect(a.stats.skippedLines).toBe(1);
    write("puppet.policy", ["policy default deny", rule("allow", "*", "*", "os=", "*"), "allow oops"]);
    const later = new Date(Date.now() + 5000);
    utimesSync(join(policies, "puppet.policy"), later, later);
    ask();
    expect(a.stats.skippedLines).toBe(3);
  });

  it("a deny line that does not parse denies every request, whatever its spelling", () => {
    for (const bad of ["deny choria=eve * * *", "Deny\tchoria=eve\t*\t*\t*", "deny\tchoria=eve\t*", "DENY"]) {
      const p = parsePolicy(
        ["policy default allow", bad, rule("allow", "*", "*", "*", "*")].join("\n"),
        "d.policy",
      );
      expect(evaluatePolicy(p, subject({ caller: "choria=alice" }))).toEqual({
        allowed: false,
        reason: "denied by d.policy:2",
      });
      expect(p.warnings).toEqual([
        { line: 2, outcome: "deny-widened", message: expect.stringMatching(/denies every request$/) },
      ]);
    }
  });

  it("an allow line that does not parse is skipped, and the rest of the file still applies", () => {
    for (const bad of [
      "allow choria=alice * * *",
      "allow\tchoria=alice\t*",
      "permit\tchoria=alice\t*\t*\t*",
    ]) {
      const p = parsePolicy(
        ["policy default deny", bad, rule("allow", "choria=bob", "*", "*", "*")].join("\n"),
        "a.policy",
      );
      expect(evaluatePolicy(p, subject({ caller: "choria=alice" })).allowed).toBe(false);
      expect(evaluatePolicy(p, subject({ caller: "choria=bob" })).allowed).toBe(true);
      expect(p.warnings).toEqual([
        { line: 2, outcome: "skipped", message: expect.stringMatching(/line skipped$/) },
      ]);
    }
  });

  it("a 4-field line has an empty classes field: an allow is skipped, a deny matches any classes", () => {
    const p = parsePolicy(
      [
        "policy default allow",
        rule("deny", "choria=eve", "run", "os=linux"),
        rule("allow", "*", "*", "*"),
      ].join("\n"),
      "4.policy",
    );
    expect(p.warnings.map((w) => [w.line, w.outcome])).toEqual([
      [2, "deny-widened"],
      [3, "skipped"],
    ]);
    expect(evaluatePolicy(p, subject({ caller: "choria=eve", action: "run", classes: [] })).reason).toBe(
      "denied by 4.policy:2",
    );
    expect(evaluatePolicy(p, subject({ caller: "choria=eve", action: "status" })).allowed).toBe(true);
    expect(
      evaluatePolicy(p, subject({ caller: "choria=eve", action: "run", facts: { os: "bsd" } })).allowed,
    ).toBe(true);
  });

  it("a line with more than 5 fields is not guessed at", () => {
    const p = parsePolicy(
      [
        "policy default allow",
        rule("deny", "choria=eve", "*", "*", "*", "web"),
        rule("allow", "*", "*", "*", "*", "x"),
      ].join("\n"),
      "f.policy",
    );
    expect(p.warnings.map((w) => w.outcome)).toEqual(["deny-widened", "skipped"]);
    expect(evaluatePolicy(p, subject({ caller: "choria=alice" })).reason).toBe("denied by f.policy:2");
  });

  it("policy default: anything but allow is deny; the last one wins", () => {
    const d = (t: string) => evaluatePolicy(parsePolicy(t, "x.policy"), subject()).allowed;
    expect(d("policy default allow\n")).toBe(true);
    expect(d("policy default allowed\n")).toBe(false);
    expect(d("policy default allow\npolicy default deny\n")).toBe(false);
    expect(d("policy default deny\npolicy default allow\n")).toBe(true);
  });
});

describe("compound statements in the facts and classes fields", () => {
  const node = { identity: "web1.example", agents: ["puppet", "rpcutil"] };
  const decide = (facts: string, classes: string, q: Partial<PolicySubject> = {}) => {
    const p = parsePolicy(`policy default deny\n${rule("allow", "*", "*", facts, classes)}\n`, "c.policy");
    expect(p.warnings).toEqual([]);
    return evaluatePolicy(p, subject({ node, ...q })).allowed;
  };

  it("knows a compound statement as go-choria does", () => {
    for (const c of ["a=b and c=d", "web or db", "!web", "not web", "(web)", 'with("web")'])
      expect(isCompoundStatement(c)).toBe(true);
    for (const c of ["os=linux", "web db", "os!=linux", "android", "orange", "()"])
      expect(isCompoundStatement(c)).toBe(false);
  });

  it("MCollective's statement form: facts and classes, and, or, not, !, parentheses", () => {
    const f = "(os=linux or os=windows) and !db";
    expect(decide(f, "*", { facts: { os: "linux" }, classes: ["web"] })).toBe(true);
    expect(decide(f, "*", { facts: { os: "windows" }, classes: [] })).toBe(true);
    expect(decide(f, "*", { facts: { os: "linux" }, classes: ["db"] })).toBe(false);
    expect(decide(f, "*", { facts: { os: "bsd" }, classes: [] })).toBe(false);
    expect(decide("cpus>=4 and not /^role::db/", "*", { facts: { cpus: 8 }, classes: ["role::web"] })).toBe(
      true,
    );
    expect(decide("cpus>=4 and not /^role::db/", "*", { facts: { cpus: 8 }, classes: ["role::db1"] })).toBe(
      false,
    );
    expect(decide("env=/^(prod|stag)/ or os=bsd", "*", { facts: { env: "staging" } })).toBe(true);
    expect(decide("env=/^(prod|stag)/ or os=bsd", "*", { facts: { env: "dev" } })).toBe(false);
    // in the classes field, with a plain facts field beside it
    expect(decide("os=linux", "web or db", { classes: ["db"] })).toBe(true);
    expect(decide("os=linux", "web or db", { classes: ["app"] })).toBe(false);
    expect(decide("os=bsd", "web or db", { classes: ["db"] })).toBe(false);
  });

  it("the -S language, including identity and agents", () => {
    expect(decide('with("os=linux") and not with("db")', "*", { classes: ["web"] })).toBe(true);
    expect(decide('with("os=linux") and not with("db")', "*", { classes: ["db"] })).toBe(false);
    expect(decide('(identity =~ /^web/) and include(agents, "puppet")', "*")).toBe(true);
    expect(decide('(identity =~ /^db/) and include(agents, "puppet")', "*")).toBe(false);
    expect(decide('facts.os == "linux" and facts.cpus >= 4', "*", { facts: { os: "linux", cpus: 4 } })).toBe(
      true,
    );
    expect(decide('facts.os == "linux" and facts.cpus >= 4', "*", { facts: { os: "linux", cpus: 2 } })).toBe(
      false,
    );
  });

  it("one that cannot be evaluated skips an allow line and widens a deny line", () => {
    for (const bad of [
      'fstat("/etc/hosts").size>0 and os=linux',
      "os=linux and (",
      "os= or web",
      "(nosuch(1))",
    ]) {
      const allow = parsePolicy(`policy default deny\n${rule("allow", "*", "*", bad, "*")}\n`, "c.policy");
      expect(allow.rules).toEqual([]);
      expect(allow.warnings[0]).toMatchObject({ line: 2, outcome: "skipped" });
      const deny = parsePolicy(
        `policy default allow\n${rule("deny", "choria=eve", "run", bad, "*")}\n`,
        "c.policy",
      );
      expect(deny.warnings[0]).toMatchObject({ line: 2, outcome: "deny-widened" });
      // the readable parts of the deny line still apply
      expect(evaluatePolicy(deny, subject({ caller: "choria=eve", action: "run", facts: {} })).allowed).toBe(
        false,
      );
      expect(evaluatePolicy(deny, subject({ caller: "choria=eve", action: "status" })).allowed).toBe(true);
      expect(evaluatePolicy(deny, subject({ caller: "choria=alice", action: "run" })).allowed).toBe(true);
    }
  });
});

describe("empty and unreadable fields, as go-choria", () => {
  const fields = { allow: true, caller: "*", actions: "*", facts: "*", classes: "*" };
  const matches = (f: Partial<typeof fields>, q: Partial<PolicySubject> = {}) => {
    const { rule: r, problems } = compileRule({ ...fields, ...f }, 1);
    expect(problems).toEqual([]);
    return evaluatePolicy(
      { file: "x", defaultAllow: false, defaultStated: true, rules: [r], warnings: [] },
      subject(q),
    ).allowed;
  };

  it("an empty caller or actions field matches nothing", () => {
    expect(matches({})).toBe(true);
    expect(matches({ caller: "" })).toBe(false);
    expect(matches({ actions: "" })).toBe(false);
  });

  it("an empty facts or classes field cannot be evaluated", () => {
    const facts = compileRule({ ...fields, facts: "" });
    expect(facts.problems).toEqual(["empty facts field"]);
    expect([...facts.unreadable]).toEqual(["facts"]);
    const classes = compileRule({ ...fields, classes: "" });
    expect(classes.problems[0]).toMatch(/^empty classes field/);
    expect([...classes.unreadable]).toEqual(["classes"]);
  });

  it("in a file, fields of spaces are empty fields", () => {
    const p = parsePolicy(
      [
        "policy default allow",
        rule("deny", " ", "*", "*", "*"), // caller nobody
        rule("deny", "*", " ", "*", "*"), // no action
        rule("allow", "*", "*", " ", "*"), // skipped
        rule("deny", "choria=eve", "*", " ", "*"), // facts match everything
      ].join("\n"),
      "e.policy",
    );
    expect(p.warnings.map((w) => [w.line, w.outcome])).toEqual([
      [4, "skipped"],
      [5, "deny-widened"],
    ]);
    expect(evaluatePolicy(p, subject()).allowed).toBe(true);
    expect(evaluatePolicy(p, subject({ caller: "choria=eve" })).reason).toBe("denied by e.policy:5");
  });

  it("a class that looks like a fact, or a broken fact regex, cannot be evaluated", () => {
    expect(compileRule({ ...fields, classes: "web os=linux" }).problems[0]).toMatch(
      /fact "os=linux" found where a class was expected/,
    );
    expect(compileRule({ ...fields, facts: "os=/(?<=x)y/" }).problems[0]).toMatch(/regular expression/);
    expect(compileRule({ ...fields, facts: "web" }).problems[0]).toMatch(/facts field: .*fact filter/);
  });

  it("an empty caller regex (//) matches nobody, in allow and deny lines", () => {
    const p = parsePolicy(
      [
        "policy default allow",
        rule("deny", "//", "*", "*", "*"),
        rule("allow", "// choria=bob", "run", "*", "*"),
      ].join("\n"),
      "r.policy",
    );
    expect(p.warnings.map((w) => w.outcome)).toEqual(["kept", "kept"]);
    expect(p.warnings[0]?.message).toMatch(
      /caller matcher \/\/ is not a \/regex\/; that matcher matches nobody/,
    );
    expect(evaluatePolicy(p, subject()).allowed).toBe(true); // the deny matched nobody
    const strict = { ...p, defaultAllow: false };
    expect(evaluatePolicy(strict, subject({ action: "run" })).allowed).toBe(false);
    expect(evaluatePolicy(strict, subject({ caller: "choria=bob", action: "run" })).allowed).toBe(true);
  });

  it("a caller regex that does not compile matches nobody in an allow line and everyone in a deny line", () => {
    const p = parsePolicy(
      [
        "policy default deny",
        rule("deny", "/(?<=x)eve/", "run", "*", "*"),
        rule("allow", "/(?<=x)al/ choria=alice", "*", "*", "*"),
      ].join("\n"),
      "r.policy",
    );
    expect(p.warnings.map((w) => w.outcome)).toEqual(["deny-widened", "kept"]);
    expect(evaluatePolicy(p, subject({ action: "run" })).reason).toBe("denied by r.policy:2");
    expect(evaluatePolicy(p, subject({ action: "status" })).reason).toBe("allowed by r.policy:3");
    expect(evaluatePolicy(p, subject({ caller: "xal", action: "status" })).allowed).toBe(false);
  });
});

describe("groups file", () => {
  it("skips a name without members and a bad group name, with a warning each", () => {
    const seen: [number, string][] = [];
    const g = parseGroups(
      "# c\nadmins choria=a choria=b\nempty\nbad/name choria=c\n\nops choria=d\n",
      "groups",
      (l, m) => seen.push([l, m]),
    );
    expect([...g.entries()]).toEqual([
      ["admins", ["choria=a", "choria=b"]],
      ["ops", ["choria=d"]],
    ]);
    expect(seen).toEqual([
      [3, "group empty has no members; line skipped"],
      [4, 'invalid group name "bad/name"; line skipped'],
    ]);
  });

  it("readGroups: missing is empty, unreadable is a PolicyError", () => {
    expect(readGroups(join(policies, "nope")).size).toBe(0);
    mkdirSync(join(policies, "groups"));
    expect(() => readGroups(join(policies, "groups"))).toThrow(PolicyError);
  });

  it("the authorizer logs and counts skipped group lines", () => {
    write("groups", ["admins", "ops choria=alice"]);
    write("puppet.policy", ["policy default deny", rule("allow", "ops admins", "*", "*", "*")]);
    const { a, ask, warnings } = authz();
    expect(ask().allowed).toBe(true);
    expect(ask({ caller: "choria=bob" }).allowed).toBe(false);
    expect(warnings).toContainEqual(
      expect.stringMatching(/groups:1: group admins has no members; line skipped$/),
    );
    expect(a.stats.skippedGroupLines).toBe(1);
  });
});

describe("a node whose classes file cannot be read (go-choria: do not know how to resolve classes)", () => {
  const unknown = { classes: [], classesUnknown: "cannot read classes file /x/classes.txt: ENOENT" };
  const decide = (lines: string[], q: Partial<PolicySubject> = {}) =>
    evaluatePolicy(parsePolicy(lines.join("\n"), "k.policy"), subject(q));

  it("a deny line with a classes field matches: unknown classes never open access", () => {
    const lines = ["policy default allow", rule("deny", "*", "run", "*", "db")];
    expect(decide(lines, { action: "run", classes: [] }).allowed).toBe(true); // known: no db class
    expect(decide(lines, { action: "run", ...unknown })).toEqual({
      allowed: false,
      reason:
        "denied by k.policy:2 (the node's classes are unknown: cannot read classes file /x/classes.txt: ENOENT)",
    });
    // the other fields of the deny line still apply
    expect(decide(lines, { action: "status", ...unknown }).allowed).toBe(true);
  });

  it("an allow line with a classes field grants nothing; later lines and the default still apply", () => {
    const lines = [
      "policy default deny",
      rule("allow", "*", "run", "*", "web"),
      rule("allow", "*", "status", "os=linux", "*"),
    ];
    expect(decide(lines, { action: "run" }).allowed).toBe(true);
    expect(decide(lines, { action: "run", ...unknown }).reason).toMatch(/default is deny/);
    expect(decide(lines, { action: "status", ...unknown }).reason).toBe("allowed by k.policy:3");
  });

  it("compound statements that read classes cannot be evaluated; ones that read only facts can", () => {
    expect(decide(["policy default deny", rule("allow", "*", "*", "*", "!db")], unknown).allowed).toBe(false);
    expect(decide(["policy default deny", rule("allow", "*", "*", "*", "!db")]).allowed).toBe(true);
    expect(
      decide(["policy default allow", rule("deny", "*", "*", "os=linux and db", "*")], unknown),
    ).toMatchObject({ allowed: false });
    const factsOnly = ["policy default deny", rule("allow", "*", "*", "os=linux and not os=bsd", "*")];
    expect(decide(factsOnly, unknown).allowed).toBe(true);
  });

  it("the authorizer asks the node why its classes are unknown", () => {
    write("puppet.policy", ["policy default allow", rule("deny", "*", "*", "*", "db")]);
    const { a } = authz();
    const node = new NodeRuntime({
      identity: "k.example",
      collectives: ["mcollective"],
      registry: new AgentRegistry(),
      credential: { token: "", sign: () => new Uint8Array() },
      classesFile: join(dir, "no-such-classes.txt"),
    });
    const ask = () =>
      a.authorize({
        agent: "puppet",
        action: "status",
        caller: "choria=alice",
        callerClaims: {} as never,
        collective: "mcollective",
        data: {},
        node,
      });
    expect(ask()).toMatchObject({
      allowed: false,
      reason: expect.stringMatching(/classes are unknown: cannot read/),
    });
    writeFileSync(join(dir, "no-such-classes.txt"), "web\n");
    expect(ask()).toMatchObject({ allowed: true });
    writeFileSync(join(dir, "no-such-classes.txt"), "db\n");
    expect(ask()).toMatchObject({
      allowed: false,
      reason: "denied by " + join(policies, "puppet.policy") + ":2",
    });
  });
});
