import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, normalize, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

// docs/design/modules.md: imports point only downwards in this list, and only
// through a folder's index.ts (protocol/errors.ts is the shared error base).
const ORDER = [
  "protocol",
  "security",
  "config",
  "connector",
  "streams",
  "lifecycle",
  "registration",
  "submission",
  "ddl",
  "filter",
  "server",
  "agents",
  "client",
  "codegen",
  "clients",
  "broker",
  "setup",
  "emulator",
  "demo",
  "cli",
];
const SRC = fileURLToPath(new URL("../../src", import.meta.url));

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : p.endsWith(".ts") ? [p] : [];
  });
}

describe("module layering", () => {
  it("every src folder is in the documented order and imports only downwards through index.ts", () => {
    const problems: string[] = [];
    for (const file of files(SRC)) {
      const rel = relative(SRC, file).split(sep);
      if (rel.length < 2) continue; // src/index.ts, the library entry, may import anything
      const mod = rel[0] as string;
      if (!ORDER.includes(mod)) problems.push(`${mod}: folder not in docs/design/modules.md`);
      const text = readFileSync(file, "utf8");
      for (const m of text.matchAll(/(?:from|import\(?)\s*"(\.\.?\/[^"]+)"/g)) {
        const target = relative(SRC, normalize(join(dirname(file), m[1] as string))).split(sep);
        const tmod = target[0] as string;
        if (target.length < 2 || tmod === mod) continue;
        const where = `${relative(SRC, file)} imports ${m[1]}`;
        if (ORDER.indexOf(tmod) > ORDER.indexOf(mod)) problems.push(`${where}: points upwards`);
        const entry = target.slice(1).join("/");
        if (entry !== "index.js" && !(tmod === "protocol" && entry === "errors.js")) {
          problems.push(`${where}: bypasses ${tmod}/index.ts`);
        }
      }
    }
    expect(problems).toEqual([]);
  });
});
