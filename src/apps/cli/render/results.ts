import type { ActionDDL, AgentDDL } from "../../../core/ddl/index.js";
import { findAction } from "../../../core/ddl/index.js";
import { StatusCode } from "../../../core/protocol/index.js";
import { renderSummaries, type Summary } from "./aggregate.js";
import { printableReply } from "./output.js";
import { INTERRUPTED_EXIT, plural } from "./words.js";
import type { PingResult, RpcReply, RpcResult, RpcStats } from "../../../client/index.js";

/** Which replies the text output shows; "ddl" follows the action's `display` hint. */
export type DisplayMode = "ddl" | "ok" | "failed" | "all" | "none";

export const DISPLAY_MODES: readonly DisplayMode[] = ["ddl", "ok", "failed", "all", "none"];

/**
 * The MCollective exit code convention: 0 OK, 1 discovery found nothing, 2 some nodes
 * failed or did not answer, 3 nodes were discovered but none answered, 4 no discovery
 * was done (nodes given or identity-only filter) and nothing answered. A request cut
 * short by ^C exits 130 whatever it got, as a shell reports an interrupted command.
 */
export function exitCodeFor(stats: RpcStats): number {
  if (stats.interrupted) return INTERRUPTED_EXIT;
  if (stats.discoverMs === 0 && stats.responses === 0) return 4;
  if (stats.discovered === 0) return stats.responses > 0 ? 0 : 1;
  if (stats.responses === 0) return 3;
  if (stats.failed > 0 || stats.noResponses.length > 0) return 2;
  return 0;
}

/** ms → whole nanoseconds, the way Go marshals a time.Duration. */
function durationNs(ms: number): number {
  return Math.round(ms * 1e6);
}

/**
 * The result in go-choria's `req --json` shape (durations in ns, times RFC 3339 UTC),
 * with `summaries` (the DDL aggregates, keyed by output) when there are any.
 */
export function toChoriaJson(result: RpcResult, summaries?: readonly Summary[]): Record<string, unknown> {
  const s = result.stats;
  const extra: Record<string, unknown> = {};
  if (summaries && summaries.length > 0) {
    extra.summaries = Object.fromEntries(
      summaries.map((x) => [
        x.output,
        {
          function: x.function,
          samples: x.samples,
          ...(x.counts && { counts: x.counts }),
          ...(x.average !== undefined && { average: x.average }),
        },
      ]),
    );
  }
  if (s.skipped?.length) extra.skipped = s.skipped;
  if (s.canaryStopped) extra.canary_stopped = true;
  if (s.interrupted) extra.interrupted = true;
  return {
    agent: result.agent,
    action: result.action,
    replies: result.replies.map((r) => ({
      sender: r.sender,
      action: result.action,
      statuscode: r.statuscode,
      statusmsg: r.statusmsg,
      data: r.data,
      time_utc: r.time.toISOString(),
    })),
    request_stats: {
      requestid: s.requestid,
      no_responses: s.noResponses,
      unexpected_responses: s.unexpected,
      discovered: s.discovered,
      failed: s.failed,
      ok: s.ok,
      responses: s.responses,
      publish_time: durationNs(s.publishMs),
      request_time: durationNs(s.requestMs),
      discover_time: durationNs(s.discoverMs),
      start_time_utc: s.startTime.toISOString(),
      ...(s.retries !== undefined && { retries: s.retries }),
    },
    ...extra,
  };
}

export function renderJson(result: RpcResult, summaries?: readonly Summary[]): string {
  try {
    return JSON.stringify(toChoriaJson(result, summaries), null, 2) + "\n";
  } catch (err) {
    if (!(err instanceof RangeError)) throw err;
    // data too deep for JSON.stringify (only possible for results not from Client.request)
    const printable = { ...result, replies: result.replies.map(printableReply) };
    return JSON.stringify(toChoriaJson(printable, summaries), null, 2) + "\n";
  }
}

const STATUS_TEXT: Record<number, string> = {
  [StatusCode.OK]: "",
  [StatusCode.Aborted]: "Request Aborted",
  [StatusCode.UnknownAction]: "Unknown Action",
  [StatusCode.MissingData]: "Missing Request Data",
  [StatusCode.InvalidData]: "Invalid Request Data",
  [StatusCode.UnknownError]: "Unknown Request Status",
};

