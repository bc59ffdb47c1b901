import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  DataError,
  DataRegistry,
  EXTERNAL_DATA_PROTOCOL,
  loadExternalDataPlugins,
  loadModuleDataPlugins,
  parseDataDdl,
  type DataNode,
} from "../../../src/server/data/index.js";

const node: DataNode = {
  identity: "n1.example",
  agents: [],
  classes: [],
  stats: {
    total: 0,
    validated: 0,
    unvalidated: 0,
    passed: 0,
    filtered: 0,
    replies: 0,
    ttlexpired: 0,
    events: 0,
  },
  host: { version: "1", startTime: Date.now(), connectedServer: () => "" },
};

const root = mkdtempSync(join(tmpdir(), "chorus-dataload-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const ddl = (name: string, extra: Record<string, unknown> = {}) => ({
  metadata: {
    name,
    description: `${name} plugin`,
    author: "t",
    license: "MIT",
    version: "1",
    url: "",
    timeout: 1,
  },
  query: { prompt: "Q", description: "Q", type: "string", optional: false, maxlength: 10 },
  output: { value: { description: "v", display_as: "V", type: "integer" } },
  ...extra,
});

describe("data DDL parsing", () => {
  it("accepts go-choria's shape and the older input.query", () => {
    const d = parseDataDdl(ddl("x"), "t");
    expect(d.query?.maxlength).toBe(10);
    const { query, ...noQuery } = ddl("y");
    const older = parseDataDdl({ ...noQuery, input: { query } }, "t");
    expect(older.query?.prompt).toBe("Q");
  });

  it("refuses broken DDLs with a reason", () => {
    expect(() => parseDataDdl([], "t")).toThrow(/must be a JSON object/);
    expect(() => parseDataDdl({ output: {} }, "t")).toThrow(/metadata is missing/);
    expect(() => parseDataDdl(ddl("Bad-Name"), "t")).toThrow(/not a valid data plugin name/);
    expect(() => parseDataDdl(ddl("x", { output: {} }), "t")).toThrow(/at least one output/);
    expect(() =>
      parseDataDdl(ddl("x", { output: { v: { description: "v", display_as: "V", type: "blob" } } }), "t"),
    ).toThrow(/unknown type "blob"/);
    expect(() =>
      parseDataDdl({ ...ddl("x"), metadata: { ...ddl("x").metadata, timeout: "soon" } }, "t"),
    ).toThrow(/timeout must be a number/);
    expect(() => parseDataDdl(ddl("x", { query: { type: "string", validation: "([" } }), "t")).toThrow(
      /validation is not a regular expression/,
    );
  });
});

describe("module data plugins", () => {
  const dir = join(root, "mod");
  mkdirSync(dir);
  writeFileSync(
    join(dir, "double.mjs"),
    `export const ddl = ${JSON.stringify(ddl("double"))};\nexport function run(q, node) { return { value: Number(q) * 2, who: node.identity }; }\n`,
  );
  // the DDL beside the module
  writeFileSync(join(dir, "side.json"), JSON.stringify(ddl("side")));
  writeFileSync(join(dir, "side.js"), `export default { run: () => { throw new Error("boom"); } };\n`);
  writeFileSync(join(dir, "noddl.mjs"), `export function run() { return {}; }\n`);
  writeFileSync(
    join(dir, "badddl.mjs"),
    `export const ddl = { metadata: { name: "badddl" } };\nexport function run() { return {}; }\n`,
  );
  writeFileSync(join(dir, "syntax.mjs"), `export const = ;\n`);

  it("loads good modules, names every bad one with its reason", async () => {
    const r = await loadModuleDataPlugins(dir);
    expect(r.plugins.map((p) => p.name).sort()).toEqual(["double", "side"]);
    const why = Object.fromEntries(r.problems.map((p) => [p.file.split("/").pop(), p.reason]));
    expect(Object.keys(why).sort()).toEqual(["badddl.mjs", "noddl.mjs", "syntax.mjs"]);
    expect(why["noddl.mjs"]).toMatch(/cannot read data DDL/);
    expect(why["badddl.mjs"]).toMatch(/description must be a string|output/);
    const reg = new DataRegistry();
    for (const p of r.plugins) reg.register(p);
    expect(reg.run("double", "21", node)).toEqual({ value: 42, who: "n1.example" });
    // the DDL's maxlength is enforced before the plugin runs
    expect(() => reg.run("double", "12345678901", node)).toThrow(/longer than 10/);
    // a throwing module fails its query as a DataError, not the caller
    expect(() => reg.run("side", "1", node)).toThrow(DataError);
    expect(() => reg.run("side", "1", node)).toThrow(/boom/);
  });
});

describe("external data plugins", () => {
  const dir = join(root, "ext");
  mkdirSync(dir);
  const script = (name: string, body: string) => {
    writeFileSync(join(dir, name), `#!${process.execPath}\n${body}\n`);
    chmodSync(join(dir, name), 0o755);
  };
  writeFileSync(
    join(dir, "echo.json"),
    JSON.stringify(
      ddl("echo", {
        output: {
          query: { description: "q", display_as: "Q", type: "string" },
          protocol: { description: "p", display_as: "P", type: "string" },
        },
      }),
    ),
  );
  script(
    "echo",
    `let s = ""; process.stdin.on("data", (d) => (s += d)); process.stdin.on("end", () => { const r = JSON.parse(s); console.log(JSON.stringify({ query: r.query, protocol: r.protocol, undeclared: 1 })); });`,
  );
  writeFileSync(join(dir, "fail.json"), JSON.stringify(ddl("fail")));
  script("fail", `console.error("no such thing"); process.exit(3);`);
  writeFileSync(join(dir, "slow.json"), JSON.stringify(ddl("slow")));
  script("slow", `setTimeout(() => console.log("{}"), 5000);`);
  writeFileSync(join(dir, "junk.json"), JSON.stringify(ddl("junk")));
  script("junk", `console.log("not json");`);
  writeFileSync(join(dir, "noexe.json"), JSON.stringify(ddl("noexe")));
  writeFileSync(join(dir, "broken.json"), "{ not json");
  writeFileSync(join(dir, "plain.json"), JSON.stringify(ddl("plain")));
  writeFileSync(join(dir, "plain"), "#!/bin/sh\n");

  it("loads DDL + executable pairs and refuses the rest with a reason", () => {
    const r = loadExternalDataPlugins(dir);
    expect(r.plugins.map((p) => p.name).sort()).toEqual(["echo", "fail", "junk", "slow"]);
    const why = Object.fromEntries(r.problems.map((p) => [p.file.split("/").pop(), p.reason]));
    expect(why["noexe.json"]).toMatch(/needs an executable/);
    expect(why["broken.json"]).toMatch(/not valid JSON/);
    expect(why["plain.json"]).toMatch(/not executable/);
  });

  it("speaks the stdin/stdout protocol, keeps declared outputs, reports failures and timeouts", () => {
    const reg = new DataRegistry();
    for (const p of loadExternalDataPlugins(dir).plugins) reg.register(p);
    expect(reg.run("echo", "hi there", node)).toEqual({
      query: "hi there",
      protocol: EXTERNAL_DATA_PROTOCOL,
    });
    expect(() => reg.run("fail", "x", node)).toThrow(/exit 3.*no such thing/);
    expect(() => reg.run("junk", "x", node)).toThrow(/did not print a JSON object/);
    const t0 = Date.now();
    expect(() => reg.run("slow", "x", node)).toThrow(/timed out after 1s/);
    expect(Date.now() - t0).toBeLessThan(4000);
  });
});
