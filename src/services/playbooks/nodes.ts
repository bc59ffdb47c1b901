import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import type { Client } from "../../client/index.js";
import { buildFilter, semverSatisfies } from "../../core/filter/index.js";
import { PlaybookError } from "./errors.js";
import { durationMs, runCommand } from "./tasks.js";
import type { NodeSetDef, Playbook } from "./types.js";

/** What node set resolution needs from the run. */
export interface NodeSetEnv {
  client: Client;
  /** file and shell node sets resolve relative paths here */
  cwd: string;
  signal?: AbortSignal | undefined;
  log(level: "debug" | "info" | "warn" | "error", msg: string): void;
  /** renders the node set's template strings (inputs, earlier node sets) */
  render(def: NodeSetDef): Promise<NodeSetDef>;
  /** called as each set is resolved, in declaration order */
  onSet?(name: string, nodes: string[]): void;
}

/** A shell node set script that runs longer than this fails (Choria's default). */
const SHELL_TIMEOUT_MS = 10_000;
/** what a shell or file node set may list: identities, not arbitrary text */
const IDENTITY = /^[A-Za-z0-9_.:@-]+$/;

const fail = (set: string, msg: string): never => {
  throw new PlaybookError("nodes", `node set ${set}: ${msg}`);
};

/**
 * Resolves every node set in declaration order (later sets may template earlier ones),
 * applying Choria's checks: empty (when_empty unless empty_ok), limit, at_least, test
 * (rpcutil ping) and uses (agent versions). Throws PlaybookError("nodes") on the first
 * set that fails.
 */
export async function resolveNodeSets(pb: Playbook, env: NodeSetEnv): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const [name, raw] of Object.entries(pb.nodes)) {
    const def = await env.render(raw);
    let nodes = [...new Set(await discoverSet(name, def, env))];
    if (nodes.length === 0) {
      if (!def.empty_ok)
        throw new PlaybookError("nodes", def.when_empty ?? `Did not discover any nodes for nodeset ${name}`);
    }
    if (def.limit !== undefined && nodes.length > def.limit) {
      env.log("debug", `limiting node set ${name} to ${def.limit} nodes from ${nodes.length}`);
      nodes = nodes.slice(0, def.limit);
    }
    const atLeast = def.empty_ok ? 0 : (def.at_least ?? 1);
    if (nodes.length < atLeast) fail(name, `needs at least ${atLeast} nodes, got ${nodes.length}`);
    if (def.test && nodes.length > 0) await testNodes(name, nodes, env);
    const uses = { ...pb.uses, ...def.uses };
    if (Object.keys(uses).length > 0 && nodes.length > 0) await checkUses(name, nodes, uses, env);
    env.log("info", `discovered ${nodes.length} node(s) in node set ${name}`);
    out[name] = nodes;
    env.onSet?.(name, nodes);
  }
  return out;
}

async function discoverSet(name: string, def: NodeSetDef, env: NodeSetEnv): Promise<string[]> {
  switch (def.type) {
    case "list":
      return def.nodes.map(String);
    case "file": {
      const path = resolve(env.cwd, def.file);
      let text: string;
      try {
        text = await readFile(path, "utf8");
      } catch (err) {
        return fail(name, `cannot read ${path}: ${(err as Error).message}`);
      }
      return parseNodeList(name, path, text);
    }
    case "shell": {
      const timeoutMs =
        def.timeout !== undefined ? durationMs(def.timeout, `node set ${name} timeout`) : SHELL_TIMEOUT_MS;
      const r = await runCommand(def.script, { cwd: env.cwd, timeoutMs, signal: env.signal });
      if (r.timedOut) fail(name, `script timed out after ${timeoutMs / 1000}s`);
      if (r.code !== 0) fail(name, `script exited with code ${r.code}: ${r.stderr.trim().slice(0, 500)}`);
      return parseNodeList(name, "the script's output", r.stdout);
    }
    case "discovery": {
      if (def.collective !== undefined && def.collective !== env.client.collective) {
        fail(name, `collective ${def.collective} is not the client's collective (${env.client.collective})`);
      }
      let filter;
      try {
        filter = buildFilter({
          identity: def.identities ?? [],
          classes: def.classes ?? [],
          agents: def.agents ?? [],
          facts: def.facts ?? [],
          compound: def.compound !== undefined ? [def.compound] : [],
        });
      } catch (err) {
        return fail(name, (err as Error).message);
      }
      try {
        return await env.client.discover({
          filter,
          ...(def.discovery_method !== undefined && { method: def.discovery_method }),
          ...(def.discovery_options !== undefined && { options: def.discovery_options }),
          ...(env.signal && { signal: env.signal }),
        });
      } catch (err) {
        return fail(name, `discovery failed: ${(err as Error).message}`);
      }
    }
  }
}

