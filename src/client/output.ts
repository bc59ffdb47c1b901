import { findAction, type AgentDDL } from "../ddl/index.js";
import { StatusCode } from "../protocol/index.js";
import type { RpcReply, RpcResult } from "./types.js";

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
  for (const r of result.replies) s += JSON.stringify(replyRecord(result.action, r)) + "\n";
  return s;
}

/** `--senders`: identities of the nodes that replied, one a line. */
export function renderSenders(result: RpcResult): string {
  return result.replies.map((r) => `${r.sender}\n`).join("");
}

function cell(v: unknown): string {
  if (v === undefined || v === null) return "";
  const s = typeof v === "string" ? v : JSON.stringify(v);
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
