import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { type Playbook, PlaybookError, loadPlaybook } from "../../../src/services/playbooks/index.js";

const FIXTURES = fileURLToPath(new URL("./fixtures/", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "chorus-load-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const f = join(dir, name);
  writeFileSync(f, text);
  return f;
}

/** The IR without where it came from. */
function withoutSource(pb: Playbook): unknown {
  return JSON.parse(JSON.stringify(pb, (k, v: unknown) => (k === "source" ? undefined : v))) as unknown;
}

async function loadError(file: string): Promise<string> {
  try {
    await loadPlaybook(file);
  } catch (e) {
    expect(e).toBeInstanceOf(PlaybookError);
    expect((e as PlaybookError).code).toBe("bad_playbook");
    return (e as Error).message;
  }
  throw new Error("expected bad_playbook");
}

// The .ts books import "chorus"; loadPlaybook points that at this package's entry: under
// vitest (running from src/) that is src/index.ts, so the test needs no build.
describe("loadPlaybook", () => {
  it("the same playbook in YAML and TS compiles to the same IR", async () => {
    const yaml = await loadPlaybook(join(FIXTURES, "deploy.yaml"));
    const ts = await loadPlaybook(join(FIXTURES, "deploy.ts"));
    expect(withoutSource(ts)).toEqual(withoutSource(yaml));
    // and it is the whole book, not two empty ones
    expect(yaml.tasks.map((t) => t.type)).toEqual(["rpc", "rpc", "job"]);
    expect(Object.keys(yaml.inputs)).toEqual(["release", "batch", "cluster", "last_good"]);
    expect(yaml.nodes.web?.type).toBe("discovery");
    expect(yaml.on_success.map((t) => t.type)).toEqual(["data", "webhook"]);
    // each knows where it came from: YAML with lines, TS with paths
    expect(yaml.source).toBe(join(FIXTURES, "deploy.yaml"));
    expect(ts.source).toBe(join(FIXTURES, "deploy.ts"));
    expect(yaml.tasks[1]?.source).toEqual({
      file: join(FIXTURES, "deploy.yaml"),
      line: 77,
      path: "tasks[1]",
    });
    expect(ts.tasks[1]?.source).toEqual({ file: join(FIXTURES, "deploy.ts"), path: "tasks[1]" });
  }, 30_000);

  it("a .ts book's validation error names the file and key", async () => {
    const f = write(
      "bad.ts",
      `import { definePlaybook, rpc } from "chorus";
export default definePlaybook({
  metadata: { name: "x", version: "1.0.0" },
  nodes: { web: { type: "list", nodes: ["a"] } },
  tasks: [rpc({ nodes: "web", action: "a.b", batch_size: 0 })],
});
`,
    );
    expect(await loadError(f)).toBe(`${f}: tasks[0].batch_size: must be a positive integer`);
  }, 30_000);

  it("a .ts syntax error names the file, line and column", async () => {
    const f = write(
      "syntax.ts",
      `import { definePlaybook } from "chorus";\nexport default definePlaybook({\n  metadata: {,\n});\n`,
    );
    expect(await loadError(f)).toBe(`${f}:3:14: Expected identifier but found ","`);
  });

  it("a plain definition as the default export, a .mjs book and a bundled helper all work", async () => {
    write(
      "helper.ts",
      `export const ping = { type: "rpc", nodes: "web", action: "rpcutil.ping" } as const;\n`,
    );
    const f = write(
      "plain.ts",
      `import { ping } from "./helper.js";
export default { metadata: { name: "plain", version: "0.1.0" }, nodes: { web: { type: "list", nodes: ["a"] } }, tasks: [ping] };
`,
    );
    const pb = await loadPlaybook(f);
    expect(pb.source).toBe(f);
    expect(pb.tasks[0]).toMatchObject({ type: "rpc", action: "rpcutil.ping" });

    const m = write(
      "book.mjs",
      `import { definePlaybook, shell } from "chorus";\nexport default definePlaybook({ metadata: { name: "m", version: "1.0.0" }, tasks: [shell({ command: "true" })] });\n`,
    );
    expect((await loadPlaybook(m)).metadata.name).toBe("m");
  }, 30_000);

  it("no default export, a throwing module, an unknown type and a missing file name the file", async () => {
    const none = write("none.ts", `export const x = 1;\n`);
    expect(await loadError(none)).toBe(
      `${none}: has no default export (write \`export default definePlaybook({ … })\`)`,
    );
    const boom = write("boom.ts", `throw new Error("kaboom");\n`);
    expect(await loadError(boom)).toBe(`${boom}: kaboom`);
    expect(await loadError(join(dir, "book.json"))).toMatch(/book\.json: unknown playbook type \.json/);
    expect(await loadError(join(dir, "missing.ts"))).toBe(`${join(dir, "missing.ts")}: no such file`);
    expect(await loadError(join(dir, "missing.yaml"))).toMatch(/missing\.yaml: cannot read: ENOENT/);
  });
});
