import type { Command } from "commander";
import { findAgentDDL } from "../../client/index.js";
import { loadDDL } from "../../core/ddl/index.js";
import { generateClient } from "../codegen/index.js";
import { guarded } from "./errors.js";
import { renderDDLDoc } from "./render/index.js";
import { existsSync } from "node:fs";

/** A DDL by agent name (libdir, then built in) or by path to a JSON file. */
function ddlFor(nameOrPath: string, libdir: string[]) {
  return nameOrPath.endsWith(".json") || existsSync(nameOrPath)
    ? loadDDL(nameOrPath)
    : findAgentDDL(nameOrPath, libdir);
}

/** `chorus plugin doc AGENT` and `chorus plugin generate client DDL OUTDIR`. */
export function register(program: Command): void {
  const plugin = program.command("plugin").description("Agent plugin tools: documentation and typed clients");
  plugin
    .command("doc <agent>")
    .description("Show an agent's DDL for people (agent name or path to a DDL JSON file)")
    .option("--libdir <dir>", "also look for DDLs here (repeatable)", (v: string, p: string[] = []) => [
      ...p,
      v,
    ])
    .action(
      guarded("plugin doc", (agent: string, o: { libdir?: string[] }) => {
        process.stdout.write(renderDDLDoc(ddlFor(agent, o.libdir ?? [])));
      }),
    );
  const generate = plugin.command("generate").description("Generate code from DDLs");
  generate
    .command("client <ddl> <outdir>")
    .description("Write a typed TypeScript client for an agent (agent name or DDL file)")
    .option("--import-from <module>", 'where the generated code imports Chorus from (default "chorus")')
    .action(
      guarded("plugin generate client", (ddl: string, outdir: string, o: { importFrom?: string }) => {
        const file = generateClient(
          ddlFor(ddl, []),
          outdir,
          o.importFrom !== undefined ? { importFrom: o.importFrom } : {},
        );
        process.stdout.write(`wrote ${file}\n`);
      }),
    );
}
