import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { chorus } from "../../helpers/cli.js";

describe("chorus usage errors, version and aliases", () => {
  it("prints commander's usage errors as one `chorus <cmd>: <reason>` line", () => {
    const r = chorus(["discover", "--bogus"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe("chorus discover: unknown option '--bogus'\n");
    const m = chorus(["kv", "rm"]);
    expect(m.status).toBe(1);
    expect(m.stderr).toMatch(/^chorus kv del: missing required argument 'bucket'\n$/);
    expect(chorus(["nope"]).stderr).toBe("chorus: unknown command 'nope'\n");
  });

  it("prints the package version", () => {
    const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as {
      version: string;
    };
    const r = chorus(["--version"]);
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe(pkg.version);
  });

  it("knows find as discover and kv rm as kv del", () => {
    expect(chorus(["find", "--help"]).stdout).toContain("List the nodes matching a filter");
    expect(chorus(["kv", "rm", "--help"]).stdout).toContain("Delete a key");
  });
});
