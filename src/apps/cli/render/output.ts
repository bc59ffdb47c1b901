import { findAction, type AgentDDL } from "../../../core/ddl/index.js";
import { MAX_JSON_DEPTH, StatusCode, valueDepthExceeds } from "../../../core/protocol/index.js";
import type { RpcReply, RpcResult } from "../../../client/index.js";

/**
 * A reply fit for JSON.stringify: one whose data nests deeper than MAX_JSON_DEPTH gets
 * `{}` and says so in its statusmsg. Client.request never returns such data (it turns
 * it into a failed reply); this is for results built some other way, and only runs
 * after printing the whole result failed.
 */
export function printableReply(r: RpcReply): RpcReply {
  if (!valueDepthExceeds(r.data, MAX_JSON_DEPTH)) return r;
  const note = `data nested more than ${MAX_JSON_DEPTH} levels deep not shown`;
  return { ...r, data: {}, statusmsg: r.statusmsg ? `${r.statusmsg} (${note})` : note };
}

/** Replies ordered by sender (`--sort`); arrival order otherwise. */
export function sortReplies(result: RpcResult): RpcResult {
  const replies = [...result.replies].sort((a, b) =>
    a.sender < b.sender ? -1 : a.sender > b.sender ? 1 : 0,
  );
  return { ...result, replies };
}

function replyRecord(action: string, r: RpcReply): Record<string, unknown> {
  return {
    sender: r.sender,
    action,
    statuscode: r.statuscode,
    statusmsg: r.statusmsg,
    data: r.data,
    time_utc: r.time.toISOString(),
  };
}

/** `--jsonl`: one reply per line, the same record `--json` lists; `--dm results` reads it back. */
export function renderJsonl(result: RpcResult): string {
  let s = "";
  for (const r of result.replies) {
    let line: string;
    try {
      line = JSON.stringify(replyRecord(result.action, r));
    } catch (err) {
      if (!(err instanceof RangeError)) throw err;
      line = JSON.stringify(replyRecord(result.action, printableReply(r)));
    }
    s += line + "\n";
  }
  return s;
}

/** `--senders`: identities of the nodes that replied, one a line. */
export function renderSenders(result: RpcResult): string {
  return result.replies.map((r) => `${r.sender}\n`).join("");
}

function cell(v: unknown): string {
  if (v === undefined || v === null) return "";
  let s: string;
  try {
    s = typeof v === "string" ? v : JSON.stringify(v);
  } catch (err) {
    // only data built outside Client.request can be too deep to print
    if (!(err instanceof RangeError)) throw err;
    s = "(not shown: nested too deep)";
  }
  // Table cells stay on one line and readable in width.
  const flat = s.replace(/\s+/g, " ");
  return flat.length > 60 ? flat.slice(0, 57) + "..." : flat;
}

/** `--table`: one row per reply: sender, status, then the action's outputs in DDL order. */
export function renderTable(result: RpcResult, ddl: AgentDDL | undefined): string {
  const action = ddl ? findAction(ddl, result.action) : undefined;
  const declared = action ? Object.keys(action.output) : [];
  const present = new Set<string>();
  for (const r of result.replies) for (const k of Object.keys(r.data)) present.add(k);
  const extra = [...present].filter((k) => !declared.includes(k)).sort();
  const keys = [...declared.filter((k) => present.has(k)), ...extra];
  const header = ["Sender", "Status", ...keys.map((k) => action?.output[k]?.display_as || k)];
  const rows = result.replies.map((r) => [
    r.sender,
    r.statuscode === StatusCode.OK ? "OK" : r.statusmsg || `code ${r.statuscode}`,
    ...keys.map((k) => cell(r.data[k])),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] as string).length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] as number)).join(" | ")} |`;
  const rule = `+${widths.map((w) => "-".repeat(w + 2)).join("+")}+`;
  return [rule, line(header), rule, ...rows.map(line), rule].join("\n") + "\n";
}
