import { mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { registerBuiltinAgents } from "../../../src/server/index.js";
import { StatusCode } from "../../../src/core/protocol/index.js";
import {
  ActionPolicyAuthorizer,
  AgentRegistry,
  NodeRuntime,
  RequestDecoder,
  allowAll,
  authorizerFromSettings,
  parsePolicy,
} from "../../../src/server/index.js";
import { TEST_DDL, buildRequest, makeFixture, parseReply, type Fixture } from "../helpers.js";

let dir: string;
let policies: string;
let n = 0;

beforeEach(() => {
  // A fresh policy directory per test: the authorizer caches by file, not by test.
  policies = join(dir, `p${++n}`);
  mkdirSync(policies, { recursive: true });
});
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "chorus-authz-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const T = "\t";
const rule = (...f: string[]) => f.join(T);

function write(name: string, lines: string[]): void {
  writeFileSync(join(policies, name), lines.join("\n") + "\n");
}

interface Ask {
  caller?: string;
  agent?: string;
  action?: string;
  facts?: Record<string, unknown>;
  classes?: string[];
}

function authz(opts: Partial<ConstructorParameters<typeof ActionPolicyAuthorizer>[0]> = {}) {
  const warnings: string[] = [];
  const errors: string[] = [];
  const a = new ActionPolicyAuthorizer({
    policyDir: policies,
    recheckMs: 0,
    logger: { warn: (_o, m) => warnings.push(m ?? ""), error: (_o, m) => errors.push(m ?? "") },
    ...opts,
  });
  const ask = (q: Ask = {}) =>
    a.decide({
      caller: q.caller ?? "choria=alice",
      agent: q.agent ?? "puppet",
      action: q.action ?? "status",
      facts: q.facts ?? { os: "linux", cpus: 4, env: "prod" },
      classes: q.classes ?? ["base", "web"],
    });
  return { a, ask, warnings, errors };
}

describe("action_policy rules", () => {
  it("matches callers exactly, with *, and by /regex/", () => {
    write("puppet.policy", [
      "policy default deny",
      rule("allow", "choria=alice choria=bob", "*", "*", "*"),
      rule("allow", "/^choria=ops-/", "status", "*", "*"),
      rule("allow", "*", "ping", "*", "*"),
    ]);
    const { ask } = authz();
    expect(ask({ caller: "choria=alice", action: "run" }).allowed).toBe(true);
    expect(ask({ caller: "choria=bob", action: "run" }).allowed).toBe(true);
    expect(ask({ caller: "choria=eve", action: "run" }).allowed).toBe(false);
    expect(ask({ caller: "choria=ops-1", action: "status" }).allowed).toBe(true);
    expect(ask({ caller: "choria=ops-1", action: "run" }).allowed).toBe(false);
    expect(ask({ caller: "choria=anyone", action: "ping" }).allowed).toBe(true);
  });

  it("expands caller groups from policies/groups", () => {
    write("groups", ["# name members...", "admins choria=alice choria=carol", "", "devs choria=dan"]);
    write("puppet.policy", ["policy default deny", rule("allow", "admins", "*", "*", "*")]);
    const { ask } = authz();
    expect(ask({ caller: "choria=carol" }).allowed).toBe(true);
    expect(ask({ caller: "choria=dan" }).allowed).toBe(false);
  });

  it("skips a group line with a name and no members instead of rejecting the file", () => {
    write("groups", ["empty", "admins choria=alice"]);
    write("puppet.policy", ["policy default deny", rule("allow", "admins", "*", "*", "*")]);
    const { ask, a, warnings } = authz();
    expect(ask({ caller: "choria=alice" }).allowed).toBe(true);
    expect(ask({ caller: "choria=bob" }).allowed).toBe(false);
    expect(warnings).toEqual([expect.stringMatching(/groups:1: group empty has no members; line skipped$/)]);
    expect(a.stats.skippedGroupLines).toBe(1);
  });

  it("an empty regex caller (//) is invalid and matches nobody", () => {
    write("puppet.policy", ["policy default deny", rule("allow", "//", "*", "*", "*")]);
    const { ask } = authz();
    expect(ask({ caller: "choria=alice" }).allowed).toBe(false);
  });

  it("lists actions; * is any action", () => {
    write("puppet.policy", ["policy default deny", rule("allow", "*", "status last_run", "*", "*")]);
    const { ask } = authz();
    expect(ask({ action: "status" }).allowed).toBe(true);
    expect(ask({ action: "last_run" }).allowed).toBe(true);
    expect(ask({ action: "disable" }).allowed).toBe(false);
  });

  it("requires every fact condition, with the filter operators and regexes", () => {
    write("puppet.policy", [
      "policy default deny",
      rule("allow", "*", "*", "os=linux cpus>=4", "*"),
      rule("allow", "*", "*", "env=/^stag/", "*"),
    ]);
    const { ask } = authz();
    expect(ask({ facts: { os: "linux", cpus: 8 } }).allowed).toBe(true);
    expect(ask({ facts: { os: "linux", cpus: 2 } }).allowed).toBe(false);
    expect(ask({ facts: { os: "windows", cpus: 8 } }).allowed).toBe(false);
    expect(ask({ facts: { env: "staging" } }).allowed).toBe(true);
    expect(ask({ facts: {} }).allowed).toBe(false);
  });

  it("requires every class; a 4-field allow rule has no classes field and is skipped", () => {
    write("puppet.policy", [
      "policy default deny",
      rule("allow", "choria=alice", "*", "*", "web base"),
      rule("allow", "choria=bob", "*", "*"),
      rule("allow", "choria=bob", "status", "*", "*"),
    ]);
    const { ask, warnings } = authz();
    expect(ask({ caller: "choria=alice", classes: ["base", "web", "x"] }).allowed).toBe(true);
    expect(ask({ caller: "choria=alice", classes: ["base"] }).allowed).toBe(false);
    // go-choria reads the missing field as "" and cannot evaluate it: the line never allows
    expect(ask({ caller: "choria=bob", action: "run", classes: [] }).allowed).toBe(false);
    expect(ask({ caller: "choria=bob", action: "status" }).reason).toMatch(/puppet\.policy:4$/);
    expect(warnings.join("\n")).toMatch(/puppet\.policy:3: empty classes field.*line skipped/);
  });

  it("first match wins, deny rules included", () => {
    write("puppet.policy", [
      "policy default allow",
      rule("deny", "choria=eve", "*", "*", "*"),
      rule("allow", "*", "*", "*", "*"),
    ]);
    const { ask } = authz();
    const d = ask({ caller: "choria=eve" });
    expect(d.allowed).toBe(false);
    expect(d.reason).toMatch(/puppet\.policy:2$/);
    expect(ask({ caller: "choria=alice" }).allowed).toBe(true);
  });

  it("falls back to policy default allow or deny, and deny when the file says nothing", () => {
    write("puppet.policy", ["policy default allow", rule("deny", "choria=eve", "*", "*", "*")]);
    write("rpcutil.policy", ["policy default deny"]);
    write("other.policy", ["# only a comment"]);
    const { ask } = authz();
    expect(ask({ agent: "puppet" }).allowed).toBe(true);
    expect(ask({ agent: "rpcutil" }).allowed).toBe(false);
    expect(ask({ agent: "other" })).toMatchObject({
      allowed: false,
      reason: expect.stringMatching(/has no policy default, using deny/),
    });
    // as go-choria, a file without a default line falls back to allow_unconfigured
    const unconfigured = authz({ allowUnconfigured: true });
    expect(unconfigured.ask({ agent: "other" }).allowed).toBe(true);
    expect(unconfigured.ask({ agent: "rpcutil" }).allowed).toBe(false);
  });

  it("unconfigured agents: denied unless allow_unconfigured; default.policy only with enable_default", () => {
    write("default.policy", ["policy default deny", rule("allow", "choria=alice", "*", "*", "*")]);
    expect(authz().ask({ agent: "nofile" }).allowed).toBe(false);
    expect(authz({ allowUnconfigured: true }).ask({ agent: "nofile" }).allowed).toBe(true);
    const withDefault = authz({ enableDefault: true, allowUnconfigured: true });
    expect(withDefault.ask({ agent: "nofile", caller: "choria=alice" }).allowed).toBe(true);
    // default.policy applies, so allow_unconfigured no longer does
    expect(withDefault.ask({ agent: "nofile", caller: "choria=eve" }).allowed).toBe(false);
  });

  it("only an unreadable file denies everything for that agent", () => {
    // a directory where the file should be: stat works, reading fails
    mkdirSync(join(policies, "puppet.policy"));
    write("other.policy", ["policy default allow", rule("allow", "*", "*", "os=", "*")]);
    const { ask, errors, warnings, a } = authz();
    const d = ask();
    expect(d.allowed).toBe(false);
    expect(d.reason).toMatch(/unreadable policy, denying all: .*puppet\.policy: cannot read/);
    expect(errors.join("\n")).toMatch(/unreadable policy file.*puppet\.policy/);
    // a bad line is not a broken file: the line is skipped and the default applies
    expect(ask({ agent: "other" })).toMatchObject({
      allowed: true,
      reason: expect.stringMatching(/default is allow/),
    });
    expect(warnings.join("\n")).toMatch(/other\.policy:2: facts field: .*fact filter.*line skipped/);
    // the authorize() path logs the denial with caller, agent and action
    const node = { facts: {}, classes: [], classesProblem: () => undefined } as unknown as NodeRuntime;
    const decision = a.authorize({
      agent: "puppet",
      action: "status",
      caller: "choria=alice",
      callerClaims: {} as never,
      collective: "mcollective",
      data: {},
      node,
    });
    expect(decision.allowed).toBe(false);
    expect(decision.reason).toMatch(/unreadable policy/);
    expect(warnings.at(-1)).toMatch(/denying choria=alice access to puppet#status: unreadable policy/);
  });

  it("a policy or groups file that cannot even be looked at (ELOOP) is unreadable, not missing", () => {
    symlinkSync("puppet.policy", join(policies, "puppet.policy"));
    const { ask } = authz({ allowUnconfigured: true });
    expect(ask()).toMatchObject({ allowed: false, reason: expect.stringMatching(/unreadable policy/) });
    rmSync(join(policies, "puppet.policy"));
    write("puppet.policy", ["policy default allow"]);
    symlinkSync("groups", join(policies, "groups"));
    expect(authz({ allowUnconfigured: true }).ask()).toMatchObject({
      allowed: false,
      reason: expect.stringMatching(/unreadable groups file/),
    });
  });

  it("an unreadable groups file denies everything; a missing one means no groups", () => {
    write("puppet.policy", ["policy default allow"]);
    expect(authz().ask().allowed).toBe(true);
    mkdirSync(join(policies, "groups"));
    expect(authz().ask()).toMatchObject({
      allowed: false,
      reason: expect.stringMatching(/unreadable groups file/),
    });
  });

  it("parsePolicy never throws for a bad line: it reports each with its line and outcome", () => {
    const p = parsePolicy(
      ["policy default maybe", rule("allow", "*", "*"), "permit\t*\t*\t*\t*", "allow * * * *"].join("\n"),
      "x.policy",
    );
    expect(p.defaultAllow).toBe(false);
    expect(p.rules).toEqual([]);
    expect(p.warnings).toEqual([
      { line: 1, outcome: "default-deny", message: expect.stringMatching(/allow or deny, not "maybe"/) },
      { line: 2, outcome: "skipped", message: expect.stringMatching(/5 TAB separated fields.*found 3/) },
      {
        line: 3,
        outcome: "skipped",
        message: expect.stringMatching(/expected "policy default allow\|deny"/),
      },
      { line: 4, outcome: "skipped", message: expect.stringMatching(/separated by TAB characters/) },
    ]);
  });

  it("picks up an edited policy file", () => {
    write("puppet.policy", ["policy default deny"]);
    const { ask } = authz();
    expect(ask().allowed).toBe(false);
    write("puppet.policy", ["policy default allow", "# longer now"]);
    const later = new Date(Date.now() + 5000);
    utimesSync(join(policies, "puppet.policy"), later, later);
    expect(ask().allowed).toBe(true);
  });

  it("authorizerFromSettings: on by default, off with rpcauthorization=false, other providers refused", () => {
    const s = {
      configDir: dir,
      rpcAuthorization: true,
      rpcAuthProvider: "action_policy",
      actionPolicyAllowUnconfigured: false,
      actionPolicyEnableDefault: false,
    };
    expect(authorizerFromSettings(s)).toBeInstanceOf(ActionPolicyAuthorizer);
    expect(authorizerFromSettings({ ...s, rpcAuthorization: false })).toBe(allowAll);
    expect(() => authorizerFromSettings({ ...s, rpcAuthProvider: "rego_policy" })).toThrow(/not supported/);
    // plugin.actionpolicy.default_name picks the fallback file's name
    mkdirSync(join(policies, "policies"));
    writeFileSync(join(policies, "policies", "fallback.policy"), "policy default allow\n");
    const named = authorizerFromSettings(
      { ...s, configDir: policies, actionPolicyEnableDefault: true },
      undefined,
      "fallback",
    ) as ActionPolicyAuthorizer;
    const q = { agent: "nofile", action: "x", caller: "choria=a", facts: {}, classes: [] };
    expect(named.decide(q).allowed).toBe(true);
  });
});

describe("action_policy in the request pipeline", () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = makeFixture();
  });
  afterAll(() => fx.cleanup());

  it("answers a denied request with status 1 and never runs the handler; discovery is not authorized", async () => {
    write("testagent.policy", [
      "policy default deny",
      rule("allow", "choria=tester", "echo", "os=linux", "web"),
    ]);
    const sec = fx.serverSecurity("authz.example");
    const registry = new AgentRegistry();
    registerBuiltinAgents(registry);
    let ran = 0;
    registry.register(TEST_DDL, {
      echo: (req) => {
        ran++;
        return { message: req.data.message };
      },
    });
    const node = new NodeRuntime({
      identity: "authz.example",
      collectives: ["mcollective"],
      registry,
      credential: { token: sec.token, sign: (d) => sec.sign(d) },
      facts: { os: "linux" },
      classes: ["web"],
      authorizer: new ActionPolicyAuthorizer({ policyDir: policies }),
    });
    const decoder = new RequestDecoder({ security: sec });
    const call = async (
      caller: typeof fx.client,
      agent: string,
      body: Parameters<typeof buildRequest>[0]["body"],
    ) => {
      const r = await node.handle(decoder.decode(buildRequest({ caller, agent, body }).bytes));
      return r && parseReply(r.data);
    };
    const ok = await call(fx.client, "testagent", { action: "echo", data: { message: "hi" } });
    expect(ok?.body).toMatchObject({ statuscode: StatusCode.OK, data: { message: "hi" } });
    const eve = fx.caller({ callerid: "choria=eve" });
    const denied = await call(eve, "testagent", { action: "echo", data: { message: "hi" } });
    expect(denied?.body).toMatchObject({
      statuscode: StatusCode.Aborted,
      statusmsg: "You are not authorized to call this agent or action",
    });
    expect(ran).toBe(1);
    // rpcutil has no policy file and allow_unconfigured is off
    expect((await call(fx.client, "rpcutil", { action: "ping" }))?.body?.statuscode).toBe(StatusCode.Aborted);
    // discovery is never put through authorization
    expect((await call(eve, "discovery", Buffer.from("ping").toString("base64")))?.message.toString()).toBe(
      "pong",
    );
  });
});
