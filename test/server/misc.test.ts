import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import { RateLimitedLog, ServerError, loadClasses, loadFacts } from "../../src/server/index.js";
import type { LogFields } from "../../src/core/util/index.js";

const dir = mkdtempSync(join(tmpdir(), "chorus-server-misc-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("RateLimitedLog", () => {
  it("logs each kind once per window and reports what it held back", () => {
    vi.useFakeTimers();
    try {
      const lines: [Record<string, unknown>, string][] = [];
      const log = new RateLimitedLog(
        {
          warn: (o, m) => lines.push([o as LogFields, m ?? ""]),
          error: (o, m) => lines.push([o as LogFields, `error: ${m}`]),
        },
        10_000,
      );
      for (let i = 0; i < 5; i++) log.warn("bad_signature", { reason: "bad_signature" }, "dropped");
      log.warn("malformed", {}, "dropped");
      expect(lines).toHaveLength(2);
      vi.advanceTimersByTime(10_001);
      log.warn("bad_signature", { reason: "bad_signature" }, "dropped again");
      expect(lines[2]).toEqual([
        { reason: "bad_signature", kind: "bad_signature", suppressed: 4 },
        "dropped again",
      ]);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe("facts and classes", () => {
  it("merges JSON and YAML facts shallowly, later files winning, and reports missing files", () => {
    writeFileSync(join(dir, "a.json"), JSON.stringify({ a: 1, shared: { x: 1 } }));
    writeFileSync(join(dir, "b.yaml"), "b: two\nshared:\n  y: 2\n");
    writeFileSync(join(dir, "empty.yaml"), "");
    const r = loadFacts([
      join(dir, "a.json"),
      join(dir, "b.yaml"),
      join(dir, "empty.yaml"),
      join(dir, "gone.json"),
    ]);
    expect(r.facts).toEqual({ a: 1, b: "two", shared: { y: 2 } });
    expect(r.missing).toEqual([join(dir, "gone.json")]);
  });

  it("refuses facts that are not a map", () => {
    writeFileSync(join(dir, "list.yaml"), "- a\n- b\n");
    writeFileSync(join(dir, "bad.json"), "{ nope: [");
    expect(() => loadFacts([join(dir, "list.yaml")])).toThrow(ServerError);
    expect(() => loadFacts([join(dir, "bad.json")])).toThrow(/not valid JSON or YAML/);
  });

  it("reads classes one per line", () => {
    writeFileSync(join(dir, "classes.txt"), "base\r\n  web  \n\n");
    expect(loadClasses(join(dir, "classes.txt"))).toEqual(["base", "web"]);
    expect(loadClasses(join(dir, "none.txt"))).toEqual([]);
    expect(loadClasses(undefined)).toEqual([]);
  });
});
