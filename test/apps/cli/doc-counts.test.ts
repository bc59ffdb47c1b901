import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { emulatedFacts } from "../../../src/apps/emulator/index.js";

const doc = (name: string) =>
  readFileSync(fileURLToPath(new URL(`../../../docs/${name}`, import.meta.url)), "utf8");

// The docs show what `chorus emulate --nodes 1000` answers. Emulated facts are a pure
// function of (identity, fact), so the counts can be recomputed here: if the facts
// change, these tests say which numbers in the docs went stale.
const N = 1000;
const fleet = Array.from({ length: N }, (_, i) => emulatedFacts(i + 1));
const web = fleet.filter((f) => f.role === "web");
const count = (xs: Record<string, unknown>[], fact: string) => {
  const c: Record<string, number> = {};
  for (const f of xs) c[String(f[fact])] = (c[String(f[fact])] ?? 0) + 1;
  return c;
};

/** `{value: n}` from the "found N times" lines that follow `marker` in `text`. */
function reportAfter(text: string, marker: string): Record<string, number> {
  const at = text.indexOf(marker);
  expect(at).toBeGreaterThan(-1);
  const block = text.slice(at).split("```")[0] as string;
  return Object.fromEntries(
    [...block.matchAll(/^ {2}(\S+)\s+found (\d+) times?$/gm)].map((m) => [m[1], Number(m[2])]),
  );
}

describe("example counts in the docs", () => {
  it("docs/emulator.md matches a 1000-node emulated fleet", () => {
    const text = doc("emulator.md");
    expect(text).toContain(`$ chorus discover -C role::web | wc -l\n${web.length}\n`);
    expect(reportAfter(text, "$ chorus facts os -C role::web")).toEqual(count(web, "os"));
    const linuxWeb = web.filter((f) => f.os === "linux").length;
    expect(text).toContain(`Discovered: ${linuxWeb}\n            Responses: ${linuxWeb}\n`);
    const roles = count(fleet, "role");
    for (const [role, n] of Object.entries(roles)) expect(text).toMatch(new RegExp(`\\b${role} ${n}\\b`));
  });

  it("docs/client.md's facts example is the same fleet", () => {
    expect(reportAfter(doc("client.md"), "$ chorus facts os -C role::web")).toEqual(count(web, "os"));
  });
});
