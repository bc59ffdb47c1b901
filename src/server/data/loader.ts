import { spawnSync } from "node:child_process";
import { accessSync, constants, existsSync, readdirSync, statSync } from "node:fs";
import { basename, extname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { ddlTimeoutMs, parseDataDdl, readDataDdl } from "./ddl.js";
import { DataError, type DataDdl, type DataNode, type DataPlugin } from "./types.js";

/** A plugin file that was not loaded, and why. */
export interface DataLoadProblem {
  file: string;
  reason: string;
}

export interface DataLoadResult {
  plugins: DataPlugin[];
  problems: DataLoadProblem[];
}

/** The `protocol` field of what an external data plugin reads on stdin. */
export const EXTERNAL_DATA_PROTOCOL = "io.chorus.data.v1.external_request";

/** Largest stdout an external data plugin may write. */
const MAX_OUTPUT = 1024 * 1024;

function listDir(dir: string, problems: DataLoadProblem[]): string[] {
  try {
    return readdirSync(dir).sort();
  } catch (err) {
    problems.push({ file: dir, reason: `cannot read directory: ${(err as Error).message}` });
    return [];
  }
}

/** Keeps a plugin's failures inside DataError so a broken plugin fails its query, not the node. */
function guarded(name: string, ddl: DataDdl, run: (q: string, n: DataNode) => unknown): DataPlugin {
  return {
    name,
    ddl,
    run(query, node) {
      let r: unknown;
      try {
        r = run(query, node);
      } catch (err) {
        if (err instanceof DataError) throw err;
        throw new DataError(`data plugin ${name} failed: ${(err as Error).message ?? String(err)}`);
      }
      if (typeof r !== "object" || r === null || Array.isArray(r))
        throw new DataError(
          `data plugin ${name} returned ${Array.isArray(r) ? "an array" : typeof r}, not an object`,
        );
      return r as Record<string, unknown>;
    },
  };
}

interface PluginModule {
  ddl?: unknown;
  run?: unknown;
  plugin?: { ddl?: unknown; run?: unknown; name?: unknown };
  default?: { ddl?: unknown; run?: unknown; name?: unknown };
}

/**
 * Loads `<dir>/<name>.mjs` (or `.js`) modules. Each exports a DataPlugin (as `default`,
 * `plugin`, or top-level `ddl` and `run`); a module without a `ddl` uses `<name>.json`
 * beside it. `run(query, node)` must be synchronous and return an object.
 */
export async function loadModuleDataPlugins(dir: string): Promise<DataLoadResult> {
  const res: DataLoadResult = { plugins: [], problems: [] };
  for (const f of listDir(dir, res.problems)) {
    const ext = extname(f);
    if (ext !== ".mjs" && ext !== ".js") continue;
    const file = join(dir, f);
    const name = basename(f, ext);
    try {
      // the mtime in the URL makes a restart in the same process import an edited module afresh
      const mod = (await import(
        `${pathToFileURL(file).href}?mtime=${statSync(file).mtimeMs}`
      )) as PluginModule;
      const p = mod.default ?? mod.plugin ?? mod;
      if (typeof p.run !== "function") throw new DataError("the module exports no run(query, node) function");
      const ddl =
        p.ddl !== undefined
          ? parseDataDdl(p.ddl, `data plugin ${file}`)
          : readDataDdl(join(dir, `${name}.json`));
      if (ddl.metadata.name !== name)
        throw new DataError(`the DDL names data plugin "${ddl.metadata.name}" but the file is ${f}`);
      if ("name" in p && p.name !== undefined && p.name !== name)
        throw new DataError(`the module names data plugin "${String(p.name)}" but the file is ${f}`);
      const run = p.run as (q: string, n: DataNode) => unknown;
      res.plugins.push(guarded(name, ddl, (q, n) => run.call(p, q, n)));
    } catch (err) {
      res.problems.push({ file, reason: (err as Error).message });
    }
  }
  return res;
}

/**
 * Runs an external data plugin once: the request JSON on stdin, the outputs as one JSON
 * object on stdout, exit 0. Synchronous because filters are; bounded by the DDL timeout.
 */
export function runExternalDataPlugin(
  exe: string,
  ddl: DataDdl,
  query: string,
  node: DataNode,
): Record<string, unknown> {
  const name = ddl.metadata.name;
  const timeout = ddlTimeoutMs(ddl);
  const r = spawnSync(exe, [], {
    input: JSON.stringify({ protocol: EXTERNAL_DATA_PROTOCOL, plugin: name, query, identity: node.identity }),
    timeout,
    killSignal: "SIGKILL",
    maxBuffer: MAX_OUTPUT,
    encoding: "utf8",
    // A small, explicit environment, as for external agents.
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      CHORIA_DATA_PROTOCOL: EXTERNAL_DATA_PROTOCOL,
      CHORIA_EXTERNAL_CONFIG: node.host.configFile ?? "",
    },
  });
  if (r.error !== undefined) {
    const code = (r.error as NodeJS.ErrnoException).code;
    if (code === "ETIMEDOUT") throw new DataError(`data plugin ${name} timed out after ${timeout / 1000}s`);
    throw new DataError(`data plugin ${name} could not run: ${r.error.message}`);
  }
  if (r.status !== 0) {
    const why = (r.stderr ?? "").trim().split("\n").pop()?.slice(0, 500) ?? "";
    throw new DataError(
      `data plugin ${name} failed (${r.signal ?? `exit ${String(r.status)}`})${why === "" ? "" : `: ${why}`}`,
    );
  }
  let doc: unknown;
  try {
    doc = JSON.parse(r.stdout);
  } catch {
    throw new DataError(`data plugin ${name} did not print a JSON object`);
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc))
    throw new DataError(`data plugin ${name} did not print a JSON object`);
  // the DDL is the contract: undeclared outputs are dropped
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(ddl.output)) if (k in doc) out[k] = (doc as Record<string, unknown>)[k];
  return out;
}

/** Loads `<dir>/<name>.json` DDLs, each with an executable `<dir>/<name>` beside it. */
export function loadExternalDataPlugins(dir: string): DataLoadResult {
  const res: DataLoadResult = { plugins: [], problems: [] };
  for (const f of listDir(dir, res.problems)) {
    if (extname(f) !== ".json") continue;
    const file = join(dir, f);
    const name = basename(f, ".json");
    const exe = join(dir, name);
    try {
      const ddl = readDataDdl(file);
      if (ddl.metadata.name !== name)
        throw new DataError(`the DDL names data plugin "${ddl.metadata.name}" but the file is ${f}`);
      if (!existsSync(exe)) throw new DataError(`external data plugin ${name} needs an executable ${exe}`);
      try {
        accessSync(exe, constants.X_OK);
      } catch {
        throw new DataError(`${exe} is not executable`);
      }
      res.plugins.push(guarded(name, ddl, (q, n) => runExternalDataPlugin(exe, ddl, q, n)));
    } catch (err) {
      res.problems.push({ file, reason: (err as Error).message });
    }
  }
  return res;
}