export function shouldDisplay(mode: DisplayMode, hint: ActionDDL["display"], statuscode: number): boolean {
  const ok = statuscode === StatusCode.OK;
  switch (mode) {
    case "all":
      return true;
    case "none":
      return false;
    case "ok":
      return ok;
    case "failed":
      return !ok;
    default:
      // No hint behaves like "failed", as in Choria.
      if (hint === "always") return true;
      if (hint === "ok") return ok;
      return !ok;
  }
}

/** JSON with sorted keys, continuation lines indented by `pad`. */
function prettyValue(v: unknown, pad: string): string {
  const sorted = (x: unknown): unknown => {
    if (Array.isArray(x)) return x.map(sorted);
    if (x !== null && typeof x === "object") {
      const o = x as Record<string, unknown>;
      return Object.fromEntries(
        Object.keys(o)
          .sort()
          .map((k) => [k, sorted(o[k])]),
      );
    }
    return x;
  };
  return JSON.stringify(sorted(v), null, 3).split("\n").join(`\n${pad}`);
}

function valueText(v: unknown, pad: string): string {
  if (typeof v === "string") return v;
  if (v === undefined) return "";
  if (v !== null && typeof v === "object") {
    try {
      return prettyValue(v, pad);
    } catch (err) {
      // only data built outside Client.request can be too deep to print
      if (err instanceof RangeError) return "(not shown: nested too deep)";
      throw err;
    }
  }
  return String(v);
}

function renderReply(out: string[], reply: RpcReply, action: ActionDDL | undefined): void {
  const status = STATUS_TEXT[reply.statuscode] ?? STATUS_TEXT[StatusCode.UnknownError];
  out.push(`${reply.sender.padEnd(40)} ${status}`.trimEnd());
  if (reply.statuscode !== StatusCode.OK) {
    out.push(`    ${reply.statusmsg}`, "");
    return;
  }
  // Declared outputs in DDL order, then anything else the agent sent, sorted.
  const declared = action ? Object.keys(action.output) : [];
  const extra = Object.keys(reply.data)
    .filter((k) => !declared.includes(k))
    .sort();
  const keys = [...declared.filter((k) => k in reply.data), ...extra];
  const label = (k: string) => action?.output[k]?.display_as || k;
  const width = Math.max(0, ...keys.map((k) => label(k).length)) + 3;
  const pad = " ".repeat(width + 2);
  for (const k of keys) {
    out.push(`${label(k).padStart(width)}: ${valueText(reply.data[k], pad)}`);
  }
  out.push("");
}

/** Milliseconds for people: one decimal below 100 ms, whole numbers above. */
export function formatMs(ms: number): string {
  return ms >= 100 ? `${Math.round(ms)} ms` : `${ms.toFixed(1)} ms`;
}

/** Identities three to a line; with `max`, only the first `max` and how many more. */
function nodeList(out: string[], title: string, nodes: string[], max = Infinity): void {
  if (nodes.length === 0) return;
  out.push("", `${title}: ${nodes.length}`, "");
  const shown = nodes.slice(0, max);
  for (let i = 0; i < shown.length; i += 3) out.push(`    ${shown.slice(i, i + 3).join("  ")}`);
  if (nodes.length > shown.length) out.push(`    ... and ${nodes.length - shown.length} more`);
}

/** How many unsent identities are named: after ^C in discovery this can be the whole fleet. */
export const NOT_SENT_SHOWN = 20;

function statLine(label: string, value: string | number): string {
  return `${label.padStart(21)}: ${value}`;
}

