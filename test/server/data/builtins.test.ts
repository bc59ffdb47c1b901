import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { DataError, DataRegistry, fstatPlugin, type DataNode } from "../../../src/server/data/index.js";

const node: DataNode = {
  identity: "n1.example",
  agents: ["rpcutil"],
  classes: ["web", "base"],
  stats: {
    total: 5,
    validated: 4,
    unvalidated: 1,
    passed: 3,
    filtered: 1,
    replies: 3,
    ttlexpired: 0,
    events: 2,
  },
  host: {
    version: "9.9.9",
    startTime: Date.now() - 90_000,
    configFile: "/etc/chorus.conf",
    connectedServer: () => "nats://x:4222",
  },
};

const dir = mkdtempSync(join(tmpdir(), "chorus-data-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("built-in data plugins", () => {
  const reg = DataRegistry.withBuiltins();

  it("lists the built-ins", () => {
    expect(reg.names()).toEqual(["choria", "fstat", "machine_state", "scout", "sysctl"]);
  });

  it("fstat gives the Ruby fstat outputs for a file", () => {
    const f = join(dir, "f.txt");
    writeFileSync(f, "hello");
    const r = reg.run("fstat", f, node);
    expect(r).toMatchObject({
      name: f,
      output: "present",
      present: 1,
      size: 5,
      type: "file",
      md5: "5d41402abc4b2a76b9719d911017c592",
    });
    // full st_mode in octal, as "%o" % stat.mode
    expect(r["mode"]).toMatch(/^100[0-7]{3}$/);
    expect(r["mtime"]).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
    expect(r["mtime_seconds"]).toBeGreaterThan(1_600_000_000);
    expect(r["mtime_age"]).toBeGreaterThanOrEqual(0);
    // every declared output is present
    expect(Object.keys(r).sort()).toEqual(Object.keys(fstatPlugin.ddl.output).sort());
  });

  it("fstat: absent files, symlinks by lstat, dangling links absent, empty query refused", () => {
    expect(reg.run("fstat", join(dir, "nope"), node)).toMatchObject({
      present: 0,
      output: "not present",
      size: 0,
      type: "unknown",
    });
    const link = join(dir, "link");
    symlinkSync(join(dir, "f.txt"), link);
    expect(reg.run("fstat", link, node)).toMatchObject({ present: 1, type: "symlink", md5: "" });
    const dangling = join(dir, "dangling");
    symlinkSync(join(dir, "missing"), dangling);
    expect(reg.run("fstat", dangling, node)["present"]).toBe(0);
    expect(reg.run("fstat", dir, node)["type"]).toBe("directory");
    expect(() => reg.run("fstat", "", node)).toThrow(DataError);
  });

  it("sysctl reads /proc/sys and rejects bad keys", () => {
    expect(() => reg.run("sysctl", "../etc", node)).toThrow(DataError);
    expect(() => reg.run("sysctl", "no.such.key", node)).toThrow(DataError);
  });

  it("choria reports go-choria's choriadata fields for the node it runs for", () => {
    const r = reg.run("choria", "", node);
    expect(r).toMatchObject({
      agents: ["rpcutil"],
      agents_count: 1,
      classes: ["web", "base"],
      classes_count: 2,
      configfile: "/etc/chorus.conf",
      connected_broker: "nats://x:4222",
      total: 5,
      validated: 4,
      unvalidated: 1,
      passed: 3,
      filtered: 1,
      replies: 3,
      ttlexpired: 0,
      events: 2,
      version: "9.9.9",
      pid: process.pid,
      machines_count: 0,
      provisioning: false,
    });
    expect(r["uptime"]).toBeGreaterThanOrEqual(89);
  });

  it("unknown plugin is an error", () => {
    expect(() => reg.run("nope", "x", node)).toThrow(/unknown data plugin/);
  });
});
