import { statSync } from "node:fs";
import { extname } from "node:path";
import { parse as parseYaml } from "yaml";
import { buildFilter, matchFilter, matchIdentity, type NodeInfo } from "../../core/filter/index.js";
import type { Filter } from "../../core/protocol/index.js";
import { ClientError } from "../errors.js";
import { readSource } from "./flatfile.js";
import { checkInventory } from "./schemas.js";

export const INVENTORY_SCHEMA = "https://choria.io/schemas/choria/discovery/v1/inventory_file.json";

export interface InventoryNode {
  name: string;
  collectives: string[];
  facts: Record<string, unknown>;
  classes: string[];
  agents: string[];
}

export interface InventoryGroup {
  name: string;
  filter?: {
    agents?: string[];
    classes?: string[];
    facts?: string[];
    identities?: string[];
    compound?: string;
  };
}

export interface InventoryFile {
  $schema: string;
  nodes: InventoryNode[];
  groups?: InventoryGroup[];
}

interface Loaded {
  inv: InventoryFile;
  /** NodeInfo views, built once per file version */
  infos: NodeInfo[];
  groups: Map<string, Filter>;
}

const cache = new Map<string, { mtimeMs: number; size: number; loaded: Loaded }>();

function fail(msg: string, cause?: unknown): never {
  throw new ClientError("discovery_failed", msg, cause === undefined ? undefined : { cause });
}

/** Parses and validates an inventory document (JSON or YAML) against Choria's schema. */
export function parseInventory(text: string, source: string, yaml = false): InventoryFile {
  let doc: unknown;
  try {
    doc = yaml ? parseYaml(text) : JSON.parse(text);
  } catch (err) {
    fail(
      `inventory ${source} is not valid ${yaml ? "YAML" : "JSON"}: ${(err as Error).message.split("\n")[0]}`,
      err,
    );
  }
  const why = checkInventory(doc);
  if (why !== undefined) fail(`inventory ${source} does not match ${INVENTORY_SCHEMA}: ${why}`);
  const inv = doc as InventoryFile;
  const seen = new Set<string>();
  for (const n of inv.nodes) {
    if (seen.has(n.name)) fail(`inventory ${source}: node "${n.name}" is listed twice`);
    seen.add(n.name);
  }
  return inv;
}

function groupFilter(g: InventoryGroup, source: string): Filter {
  const f = g.filter ?? {};
  try {
    return buildFilter({
      identity: f.identities ?? [],
      classes: f.classes ?? [],
      agents: f.agents ?? [],
      facts: f.facts ?? [],
      compound: f.compound ? [f.compound] : [],
    });
  } catch (err) {
    return fail(`inventory ${source}: group "${g.name}": ${(err as Error).message}`, err);
  }
}

function prepare(inv: InventoryFile, source: string): Loaded {
  const groups = new Map<string, Filter>();
  for (const g of inv.groups ?? []) groups.set(g.name, groupFilter(g, source));
  const infos = inv.nodes.map((n) => ({
    identity: n.name,
    facts: n.facts,
    classes: n.classes,
    agents: n.agents,
  }));
  return { inv, infos, groups };
}

/** Loads an inventory file (cached while its mtime and size stay the same); `-` reads stdin. */
export function loadInventory(path: string, stdin?: () => string): Loaded {
  if (path !== "-") {
    let st;
    try {
      st = statSync(path);
    } catch (err) {
      fail(
        `inventory discovery: cannot read ${path}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (err as Error).message}`,
        err,
      );
    }
    const hit = cache.get(path);
    if (hit && hit.mtimeMs === st.mtimeMs && hit.size === st.size) return hit.loaded;
    const text = readSource(path, "inventory discovery");
    const yaml = [".yaml", ".yml"].includes(extname(path).toLowerCase());
    const loaded = prepare(parseInventory(text, path, yaml), path);
    cache.set(path, { mtimeMs: st.mtimeMs, size: st.size, loaded });
    return loaded;
  }
  const text = readSource(path, "inventory discovery", stdin);
  return prepare(parseInventory(text, "standard input", !text.trimStart().startsWith("{")), "standard input");
}

/**
 * Inventory discovery: the file's nodes in `collective` that pass the filter, run
 * client side with the same matchFilter the nodes use. An identity `group:NAME`
 * (or `--do group=NAME`) selects the nodes matching that named group's filter.
 */
export function discoverInventory(
  loaded: Loaded,
  filter: Filter,
  collective: string,
  groups: readonly string[] = [],
): string[] {
  const groupNames = [...groups];
  const plainIds: string[] = [];
  for (const id of filter.identity) {
    if (id.startsWith("group:")) groupNames.push(id.slice(6));
    else plainIds.push(id);
  }
  const groupFilters = groupNames.map((name) => {
    const g = loaded.groups.get(name);
    if (!g) {
      const known = [...loaded.groups.keys()];
      fail(`inventory has no group "${name}"${known.length ? ` (groups: ${known.join(", ")})` : ""}`);
    }
    return g;
  });
  const rest: Filter = { ...filter, identity: [] };
  const identityNeeded = filter.identity.length > 0 || groupNames.length > 0;
  const out: string[] = [];
  loaded.infos.forEach((n, i) => {
    const node = loaded.inv.nodes[i] as InventoryNode;
    if (node.collectives.length > 0 && !node.collectives.includes(collective)) return;
    // Identities (plain or groups) are ORed, as on the wire.
    if (identityNeeded) {
      const byId = plainIds.length > 0 && matchIdentity(plainIds, n.identity);
      if (!byId && !groupFilters.some((g) => matchFilter(g, n))) return;
    }
    if (!matchFilter(rest, n)) return;
    out.push(n.identity);
  });
  return out;
}

/**
 * An inventory file from `rpcutil inventory` replies: how an operator snapshots a
 * live fleet for inventory discovery (`chorus inventory --save FILE`).
 */
export function inventoryFromReplies(
  replies: readonly { sender: string; statuscode: number; data: Record<string, unknown> }[],
): InventoryFile {
  const list = (v: unknown): string[] =>
    Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [];
  return {
    $schema: INVENTORY_SCHEMA,
    nodes: replies
      .filter((r) => r.statuscode === 0)
      .map((r) => ({
        name: r.sender,
        collectives: list(r.data.collectives),
        facts:
          r.data.facts !== null && typeof r.data.facts === "object"
            ? (r.data.facts as Record<string, unknown>)
            : {},
        classes: list(r.data.classes),
        agents: list(r.data.agents),
      }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
  };
}
