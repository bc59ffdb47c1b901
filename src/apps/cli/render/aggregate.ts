import type { ActionDDL, AggregateDDL } from "../../../core/ddl/index.js";
import { StatusCode } from "../../../core/protocol/index.js";
import { ClientError, type RpcReply } from "../../../client/index.js";
import { plural } from "./words.js";

export const AGGREGATE_FUNCTIONS = ["summary", "boolean_summary", "average", "chart"] as const;
export type AggregateFunction = (typeof AGGREGATE_FUNCTIONS)[number];

/** One computed aggregate, as `--json` prints it under `summaries`. */
export interface Summary {
  function: AggregateFunction;
  output: string;
  /** the output's display_as */
  label: string;
  /** summary / boolean_summary / chart: value → count (chart: bucket label → count) */
  counts?: Record<string, number>;
  /** average */
  average?: number;
  /** how many OK replies carried the output */
  samples: number;
  format?: string;
}

function keyOf(v: unknown): string {
  if (typeof v === "string") return v;
  try {
    return JSON.stringify(v);
  } catch (err) {
    // only data built outside Client.request can be too deep to print
    if (err instanceof RangeError) return "(nested too deep)";
    throw err;
  }
}

/** printf-ish `%s`, `%d`, `%i`, `%.Nf` for aggregate `format` options. */
export function formatValue(format: string | undefined, v: unknown): string {
  if (!format) return typeof v === "number" && !Number.isInteger(v) ? v.toFixed(3) : keyOf(v);
  return format.replace(/%(\.(\d+))?([sdif%])/g, (_m, _p, prec: string | undefined, c: string) => {
    if (c === "%") return "%";
    if (c === "s") return keyOf(v);
    const n = Number(v);
    if (c === "f") return n.toFixed(prec === undefined ? 6 : Number(prec));
    return String(Math.trunc(n));
  });
}

function parseArgs(a: AggregateDDL): { output: string; format?: string } {
  const args = Array.isArray(a.args) ? a.args : [];
  const output = args[0];
  if (typeof output !== "string") {
    throw new ClientError("bad_option", `aggregate ${a.function}: the first argument must name an output`);
  }
  const opts = args[1] as { format?: unknown } | undefined;
  const format = typeof opts?.format === "string" ? opts.format : undefined;
  return format === undefined ? { output } : { output, format };
}

const CHART_BUCKETS = 10;

/**
 * The action's DDL aggregates over the OK replies, computed on the client as Choria
 * does. Lists count each element (summary of `agents` counts agents, not lists).
 */
export function computeSummaries(action: ActionDDL | undefined, replies: readonly RpcReply[]): Summary[] {
  const out: Summary[] = [];
  for (const a of action?.aggregate ?? []) {
    const fn = a.function as AggregateFunction;
    if (!(AGGREGATE_FUNCTIONS as readonly string[]).includes(fn)) continue;
    const { output, format } = parseArgs(a);
    const label = action?.output[output]?.display_as || output;
    const values: unknown[] = [];
    for (const r of replies) {
      if (r.statuscode !== StatusCode.OK || !Object.hasOwn(r.data, output)) continue;
      values.push(r.data[output]);
    }
    const s: Summary = { function: fn, output, label, samples: values.length, ...(format && { format }) };
    if (fn === "summary" || fn === "boolean_summary") {
      const counts: Record<string, number> = {};
      for (const v of values) {
        for (const item of Array.isArray(v) && fn === "summary" ? v : [v]) {
          const k = fn === "boolean_summary" ? String(item === true || item === "true") : keyOf(item);
          counts[k] = (counts[k] ?? 0) + 1;
        }
      }
      s.counts = counts;
    } else if (fn === "average") {
      const nums = values.map(Number).filter((n) => Number.isFinite(n));
      s.samples = nums.length;
      s.average = nums.length ? nums.reduce((x, y) => x + y, 0) / nums.length : 0;
    } else {
      s.counts = histogram(
        values.map(Number).filter((n) => Number.isFinite(n)),
        CHART_BUCKETS,
      );
    }
    out.push(s);
  }
  return out;
}

/** Equal-width buckets labelled by their lower bound; a loop, not Math.min(...), for big fleets. */
export function histogram(nums: readonly number[], buckets: number): Record<string, number> {
  const counts: Record<string, number> = {};
  if (nums.length === 0) return counts;
  let min = Infinity;
  let max = -Infinity;
  for (const n of nums) {
    if (n < min) min = n;
    if (n > max) max = n;
  }
  const width = max === min ? 1 : (max - min) / buckets;
  const n = max === min ? 1 : buckets;
  const labels: string[] = [];
  for (let i = 0; i < n; i++) {
    const lo = min + i * width;
    labels.push(Number.isInteger(lo) ? String(lo) : lo.toFixed(1));
    counts[labels[i] as string] = 0;
  }
  for (const v of nums) {
    const i = Math.min(n - 1, Math.floor((v - min) / width));
    const l = labels[i] as string;
    counts[l] = (counts[l] ?? 0) + 1;
  }
  return counts;
}

function bar(count: number, most: number, width = 40): string {
  return "▇".repeat(most === 0 ? 0 : Math.max(count > 0 ? 1 : 0, Math.round((count / most) * width)));
}

/** Summaries for people, after the replies and before the statistics. */
export function renderSummaries(summaries: readonly Summary[]): string {
  const out: string[] = [];
  for (const s of summaries) {
    if (s.function === "average") {
      out.push(
        `Average of ${s.label}: ${formatValue(s.format, s.average ?? 0)} (${plural(s.samples, "reply", "replies")})`,
        "",
      );
      continue;
    }
    const counts = s.counts ?? {};
    const entries = Object.entries(counts);
    if (s.function !== "chart") entries.sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
    out.push(`${s.function === "chart" ? "Distribution" : "Summary"} of ${s.label}:`, "");
    if (entries.length === 0) out.push("   No values", "");
    const labels = entries.map(([k]) => (s.function === "chart" ? k : formatValue(s.format, k)));
    const w = Math.max(0, ...labels.map((l) => l.length));
    const most = Math.max(0, ...entries.map(([, c]) => c));
    entries.forEach(([, c], i) => {
      const l = (labels[i] as string).padStart(w + 3);
      out.push(s.function === "chart" ? `${l} │ ${bar(c, most)} ${c}` : `${l}: ${c}`);
    });
    if (entries.length > 0) out.push("");
  }
  return out.length ? out.join("\n") + "\n" : "";
}