/** A JSON array of identities, or one identity per line (blank lines and # comments skipped). */
function parseNodeList(set: string, from: string, text: string): string[] {
  const t = text.trim();
  let list: unknown[];
  if (t.startsWith("[")) {
    try {
      list = JSON.parse(t) as unknown[];
    } catch (err) {
      return fail(set, `${from}: not a JSON array: ${(err as Error).message}`);
    }
    if (!Array.isArray(list)) fail(set, `${from}: not a JSON array`);
  } else {
    list = t
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l !== "" && !l.startsWith("#"));
  }
  for (const n of list) {
    if (typeof n !== "string" || !IDENTITY.test(n))
      fail(set, `${from}: ${JSON.stringify(n)} is not a node identity`);
  }
  return list as string[];
}

async function testNodes(set: string, nodes: string[], env: NodeSetEnv): Promise<void> {
  env.log("info", `checking connectivity of ${nodes.length} node(s) in node set ${set}`);
  const r = await env.client.request(
    "rpcutil",
    "ping",
    {},
    { nodes, ...(env.signal && { signal: env.signal }) },
  );
  const failed = r.replies.filter((x) => x.statuscode !== 0).map((x) => x.sender);
  const missing = [...r.stats.noResponses, ...failed];
  if (missing.length > 0)
    fail(set, `connectivity test failed for ${missing.length} node(s): ${missing.sort().join(", ")}`);
}

/** Choria's check: every node has every used agent at a version in its range. */
async function checkUses(
  set: string,
  nodes: string[],
  uses: Record<string, string>,
  env: NodeSetEnv,
): Promise<void> {
  env.log("info", `validating agent inventory of ${nodes.length} node(s) in node set ${set}`);
  const r = await env.client.request(
    "rpcutil",
    "agent_inventory",
    {},
    { nodes, ...(env.signal && { signal: env.signal }) },
  );
  const problems: string[] = [];
  for (const n of r.stats.noResponses) problems.push(`${n}: no inventory received`);
  for (const reply of r.replies) {
    if (reply.statuscode !== 0) {
      problems.push(`${reply.sender}: ${reply.statusmsg}`);
      continue;
    }
    const agents = Array.isArray(reply.data.agents) ? (reply.data.agents as Record<string, unknown>[]) : [];
    for (const [agent, range] of Object.entries(uses)) {
      const meta = agents.find((a) => a.agent === agent || a.name === agent);
      if (!meta) {
        problems.push(`${reply.sender}: no agent ${agent}`);
        continue;
      }
      // mcollective versions were not always SemVer: "1.1" is taken as 1.1.0, as Choria did
      const v = String(meta.version ?? "");
      const have = /^\d+\.\d+$/.test(v) ? `${v}.0` : v;
      let ok: boolean;
      try {
        ok = semverSatisfies(have, range);
      } catch (err) {
        return fail(set, `uses ${agent}: ${(err as Error).message}`);
      }
      if (!ok) problems.push(`${reply.sender}: ${agent} ${v || "(no version)"} does not satisfy ${range}`);
    }
  }
  if (problems.length > 0) {
    for (const p of problems) env.log("warn", p);
    const shown =
      problems.slice(0, 5).join("; ") + (problems.length > 5 ? `; and ${problems.length - 5} more` : "");
    fail(set, `agents do not match the playbook's SemVer ranges: ${shown}`);
  }
  env.log("info", `agent inventory of ${nodes.length} node(s) in node set ${set} validated`);
}
