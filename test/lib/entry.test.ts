import { describe, expect, it } from "vitest";
import * as chorus from "../../src/index.js";

describe("library entry", () => {
  it("exports Server and Client, and Servers get the built-in agents", () => {
    expect(typeof chorus.Server).toBe("function");
    expect(typeof chorus.Client).toBe("function");
    const registry = new chorus.AgentRegistry();
    chorus.registerBuiltinAgents(registry);
    expect(registry.names()).toEqual(["choria_util", "discovery", "rpcutil"]);
  });

  it("the package.json entry points at the built library", async () => {
    const pkg = (await import("../../package.json", { with: { type: "json" } })).default as {
      exports: Record<string, { import: string }>;
    };
    expect(pkg.exports["."]?.import).toBe("./dist/index.js");
    const built = (await import("../../dist/index.js")) as Record<string, unknown>;
    expect(typeof built.Server).toBe("function");
    expect(typeof built.Client).toBe("function");
  });
});
