import { constants, existsSync, readdirSync, statSync } from "node:fs";
import { access } from "node:fs/promises";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { loadDDL, type AgentDDL } from "../core/ddl/index.js";
import { activationCheck, externalAgentHandlers, type ExternalAgentOptions } from "./external.js";
import type { AgentHandler } from "./types.js";

/** An agent found in a library directory, ready to register. */
export interface LoadedAgent {
  name: string;
  kind: "external" | "module";
  ddl: AgentDDL;
  ddlFile: string;
  /** The executable (external) or module (TypeScript/JavaScript) that implements it. */
  implementation: string;
  actions: Record<string, AgentHandler>;
}

/** A DDL or implementation that was refused, with the reason (logged by the server). */
export interface AgentLoadProblem {
  file: string;
  reason: string;
}

export interface AgentScan {
  agents: LoadedAgent[];
  problems: AgentLoadProblem[];
  /** DDLs with no implementation here (client-side DDLs, or agents for other providers). */
  skipped: string[];
}

/**
 * What an agent module exports: `actions` (a handler per DDL action), either as a
 * named export or on the default export. `defineActions` only adds types.
 */
export interface AgentModule {
  actions?: Record<string, AgentHandler>;
  default?: { actions?: Record<string, AgentHandler> };
}

/** Types an agent module's handlers: `export const actions = defineActions({ hello: ... })`. */
export function defineActions<T extends Record<string, AgentHandler>>(actions: T): T {
  return actions;
}

export interface ScanOptions extends ExternalAgentOptions {
  /** Activation check timeout (default 2 s, as go-choria). */
  activationTimeoutMs?: number;
  facts?: Record<string, unknown>;
}

const MODULE_EXTS = [".mjs", ".js"];

/** The agent directories Choria looks in: `<libdir>/mcollective/agent`. */
export function agentDirs(libdirs: readonly string[]): string[] {
  return libdirs.map((d) => join(d, "mcollective", "agent")).filter((d) => existsSync(d));
}

async function loadOne(dir: string, file: string, opts: ScanOptions, scan: AgentScan): Promise<void> {
  const ddlFile = join(dir, file);
  const base = file.slice(0, -".json".length);
  let ddl: AgentDDL;
  try {
    ddl = loadDDL(ddlFile);
  } catch (err) {
    scan.problems.push({ file: ddlFile, reason: (err as Error).message });
    return;
  }
  const name = ddl.metadata.name;
  if (name !== base) {
    scan.problems.push({ file: ddlFile, reason: `the DDL names agent "${name}" but the file is ${file}` });
    return;
  }
  if (ddl.metadata.provider === "external") {
    const exe = join(dir, name);
    try {
      if (!statSync(exe).isFile()) throw new Error("not a file");
      await access(exe, constants.X_OK);
    } catch {
      scan.problems.push({ file: exe, reason: `external agent ${name} needs an executable ${exe}` });
      return;
    }
    const act = await activationCheck(exe, name, {
      timeoutMs: opts.activationTimeoutMs ?? 2000,
      ...(opts.configFile !== undefined && { configFile: opts.configFile }),
      ...(opts.facts && { facts: opts.facts }),
    });
    if (!act.activate) {
      scan.problems.push({
        file: exe,
        reason: `external agent ${name} not activated: ${act.reason ?? "declined"}`,
      });
      return;
    }
    scan.agents.push({
      name,
      kind: "external",
      ddl,
      ddlFile,
      implementation: exe,
      actions: externalAgentHandlers(ddl, exe, opts),
    });
    return;
  }
  const modFile = MODULE_EXTS.map((e) => join(dir, name + e)).find((f) => existsSync(f));
  if (!modFile) {
    scan.skipped.push(ddlFile);
    return;
  }
  try {
    // The mtime in the URL makes a reload import an edited module afresh (ESM caches by URL).
    const url = `${pathToFileURL(modFile).href}?mtime=${statSync(modFile).mtimeMs}`;
    const mod = (await import(url)) as AgentModule;
    const actions = mod.actions ?? mod.default?.actions;
    if (!actions || typeof actions !== "object")
      throw new Error("the module exports no `actions` (a handler per DDL action)");
    for (const [k, v] of Object.entries(actions)) {
      if (typeof v !== "function") throw new Error(`actions.${k} is not a function`);
      if (!ddl.actions.some((a) => a.action === k))
        throw new Error(`handler for "${k}" but the DDL has no such action`);
    }
    scan.agents.push({ name, kind: "module", ddl, ddlFile, implementation: modFile, actions });
  } catch (err) {
    scan.problems.push({ file: modFile, reason: (err as Error).message });
  }
}

/**
 * Finds the agents in `<libdir>/mcollective/agent`: a `<name>.json` DDL with
 * `provider: external` and an executable `<name>`, or a DDL and a `<name>.mjs`/`.js`
 * module exporting its handlers. The first libdir that has an agent wins. A DDL that
 * fails its schema is refused with the reason.
 */
export async function scanAgentDirs(libdirs: readonly string[], opts: ScanOptions = {}): Promise<AgentScan> {
  const scan: AgentScan = { agents: [], problems: [], skipped: [] };
  const seen = new Set<string>();
  const jobs: Promise<void>[] = [];
  for (const dir of agentDirs(libdirs)) {
    let files: string[];
    try {
      files = readdirSync(dir)
        .filter((f) => f.endsWith(".json"))
        .sort();
    } catch (err) {
      scan.problems.push({ file: dir, reason: (err as Error).message });
      continue;
    }
    for (const f of files) {
      if (seen.has(f)) continue;
      seen.add(f);
      // Activation checks run external programs: in parallel, so start-up waits for the slowest only.
      jobs.push(loadOne(dir, f, opts, scan));
    }
  }
  await Promise.all(jobs);
  scan.agents.sort((a, b) => a.name.localeCompare(b.name));
  return scan;
}
