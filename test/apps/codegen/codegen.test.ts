import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { pino } from "pino";
import { format, resolveConfig } from "prettier";
import ts from "typescript";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client } from "../../../src/client/index.js";
import { RpcutilClient } from "../../../src/client/generated/index.js";
import { CodegenError, generateClientSource, type GenerateOptions } from "../../../src/apps/codegen/index.js";
import { builtinDDL, findAction, InputError, type AgentDDL } from "../../../src/core/ddl/index.js";
import { Emulator } from "../../../src/apps/emulator/index.js";
import { chorus } from "../../helpers/cli.js";
import { startSecureFleet, type SecureFleet } from "../../helpers/fleet.js";

const SRC = (f: string) => fileURLToPath(new URL(`../../../src/client/generated/${f}`, import.meta.url));

/**
 * Loads a generated client as JS. Only for clients whose imports are all `import type`
 * (the "client" DDL source), so the module stands alone once the types are stripped.
 */
async function loadGenerated(ddl: AgentDDL, opts: GenerateOptions): Promise<Record<string, unknown>> {
  const js = ts.transpileModule(generateClientSource(ddl, opts), {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  }).outputText;
  expect(js).not.toMatch(/^import /m);
  const dir = mkdtempSync(join(tmpdir(), "chorus-gen-js-"));
  try {
    const file = join(dir, `${ddl.metadata.name}.mjs`);
    writeFileSync(file, js);
    return (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A Client stand-in that records what request() was given. */
function recordingClient(): { client: Client; calls: unknown[][] } {
  const calls: unknown[][] = [];
  const client = {
    request: (...args: unknown[]) => {
      calls.push(args);
      return Promise.resolve({ replies: [] });
    },
  } as unknown as Client;
  return { client, calls };
}

describe("typed client generator", () => {
  it.each(["rpcutil", "choria_util", "job"])(
    "src/client/generated/%s.ts is what the generator writes from the DDL today",
    async (agent) => {
      const src = generateClientSource(builtinDDL(agent), {
        clientModule: "../index.js",
        ddlModule: "../../core/ddl/index.js",
      });
      const opts = (await resolveConfig(SRC(`${agent}.ts`))) ?? {};
      const formatted = await format(src, { ...opts, parser: "typescript" });
      // A DDL change without regenerating fails here (and, when types change, in the typecheck).
      expect(formatted).toBe(readFileSync(SRC(`${agent}.ts`), "utf8"));
      // The DDL is read at run time, not embedded a second time.
      expect(formatted).toContain(`ddl: builtinDDL("${agent}")`);
      expect(formatted).not.toContain("https://choria.io/schemas");
      expect(formatted).not.toContain(JSON.stringify(builtinDDL(agent).actions[0]!.description));
    },
  );

  it("built-in clients read the built-in DDL on their first call", async () => {
    const { client, calls } = recordingClient();
    await new RpcutilClient(client, { limit: 2 }).getFact({ fact: "os" }, { limit: 3 });
    expect(calls).toHaveLength(1);
    const [agent, action, input, opts] = calls[0] as [
      string,
      string,
      object,
      { ddl: AgentDDL; limit: number },
    ];
    expect([agent, action, input]).toEqual(["rpcutil", "get_fact", { fact: "os" }]);
    expect(opts.limit).toBe(3);
    expect(opts.ddl).toBe(builtinDDL("rpcutil"));
  });

  it("other DDLs come from the Client: registerDDL, libdir or built in", async () => {
    const ddl = builtinDDL("rpcutil");
    const custom = { ...ddl, metadata: { ...ddl.metadata, name: "svc" } };
    const src = generateClientSource(custom);
    expect(src).not.toContain("builtinDDL");
    expect(src).not.toContain("ddl:");
    expect(src).toContain("client.registerDDL(ddl)");
    expect(() => generateClientSource(custom, { ddlSource: "builtin" })).toThrow(CodegenError);
    // a changed built-in DDL is not the built-in one any more
    const changed = { ...ddl, metadata: { ...ddl.metadata, version: "9.9.9" } };
    expect(generateClientSource(changed)).not.toContain("builtinDDL");
    expect(generateClientSource(ddl, { ddlSource: "client" })).not.toContain("builtinDDL");

    const mod = await loadGenerated(custom, {});
    const Svc = mod.SvcClient as new (c: Client, d?: object) => { ping(): Promise<unknown> };
    const { client, calls } = recordingClient();
    await new Svc(client, { limit: 1 }).ping();
    expect(calls).toEqual([["svc", "ping", {}, { limit: 1 }]]);
  });

  it("types: list inputs become unions, defaults make inputs optional", () => {
    const ddl = builtinDDL("rpcutil");
    const custom = {
      ...ddl,
      metadata: { ...ddl.metadata, name: "svc" },
      actions: [
        {
          action: "restart-now",
          description: "Restart */ a service",
          display: "always" as const,
          input: {
            service: {
              prompt: "S",
              description: "Service",
              type: "string" as const,
              optional: false,
              validation: "shellsafe",
              maxlength: 30,
            },
            mode: {
              prompt: "M",
              description: "Mode",
              type: "list" as const,
              optional: false,
              list: ["soft", "hard"],
              default: "soft",
            },
            count: { prompt: "C", description: "Count", type: "integer" as const, optional: true },
          },
          output: {
            status: { description: "Status", display_as: "Status", type: "integer" as const, default: 0 },
          },
        },
      ],
    };
    const src = generateClientSource(custom);
    expect(src).toContain('import type { Client, RequestOptions, RpcResult } from "chorus";');
    expect(src).toContain("  service: string;");
    expect(src).toContain('  mode?: "soft" | "hard";');
    expect(src).toContain("  count?: number;");
    expect(src).toContain("  status: number;");
    expect(src).toContain("restartNow(input: RestartNowInput, opts: CallOptions = {})");
    expect(src).toContain("Restart *\\/ a service");
  });

  it("chorus plugin generate client and plugin doc", () => {
    const out = mkdtempSync(join(tmpdir(), "chorus-gen-"));
    const r = chorus(["plugin", "generate", "client", "rpcutil", out]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const rpcutil = readFileSync(join(out, "rpcutil.ts"), "utf8");
    expect(rpcutil).toContain("export class RpcutilClient");
    expect(rpcutil).toContain('import { builtinDDL } from "chorus";');
    // a DDL file of the user's own: the Client finds the DDL at run time
    const ddl = builtinDDL("rpcutil");
    const file = join(out, "svc.json");
    writeFileSync(file, JSON.stringify({ ...ddl, metadata: { ...ddl.metadata, name: "svc" } }));
    const u = chorus(["plugin", "generate", "client", file, out]);
    expect(u.stderr).toBe("");
    expect(u.status).toBe(0);
    const svc = readFileSync(join(out, "svc.ts"), "utf8");
    expect(svc).toContain("export class SvcClient");
    expect(svc).not.toContain("builtinDDL");
    const d = chorus(["plugin", "doc", "rpcutil"]);
    expect(d.status).toBe(0);
    expect(d.stdout).toMatch(/^rpcutil: /);
    expect(d.stdout).toContain("  get_fact: Retrieve a single fact from the fact store");
    expect(d.stdout).toMatch(/fact \(string, required, validation .*, max length 512\)/);
    const bad = chorus(["plugin", "doc", "nosuchagent"]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/no DDL found for agent "nosuchagent"/);
    rmSync(out, { recursive: true, force: true });
  });
});

describe("the generated rpcutil client on emulated nodes", () => {
  let fleet: SecureFleet;
  let emulator: Emulator;
  let client: Client;
  const quiet = pino({ level: "silent" });

  beforeAll(async () => {
    fleet = await startSecureFleet();
    emulator = Emulator.fromConfigFile(fleet.setup.emulatorConfig, { nodes: 5, logger: quiet });
    await emulator.start();
    client = await Client.fromConfigFile(fleet.setup.clientConfig, { logger: quiet, windowMs: 150 });
  }, 60_000);
  afterAll(async () => {
    await client?.close();
    await emulator?.stop();
    await fleet?.stop();
  });

  it("typed calls with request options", async () => {
    const rpc = new RpcutilClient(client, { discoveryWindowed: true });
    const r = await rpc.getFact({ fact: "role" }, { limit: 3 });
    expect(r.replies).toHaveLength(3);
    for (const x of r.replies) expect(x.data.fact).toBe("role");
    const inv = await rpc.inventory({}, { filter: { identity: [r.replies[0]!.sender] } });
    expect(inv.replies[0]!.data.agents).toContain("rpcutil");
  });

  it("validates inputs before anything is sent", async () => {
    const rpc = new RpcutilClient(client);
    const before = emulator.decoder.stats.messages;
    await expect(rpc.getFact({ fact: 42 as unknown as string })).rejects.toBeInstanceOf(InputError);
    expect(emulator.decoder.stats.messages).toBe(before);
  });

  it("a client generated with the Client as DDL source uses the Client's DDL", async () => {
    const mod = await loadGenerated(builtinDDL("rpcutil"), { ddlSource: "client" });
    const rpc = new (mod.RpcutilClient as typeof RpcutilClient)(client, { discoveryWindowed: true });
    // nothing registered: the Client falls back to the built-in DDL
    const r = await rpc.getFact({ fact: "role" }, { limit: 2 });
    expect(r.replies).toHaveLength(2);
    const strict = structuredClone(builtinDDL("rpcutil"));
    findAction(strict, "get_fact")!.input.fact!.maxlength = 3;
    client.registerDDL(strict);
    try {
      await expect(rpc.getFact({ fact: "role" })).rejects.toBeInstanceOf(InputError);
    } finally {
      client.registerDDL(builtinDDL("rpcutil"));
    }
  });
});