export function renderStats(stats: RpcStats): string {
  const out = [
    "---- request statistics ----",
    statLine("Discovered", stats.discovered),
    statLine("Responses", stats.responses),
    statLine("OK", stats.ok),
    statLine("Failed", stats.failed),
    statLine("No responses", stats.noResponses.length),
    statLine("Unexpected responses", stats.unexpected.length),
    statLine("Discovery time", formatMs(stats.discoverMs)),
    statLine("Publish time", formatMs(stats.publishMs)),
    statLine("Request time", formatMs(stats.requestMs)),
  ];
  if (stats.retries) out.push(statLine("Retries", stats.retries));
  const dropped = Object.entries(stats.dropped).filter(([, n]) => n > 0);
  if (dropped.length > 0) {
    out.push(statLine("Dropped replies", `${dropped.map(([why, n]) => `${n} ${why}`).join(", ")}`));
  }
  nodeList(out, "No responses from", stats.noResponses);
  nodeList(out, "Unexpected responses from", stats.unexpected);
  if (stats.canaryStopped)
    out.push("", "The canary batch failed: the request was not sent to the other nodes.");
  if (stats.interrupted) {
    const notSent = stats.skipped?.length ?? 0;
    out.push(
      "",
      notSent > 0
        ? `Interrupted (^C): the request was not sent to ${plural(notSent, "node")}.`
        : "Interrupted (^C) while waiting for replies.",
    );
  }
  nodeList(out, "Not sent to", stats.skipped ?? [], NOT_SENT_SHOWN);
  return out.join("\n") + "\n";
}

/** Text output: per-node blocks following the display mode, then request statistics. */
export function renderText(
  result: RpcResult,
  ddl: AgentDDL | undefined,
  display: DisplayMode = "ddl",
  summaries: readonly Summary[] = [],
): string {
  const action = ddl ? findAction(ddl, result.action) : undefined;
  const out: string[] = [];
  for (const r of result.replies) {
    if (shouldDisplay(display, action?.display, r.statuscode)) renderReply(out, r, action);
  }
  return (
    (out.length > 0 ? out.join("\n") + "\n" : "") + renderSummaries(summaries) + renderStats(result.stats)
  );
}

export function renderPing(result: PingResult): string {
  // Nobody answered: the command prints nothingMatched() instead.
  if (result.replies.length === 0) return "";
  const out = result.replies.map((r) => `${r.sender.padEnd(40)} time=${formatMs(r.ms)}`);
  // A loop, not Math.min(...): spreading a large fleet's replies overflows the stack.
  let min = Infinity;
  let max = 0;
  let sum = 0;
  for (const r of result.replies) {
    min = Math.min(min, r.ms);
    max = Math.max(max, r.ms);
    sum += r.ms;
  }
  const avg = sum / result.replies.length;
  out.push(
    "",
    "---- ping statistics ----",
    `${plural(result.replies.length, "reply", "replies")} min/avg/max = ${min.toFixed(1)}/${avg.toFixed(1)}/${max.toFixed(1)} ms`,
  );
  return out.join("\n") + "\n";
}

export function renderDiscovered(identities: string[], json: boolean): string {
  const sorted = [...identities].sort();
  if (json) return JSON.stringify(sorted, null, 2) + "\n";
  return sorted.map((i) => `${i}\n`).join("");
}

/** `ping --graph`: a latency histogram with percentiles instead of one line per node. */
export function renderPingGraph(result: PingResult, buckets = 20): string {
  const ms = result.replies.map((r) => r.ms).sort((a, b) => a - b);
  if (ms.length === 0) return "";
  const pct = (p: number) => ms[Math.min(ms.length - 1, Math.floor((p / 100) * ms.length))] as number;
  const lo = ms[0] as number;
  const hi = ms[ms.length - 1] as number;
  const width = hi === lo ? 1 : (hi - lo) / buckets;
  const n = hi === lo ? 1 : buckets;
  const counts = new Array<number>(n).fill(0);
  for (const v of ms) counts[Math.min(n - 1, Math.floor((v - lo) / width))]!++;
  const most = Math.max(...counts);
  const labels = counts.map((_, i) => `${(lo + i * width).toFixed(1)} ms`);
  const w = Math.max(...labels.map((l) => l.length));
  const out = counts.map((c, i) => {
    const bar = "▇".repeat(c === 0 ? 0 : Math.max(1, Math.round((c / most) * 50)));
    return `${(labels[i] as string).padStart(w)} │ ${bar} ${c}`;
  });
  out.push(
    "",
    "---- ping statistics ----",
    `${plural(ms.length, "reply", "replies")} min/p50/p90/p99/max = ${lo.toFixed(1)}/${pct(50).toFixed(1)}/${pct(90).toFixed(1)}/${pct(99).toFixed(1)}/${hi.toFixed(1)} ms`,
  );
  return out.join("\n") + "\n";
}
