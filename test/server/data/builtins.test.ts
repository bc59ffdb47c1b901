import { describe, expect, it } from "vitest";
import {
  DataError,
  DataRegistry,
  choriaPlugin,
  fstatPlugin,
  sysctlPlugin,
} from "../../../src/server/data/index.js";

describe("data plugins", () => {
  const reg = new DataRegistry();
  reg.register(fstatPlugin);
  reg.register(sysctlPlugin);
  reg.register(
    choriaPlugin({
      configFile: () => "/etc/chorus.conf",
      connectedServer: () => "nats://x:4222",
      agents: () => ["rpcutil"],
      classes: () => ["web"],
    }),
  );

  it("lists plugins", () => {
    expect(reg.names()).toEqual(["choria", "fstat", "sysctl"]);
  });

  it("fstat reports present files and absent ones", () => {
    const r = reg.run("fstat", "/etc/hosts");
    expect(r["present"]).toBe(true);
    expect(r["type"]).toBe("file");
    expect(reg.run("fstat", "/nonexistent/x")["present"]).toBe(false);
    expect(() => reg.run("fstat", "")).toThrow(DataError);
  });

  it("sysctl reads /proc/sys and rejects bad keys", () => {
    expect(() => reg.run("sysctl", "../etc")).toThrow(DataError);
    expect(() => reg.run("sysctl", "no.such.key")).toThrow(DataError);
  });

  it("choria reports runtime facts", () => {
    expect(reg.run("choria", "")["agents"]).toEqual(["rpcutil"]);
  });

  it("unknown plugin is an error", () => {
    expect(() => reg.run("nope", "x")).toThrow(/unknown data plugin/);
  });
});
