import type { Filter } from "../../core/protocol/index.js";
import { badOption, ClientError, naming, opt } from "../errors.js";
import { runExternal } from "./external.js";
import { applyIdentityFilter, readFlatfile } from "./flatfile.js";
import { discoverInventory, loadInventory } from "./inventory.js";
import { DISCOVER_NAMES, type DiscoveryNames } from "./names.js";

export { runExternal, EXTERNAL_REQUEST_PROTOCOL, EXTERNAL_REPLY_PROTOCOL } from "./external.js";
export { readFlatfile, readSource, applyIdentityFilter, FLAT_FORMATS } from "./flatfile.js";
export {
  discoverInventory,
  loadInventory,
  parseInventory,
  inventoryFromReplies,
  INVENTORY_SCHEMA,
  type InventoryFile,
  type InventoryNode,
  type InventoryGroup,
} from "./inventory.js";
export { selectPath } from "./path.js";
export { DISCOVER_NAMES, REQUEST_NAMES, type DiscoveryNames } from "./names.js";

/** Discovery method names; mc and file are Choria's aliases. */
export const DISCOVERY_METHODS = [
  "broadcast",
  "mc",
  "flatfile",
  "file",
  "inventory",
  "external",
  "results",
] as const;
export type DiscoveryMethod = (typeof DISCOVERY_METHODS)[number];

/** Options each method understands (anything else is an error; external takes all). */
const KNOWN_OPTIONS: Record<string, string[]> = {
  flatfile: ["file", "format", "filter", "status"],
  results: ["file", "format", "filter", "status"],
  inventory: ["file", "group"],
};

export interface OfflineDiscovery {
  method: DiscoveryMethod;
  filter: Filter;
  collective: string;
  timeoutMs: number;
  options: Record<string, string>;
  /** where `-` reads from (tests) */
  stdin?: () => string;
  /** how errors name the method and its options (default: `method`, `options`) */
  names?: DiscoveryNames;
}

export function isNetworkMethod(m: string | undefined): boolean {
  return m === undefined || m === "broadcast" || m === "mc";
}

export function checkMethod(m: string): DiscoveryMethod {
  if (!(DISCOVERY_METHODS as readonly string[]).includes(m)) {
    throw new ClientError(
      "bad_option",
      `unknown discovery method "${m}" (use ${DISCOVERY_METHODS.join(", ")})`,
    );
  }
  return m as DiscoveryMethod;
}

/** Discovery that needs no broker: files, an inventory, an external program. */
export async function discoverOffline(d: OfflineDiscovery): Promise<string[]> {
  const method = d.method === "file" ? "flatfile" : d.method;
  const names = d.names ?? DISCOVER_NAMES;
  const needs = (what: string) =>
    badOption(names.options, naming`${method} discovery needs ${opt(names.options)} ${what}`);
  const known = KNOWN_OPTIONS[method];
  if (known) {
    for (const k of Object.keys(d.options)) {
      if (!known.includes(k)) {
        throw badOption(
          names.options,
          naming`${opt(names.options)} ${k}: not an option of ${method} discovery (known: ${known.join(", ")})`,
        );
      }
    }
  }
  const o = d.options;
  switch (method) {
    case "flatfile":
    case "results": {
      // Results default to standard input: `chorus req ... --json | chorus req --dm results ...`.
      const file = o.file ?? (method === "results" ? "-" : undefined);
      // The CLI says this one its own way: --nodes FILE is flatfile discovery of FILE.
      if (file === undefined)
        throw badOption(
          names.options,
          naming`flatfile discovery needs ${opt(`${names.options}.file`, `${names.options} file=PATH`)}`,
        );
      const ids = readFlatfile({
        file,
        ...(o.format !== undefined && { format: o.format }),
        ...(o.filter !== undefined && { filter: o.filter }),
        ...(o.status !== undefined && { status: o.status }),
        ...(d.stdin && { stdin: d.stdin }),
      });
      return applyIdentityFilter(ids, d.filter, method, names);
    }
    case "inventory": {
      if (o.file === undefined) throw needs("file=PATH");
      const loaded = loadInventory(o.file, d.stdin);
      return discoverInventory(loaded, d.filter, d.collective, o.group ? o.group.split(",") : []);
    }
    case "external": {
      const command = o.command;
      if (!command) throw needs("command=PROGRAM");
      return runExternal({
        command,
        filter: d.filter,
        collective: d.collective,
        timeoutMs: d.timeoutMs,
        options: o,
        optionsName: names.options,
      });
    }
    default:
      throw new ClientError(
        "bad_option",
        `${method} discovery needs the network; it is not an offline method`,
      );
  }
}
