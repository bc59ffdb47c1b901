import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  DDLError,
  InputError,
  applyOutputDefaults,
  builtinDDL,
  builtinDDLNames,
  coerceInputs,
  findAction,
  loadDDL,
  parseDDL,
  validateInputs,
  type AgentDDL,
} from "../../../src/core/ddl/index.js";

function sample(): AgentDDL {
  return {
    metadata: {
      name: "demo",
      description: "Demo agent",
      author: "Chorus",
      license: "Apache-2.0",
      version: "1.0.0",
      url: "https://example.net",
      timeout: 10,
    },
    actions: [
      {
        action: "run",
        description: "Run things",
        display: "always",
        input: {
          name: {
            prompt: "Name",
            description: "d",
            type: "string",
            optional: false,
            validation: "^[a-z]+$",
            maxlength: 8,
          },
          cmd: {
            prompt: "Cmd",
            description: "d",
            type: "string",
            optional: true,
            validation: "shellsafe",
            maxlength: 0,
          },
          ip4: {
            prompt: "IP",
            description: "d",
            type: "string",
            optional: true,
            validation: "ipv4address",
            maxlength: 15,
          },
          ip6: {
            prompt: "IP",
            description: "d",
            type: "string",
            optional: true,
            validation: "ipv6address",
            maxlength: 64,
          },
          ip: {
            prompt: "IP",
            description: "d",
            type: "string",
            optional: true,
            validation: "ipaddress",
            maxlength: 64,
          },
          count: { prompt: "Count", description: "d", type: "integer", optional: true, default: 3 },
          ratio: { prompt: "Ratio", description: "d", type: "float", optional: true },
          num: { prompt: "Num", description: "d", type: "number", optional: true },
          force: { prompt: "Force", description: "d", type: "boolean", optional: true },
          mode: {
            prompt: "Mode",
            description: "d",
            type: "list",
            optional: true,
            list: ["fast", "slow"],
            default: "slow",
          },
          tags: { prompt: "Tags", description: "d", type: "array", optional: true },
          env: { prompt: "Env", description: "d", type: "hash", optional: true },
        },
        output: {
          status: { description: "d", display_as: "Status", type: "string", default: "unknown" },
          items: { description: "d", display_as: "Items", type: "array", default: [] },
          exit: { description: "d", display_as: "Exit", type: "integer" },
        },
        aggregate: [{ function: "summary", args: ["status"] }],
      },
    ],
  };
}

function expectDDLError(fn: () => unknown, code: string, re: RegExp): DDLError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(DDLError);
    expect((err as DDLError).code).toBe(code);
    expect((err as DDLError).message).toMatch(re);
    return err as DDLError;
  }
  throw new Error("expected DDLError");
}

describe("built-in DDLs", () => {
  const names = builtinDDLNames();
  it("are all present", () => {
    expect(names).toEqual(
      expect.arrayContaining([
        "aaa_signer",
        "choria_provision",
        "choria_registry",
        "choria_util",
        "executor",
        "rpcutil",
        "scout",
      ]),
    );
  });
  it.each(builtinDDLNames())("%s parses", (name) => {
    const ddl = builtinDDL(name);
    expect(ddl.metadata.name).toBe(name);
    expect(ddl.actions.length).toBeGreaterThan(0);
  });
  it("rpcutil has ping and is cached", () => {
    expect(findAction(builtinDDL("rpcutil"), "ping")).toBeDefined();
    expect(builtinDDL("rpcutil")).toBe(builtinDDL("rpcutil"));
  });
  it("unknown or path-like names are refused", () => {
    expectDDLError(() => builtinDDL("nope"), "ddl_unknown", /no built-in DDL for agent "nope"/);
    expectDDLError(() => builtinDDL("../../x"), "ddl_unknown", /no built-in DDL/);
  });
});

