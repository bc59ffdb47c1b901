import { existsSync } from "node:fs";
import { join } from "node:path";
import { builtinDDL, DDLError, loadDDL, type AgentDDL } from "../core/ddl/index.js";

/**
 * Finds an agent's DDL: `<libdir>/mcollective/agent/<agent>.json` (Choria's layout)
 * or `<libdir>/<agent>.json` in each libdir in order, then the built-in DDLs.
 */
export function findAgentDDL(agent: string, libdirs: readonly string[]): AgentDDL {
  // The agent name becomes part of a path.
  if (!/^[a-zA-Z0-9_-]+$/.test(agent)) throw new DDLError("ddl_unknown", `invalid agent name "${agent}"`);
  for (const dir of libdirs) {
    for (const candidate of [
      join(dir, "mcollective", "agent", `${agent}.json`),
      join(dir, `${agent}.json`),
    ]) {
      if (existsSync(candidate)) return loadDDL(candidate);
    }
  }
  try {
    return builtinDDL(agent);
  } catch (err) {
    const where = libdirs.length > 0 ? ` (searched libdir ${libdirs.join(":")} and the built-in DDLs)` : "";
    throw new DDLError("ddl_unknown", `no DDL found for agent "${agent}"${where}`, { cause: err });
  }
}
