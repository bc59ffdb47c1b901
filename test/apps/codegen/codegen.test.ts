import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { format, resolveConfig } from "prettier";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client } from "../../../src/client/index.js";
import { RpcutilClient } from "../../../src/client/generated/index.js";
import { generateClientSource } from "../../../src/apps/codegen/index.js";
import { builtinDDL, InputError } from "../../../src/core/ddl/index.js";
import { Emulator } from "../../../src/apps/emulator/index.js";
import { chorus } from "../../helpers/cli.js";
import { startSecureFleet, type SecureFleet } from "../../helpers/fleet.js";

const SRC = (f: string) => fileURLToPath(new URL(`../../../src/client/generated/${f}`, import.meta.url));

describe("typed client generator", () => {
  it.each(["rpcutil", "choria_util"])(
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
    },
  );

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
    expect(readFileSync(join(out, "rpcutil.ts"), "utf8")).toContain("export class RpcutilClient");
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
});