describe("parseDDL", () => {
  it("accepts a valid DDL as text or object", () => {
    expect(parseDDL(JSON.stringify(sample())).metadata.name).toBe("demo");
    expect(parseDDL(sample()).actions[0]?.action).toBe("run");
  });

  it("refuses a string input without maxlength, naming file, action and input", () => {
    const d = sample();
    delete (d.actions[0]!.input.name as { maxlength?: number }).maxlength;
    expectDDLError(
      () => parseDDL(d, "demo.json"),
      "ddl_schema",
      /^demo\.json: action "run" input "name": .*maxlength/,
    );
  });

  it("refuses a bad agent name and short timeout", () => {
    const d = sample();
    d.metadata.name = "Bad-Name";
    const err = expectDDLError(
      () => parseDDL(d, "x.json"),
      "ddl_schema",
      /^x\.json: metadata name: must match pattern/,
    );
    expect(err.path).toBe("metadata name");
    const t = sample();
    t.metadata.timeout = 1;
    expectDDLError(() => parseDDL(t, "x.json"), "ddl_schema", /metadata timeout: must be >= 2/);
  });

  it("refuses an unknown input type and a bad display", () => {
    const d = sample();
    (d.actions[0]!.input.count as { type: string }).type = "date";
    expectDDLError(() => parseDDL(d, "x.json"), "ddl_schema", /action "run" input "count"/);
    const e = sample();
    (e.actions[0] as { display: string }).display = "sometimes";
    expectDDLError(
      () => parseDDL(e, "x.json"),
      "ddl_schema",
      /action "run" display: must be one of ok, failed, always/,
    );
  });

  it("tolerates what go-choria's shipped DDLs do: upper-case input names, missing optional", () => {
    const d = sample();
    d.actions[0]!.input.OU = {
      prompt: "OU",
      description: "d",
      type: "string",
      optional: true,
      validation: ".",
      maxlength: 5,
    };
    delete (d.actions[0]!.input.count as { optional?: boolean }).optional;
    const parsed = parseDDL(d, "x.json");
    expect(parsed.actions[0]!.input.count!.optional).toBe(false);
    expect(findAction(builtinDDL("executor"), "signal")!.input.signal!.optional).toBe(false);
  });

  it("reports the reason for the input's declared kind", () => {
    const d = sample();
    delete (d.actions[0]!.input.mode as { list?: string[] }).list;
    expectDDLError(
      () => parseDDL(d, "x.json"),
      "ddl_schema",
      /^x\.json: action "run" input "mode": must have required property 'list'$/,
    );
    const t = sample();
    (t.actions[0]!.input.count as { type: string }).type = "date";
    expectDDLError(
      () => parseDDL(t, "x.json"),
      "ddl_schema",
      /input "count": type "date" is not one of string, list/,
    );
  });

  it("refuses invalid JSON, missing sections and duplicate actions", () => {
    expectDDLError(() => parseDDL("{nope", "x.json"), "ddl_malformed", /^x\.json: invalid JSON/);
    expectDDLError(
      () => parseDDL({ metadata: sample().metadata }, "x.json"),
      "ddl_schema",
      /actions is required/,
    );
    const d = sample();
    d.actions.push(structuredClone(d.actions[0]!));
    expectDDLError(() => parseDDL(d, "x.json"), "ddl_schema", /action "run" is defined twice/);
  });

  it("loadDDL reads a file and names it in errors", () => {
    const dir = mkdtempSync(join(tmpdir(), "chorus-ddl-"));
    try {
      const f = join(dir, "demo.json");
      writeFileSync(f, JSON.stringify(sample()));
      expect(loadDDL(f).metadata.name).toBe("demo");
      expectDDLError(
        () => loadDDL(join(dir, "missing.json")),
        "ddl_unreadable",
        /missing\.json: cannot read DDL: no such file/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("coerceInputs", () => {
  const ddl = sample();
  it("converts CLI strings to DDL types", () => {
    const out = coerceInputs(ddl, "run", {
      name: "abc",
      count: "42",
      ratio: "0.5",
      num: "-7",
      force: "yes",
      mode: "fast",
      tags: "a, b,c",
      env: '{"A":"1"}',
      other: "x",
    });
    expect(out).toEqual({
      name: "abc",
      count: 42,
      ratio: 0.5,
      num: -7,
      force: true,
      mode: "fast",
      tags: ["a", "b", "c"],
      env: { A: "1" },
      other: "x",
    });
  });

  it.each([
    ["1", true],
    ["0", false],
    ["false", false],
    ["No", false],
    ["TRUE", true],
  ])("boolean %s", (raw, want) => {
    expect(coerceInputs(ddl, "run", { force: raw }).force).toBe(want);
  });

  it("arrays accept JSON", () => {
    expect(coerceInputs(ddl, "run", { tags: '[1,"two"]' }).tags).toEqual([1, "two"]);
  });

  it("names every input it cannot convert", () => {
    try {
      coerceInputs(ddl, "run", { count: "4.5", force: "maybe", env: "[1]", ratio: "x", tags: "[oops" });
      throw new Error("expected InputError");
    } catch (err) {
      expect(err).toBeInstanceOf(InputError);
      const e = err as InputError;
      expect(e.issues.map((i) => i.input).sort()).toEqual(["count", "env", "force", "ratio", "tags"]);
      expect(e.message).toMatch(/input "count" "4\.5" is not an integer, expected integer/);
      expect(e.message).toMatch(/input "force" "maybe" is not a boolean/);
    }
  });

  it("unknown action", () => {
    expectDDLError(
      () => coerceInputs(ddl, "nope", {}),
      "unknown_action",
      /agent "demo" has no action "nope"/,
    );
  });
});

describe("validateInputs", () => {
  const ddl = sample();
  const check = (data: Record<string, unknown>) => validateInputs(ddl, "run", data);

  it("accepts valid data and applies defaults", () => {
    const data: Record<string, unknown> = {
      name: "abc",
      ip: "::1",
      ip4: "10.0.0.1",
      ip6: "fe80::1",
      cmd: "ls -la",
    };
    expect(check(data)).toEqual([]);
    expect(data.count).toBe(3);
    expect(data.mode).toBe("slow");
  });

  it("does not let a null default satisfy a required input (rpcutil get_fact's fact)", () => {
    const rpcutil = builtinDDL("rpcutil");
    const issues = validateInputs(rpcutil, "get_fact", {});
    expect(issues).toEqual([{ input: "fact", reason: "is required" }]);
    expect(validateInputs(rpcutil, "get_fact", { fact: "os" })).toEqual([]);
  });

  it("reports missing, unknown, and wrongly typed inputs", () => {
    const issues = check({ bogus: 1, count: "3", ratio: "x", num: true, force: "yes", tags: {}, env: [] });
    const by = Object.fromEntries(issues.map((i) => [i.input, i.reason]));
    expect(by.name).toBe("is required");
    expect(by.bogus).toBe("is not an input of this action");
    expect(by.count).toBe("must be an integer, got string");
    expect(by.ratio).toBe("must be a number, got string");
    expect(by.num).toBe("must be a number, got boolean");
    expect(by.force).toBe("must be a boolean, got string");
    expect(by.tags).toBe("must be an array, got object");
    expect(by.env).toBe("must be a hash, got array");
    expect(check({ name: "abc", count: 2.5 })[0]?.reason).toBe("must be an integer, got number");
  });

  it("checks maxlength and regex", () => {
    expect(check({ name: "abcdefghij" })).toEqual([
      { input: "name", reason: "is longer than the maximum of 8 characters" },
    ]);
    expect(check({ name: "ABC" })).toEqual([{ input: "name", reason: "does not match /^[a-z]+$/" }]);
  });

  it.each(["rm -rf /; echo", "a | b", "a && b", "$(id)", "`id`", "a > b", "a\nb"])(
    "shellsafe refuses %j",
    (cmd) => {
      expect(check({ name: "a", cmd })).toEqual([{ input: "cmd", reason: "is not shell safe" }]);
    },
  );

  it("checks IP validations", () => {
    const by = (d: Record<string, unknown>) => check({ name: "a", ...d }).map((i) => i.reason);
    expect(by({ ip4: "::1" })).toEqual(["is not an IPv4 address"]);
    expect(by({ ip4: "300.1.1.1" })).toEqual(["is not an IPv4 address"]);
    expect(by({ ip6: "10.0.0.1" })).toEqual(["is not an IPv6 address"]);
    expect(by({ ip: "host.example" })).toEqual(["is not an IP address"]);
    expect(by({ ip: "10.1.2.3" })).toEqual([]);
  });

  it("checks list membership", () => {
    expect(check({ name: "a", mode: "medium" })).toEqual([
      { input: "mode", reason: 'must be one of fast, slow, got "medium"' },
    ]);
  });

  it("works with built-in DDL regexes Choria writes (e.g. ^{.+}$)", () => {
    const prov = builtinDDL("choria_provision");
    expect(validateInputs(prov, "configure", { config: '{"a":1}' })).toEqual([]);
    expect(validateInputs(prov, "configure", { config: "nope" })[0]?.input).toBe("config");
    const registry = builtinDDL("choria_registry");
    const data: Record<string, unknown> = { name: "rpcutil" };
    expect(validateInputs(registry, "ddl", data)).toEqual([]);
    expect(data.plugin_type).toBe("agent");
    expect(data.format).toBe("json");
  });

  it("a bad DDL regex is reported, not thrown", () => {
    const d = sample();
    d.actions[0]!.input.name!.validation = "([";
    expect(validateInputs(d, "run", { name: "x" })[0]?.reason).toMatch(/regex .* is invalid/);
  });
});

describe("applyOutputDefaults", () => {
  it("fills only missing outputs, with copies", () => {
    const ddl = sample();
    const a = applyOutputDefaults(ddl, "run", { exit: 0 });
    expect(a).toEqual({ exit: 0, status: "unknown", items: [] });
    (a.items as unknown[]).push(1);
    expect(applyOutputDefaults(ddl, "run", {}).items).toEqual([]);
    expect(applyOutputDefaults(ddl, "run", { status: "ok" }).status).toBe("ok");
  });
});
