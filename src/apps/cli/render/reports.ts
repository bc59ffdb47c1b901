import type { AgentDDL, InputDDL } from "../../../core/ddl/index.js";
import { StatusCode } from "../../../core/protocol/index.js";
import type { RpcReply } from "../../../client/index.js";
import { plural } from "./words.js";

export interface FactReport {
  fact: string;
  /** value (as text) → identities holding it, most common first */
  values: { value: string; count: number; nodes: string[] }[];
  /** nodes that answered without the fact, or failed */
  missing: string[];
}

function text(v: unknown): string {
  return typeof v === "string" ? v : JSON.stringify(v);
}

/** `chorus facts FACT`: the distribution of one fact's values over `rpcutil get_fact` replies. */
export function factReport(fact: string, replies: readonly RpcReply[]): FactReport {
  const by = new Map<string, string[]>();
  const missing: string[] = [];
  for (const r of replies) {
    const v = r.data.value;
    if (r.statuscode !== StatusCode.OK || v === undefined || v === null || v === "") {
      missing.push(r.sender);
      continue;
    }
    const k = text(v);
    let l = by.get(k);
    if (!l) by.set(k, (l = []));
    l.push(r.sender);
  }
  const values = [...by.entries()]
    .map(([value, nodes]) => ({ value, count: nodes.length, nodes: nodes.sort() }))
    .sort((a, b) => b.count - a.count || a.value.localeCompare(b.value));
  return { fact, values, missing: missing.sort() };
}

export function renderFactReport(r: FactReport, verbose = false): string {
  const out = [`Report for fact: ${r.fact}`, ""];
  const w = Math.max(0, ...r.values.map((v) => v.value.length));
  for (const v of r.values) {
    out.push(`  ${v.value.padEnd(w)}  found ${plural(v.count, "time")}`);
    if (verbose) {
      for (const n of v.nodes) out.push(`      ${n}`);
      out.push("");
    }
  }
  if (r.values.length === 0) out.push("  no node has this fact");
  if (r.missing.length > 0) out.push("", `  ${plural(r.missing.length, "node")} without the fact`);
  return out.join("\n") + "\n";
}

/** Nested facts as `a.b.c = value` lines, sorted. */
function flatten(prefix: string, v: unknown, out: [string, string][]): void {
  if (v !== null && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length > 0) {
    for (const k of Object.keys(v).sort())
      flatten(prefix ? `${prefix}.${k}` : k, (v as Record<string, unknown>)[k], out);
  } else {
    out.push([prefix, text(v)]);
  }
}

function columns(items: readonly string[], indent = "    "): string[] {
  if (items.length === 0) return [`${indent}(none)`];
  const w = Math.max(...items.map((i) => i.length)) + 2;
  const per = Math.max(1, Math.floor(80 / w));
  const out: string[] = [];
  for (let i = 0; i < items.length; i += per) {
    out.push(
      indent +
        items
          .slice(i, i + per)
          .map((x) => x.padEnd(w))
          .join("")
          .trimEnd(),
    );
  }
  return out;
}

/** `chorus inventory NODE`: one node's `rpcutil inventory` (and `daemon_stats` when present) for people. */
export function renderInventory(
  node: string,
  inv: Record<string, unknown>,
  stats: Record<string, unknown> | undefined,
): string {
  const list = (v: unknown) => (Array.isArray(v) ? v.map(text).sort() : []);
  const out = [`Inventory for ${node}:`, ""];
  out.push(`  Server version: ${text(inv.version ?? "unknown")}`);
  out.push(`  Main collective: ${text(inv.main_collective ?? "")}`);
  out.push("", "  Collectives:", ...columns(list(inv.collectives)));
  out.push("", "  Agents:", ...columns(list(inv.agents)));
  out.push("", "  Classes:", ...columns(list(inv.classes)));
  const facts: [string, string][] = [];
  flatten("", inv.facts ?? {}, facts);
  const w = Math.max(0, ...facts.map(([k]) => k.length));
  out.push(
    "",
    "  Facts:",
    ...(facts.length ? facts.map(([k, v]) => `    ${k.padEnd(w)} => ${v}`) : ["    (none)"]),
  );
  if (stats) {
    out.push("", "  Statistics:");
    for (const k of ["total", "validated", "unvalidated", "passed", "filtered", "replies", "ttlexpired"]) {
      if (stats[k] !== undefined) out.push(`    ${k.padEnd(12)} ${text(stats[k])}`);
    }
    if (typeof stats.starttime === "number") {
      out.push(`    ${"started".padEnd(12)} ${new Date(stats.starttime * 1000).toISOString()}`);
    }
  }
  return out.join("\n") + "\n";
}

function inputLine(name: string, i: InputDDL): string[] {
  const bits = [i.type, i.optional ? "optional" : "required"];
  // Choria DDLs write "default": null for "no default".
  if (i.default !== undefined && i.default !== null) bits.push(`default ${JSON.stringify(i.default)}`);
  if (i.validation) bits.push(`validation ${i.validation}`);
  if (i.maxlength) bits.push(`max length ${i.maxlength}`);
  if (i.list?.length) bits.push(`one of ${i.list.join(", ")}`);
  return [`      ${name} (${bits.join(", ")})`, `          ${i.description || i.prompt}`];
}

/** `chorus plugin doc AGENT`: a DDL for people: metadata, then each action's inputs, outputs and aggregates. */
export function renderDDLDoc(ddl: AgentDDL): string {
  const m = ddl.metadata;
  const out = [
    `${m.name}: ${m.description}`,
    "",
    `  Author:  ${m.author}`,
    `  Version: ${m.version}`,
    `  License: ${m.license}`,
    `  Timeout: ${plural(m.timeout, "second")}`,
    ...(m.url ? [`  Home:    ${m.url}`] : []),
    ...(m.service ? ["  Service agent: requests go to one member of a queue (--service)"] : []),
    "",
    "ACTIONS:",
    "",
  ];
  for (const a of ddl.actions) {
    out.push(`  ${a.action}: ${a.description}`, "");
    const inputs = Object.entries(a.input);
    out.push("    Input:");
    if (inputs.length === 0) out.push("      (none)");
    for (const [k, i] of inputs) out.push(...inputLine(k, i));
    out.push("", "    Output:");
    const outputs = Object.entries(a.output);
    if (outputs.length === 0) out.push("      (none)");
    for (const [k, o] of outputs) {
      const extra = [
        o.type,
        o.default !== undefined && o.default !== null ? `default ${JSON.stringify(o.default)}` : undefined,
      ].filter(Boolean);
      out.push(
        `      ${k}${extra.length ? ` (${extra.join(", ")})` : ""}`,
        `          ${o.description} [${o.display_as}]`,
      );
    }
    if (a.aggregate?.length) {
      out.push(
        "",
        "    Summaries:",
        ...a.aggregate.map((g) => `      ${g.function}(${JSON.stringify(g.args ?? [])})`),
      );
    }
    if (a.display) out.push("", `    Display: ${a.display}`);
    out.push("");
  }
  return out.join("\n");
}
