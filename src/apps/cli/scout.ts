import type { Command } from "commander";
import type { Client, RequestOptions, RpcResult } from "../../client/index.js";
import {
  addConfigOption,
  addDiscoveryOptions,
  addFilterOptions,
  targetingFromFlags,
  withClient,
  type DiscoveryFlags,
} from "./common.js";
import { guarded } from "./errors.js";
import { secondsArg } from "./flags.js";
import { exitCodeFor, interruptedNote, nothingMatched, plural } from "./render/index.js";

export type ScoutAction = "trigger" | "maintenance" | "resume";

export interface ScoutFlags extends DiscoveryFlags {
  /** ms */
  timeout?: number;
  json?: boolean;
}

/** One check on one node, as `scout#checks` reports it. */
export interface ScoutCheckRow {
  node: string;
  check: string;
  state: string;
  /** the last plugin output (nagios watcher's status.output) */
  output: string;
  /** unix seconds of the last check, 0 if never */
  checkTime: number;
  /** past results, oldest first: OK, WARNING, CRITICAL, UNKNOWN */
  history: string[];
}

/** A node that answered but could not list or act on its checks. */
export interface ScoutNodeError {
  node: string;
  message: string;
}

const STATE_NAMES = ["OK", "WARNING", "CRITICAL", "UNKNOWN"] as const;
const asString = (v: unknown): string => (typeof v === "string" ? v : v === undefined ? "" : String(v));
const asRecord = (v: unknown): Record<string, unknown> =>
  v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : {};

/** The rows of a `scout#checks` result, by node then check; failed replies apart. */
export function scoutRows(result: RpcResult): { rows: ScoutCheckRow[]; errors: ScoutNodeError[] } {
  const rows: ScoutCheckRow[] = [];
  const errors: ScoutNodeError[] = [];
  for (const r of result.replies) {
    if (r.statuscode !== 0) {
      errors.push({ node: r.sender, message: r.statusmsg });
      continue;
    }
    const checks = Array.isArray(r.data.checks) ? r.data.checks : [];
    for (const c of checks) {
      const check = asRecord(c);
      const status = asRecord(check.status);
      const history = Array.isArray(status.history) ? status.history : [];
      rows.push({
        node: r.sender,
        check: asString(check.name),
        state: asString(check.state),
        output: asString(status.output).split("\n")[0] ?? "",
        checkTime: typeof status.check_time === "number" ? status.check_time : 0,
        history: history.map((h) => {
          const code = asRecord(h).status;
          return typeof code === "number" ? (STATE_NAMES[code] ?? "UNKNOWN") : "UNKNOWN";
        }),
      });
    }
  }
  rows.sort((a, b) => a.node.localeCompare(b.node) || a.check.localeCompare(b.check));
  errors.sort((a, b) => a.node.localeCompare(b.node));
  return { rows, errors };
}

/** How many checks are in each state: OK, WARNING, CRITICAL, UNKNOWN first, then any other. */
export function stateCounts(rows: readonly ScoutCheckRow[]): [string, number][] {
  const counts = new Map<string, number>(STATE_NAMES.map((s) => [s, 0]));
  for (const r of rows) counts.set(r.state, (counts.get(r.state) ?? 0) + 1);
  return [...counts].filter(([s, n]) => n > 0 || (STATE_NAMES as readonly string[]).includes(s));
}

/** The node/check/state/output table, failed nodes, and a line of counts per state. */
export function renderScoutStatus(rows: readonly ScoutCheckRow[], errors: readonly ScoutNodeError[]): string {
  const head = { node: "NODE", check: "CHECK", state: "STATE" };
  const w = {
    node: Math.max(head.node.length, ...rows.map((r) => r.node.length)),
    check: Math.max(head.check.length, ...rows.map((r) => r.check.length)),
    state: Math.max(head.state.length, ...rows.map((r) => r.state.length)),
  };
  const line = (node: string, check: string, state: string, output: string) =>
    `${node.padEnd(w.node)}  ${check.padEnd(w.check)}  ${state.padEnd(w.state)}  ${output}`.trimEnd();
  const out: string[] = [];
  if (rows.length > 0) {
    out.push(line(head.node, head.check, head.state, "OUTPUT"));
    for (const r of rows) out.push(line(r.node, r.check, r.state, r.output));
    out.push("");
  }
  for (const e of errors) out.push(`${e.node}: ${e.message}`);
  if (errors.length > 0) out.push("");
  const nodes = new Set(rows.map((r) => r.node)).size;
  const counts = stateCounts(rows)
    .map(([s, n]) => `${s} ${n}`)
    .join(", ");
  out.push(`${plural(rows.length, "check")} on ${plural(nodes, "node")}: ${counts}`);
  return `${out.join("\n")}\n`;
}

/** What one node did for trigger, maintenance or resume. */
export interface ScoutActionRow {
  node: string;
  transitioned: string[];
  skipped: string[];
  failed: string[];
  /** the reply's status message when the action itself failed */
  error?: string;
}

const strings = (v: unknown): string[] => (Array.isArray(v) ? v.map(asString) : []);

export function scoutActionRows(result: RpcResult): ScoutActionRow[] {
  return result.replies
    .map((r) => ({
      node: r.sender,
      transitioned: strings(r.data.transitioned),
      skipped: strings(r.data.skipped),
      failed: strings(r.data.failed),
      ...(r.statuscode !== 0 && { error: r.statusmsg }),
    }))
    .sort((a, b) => a.node.localeCompare(b.node));
}

/** One line per node (transitioned/skipped/failed checks), then the totals. */
export function renderScoutAction(action: string, rows: readonly ScoutActionRow[]): string {
  const width = Math.max(0, ...rows.map((r) => r.node.length));
  const list = (xs: string[]) => (xs.length > 0 ? xs.join(",") : "-");
  const out = rows.map((r) =>
    r.error !== undefined
      ? `${r.node.padEnd(width)}  error: ${r.error}`
      : `${r.node.padEnd(width)}  transitioned: ${list(r.transitioned)}  skipped: ${list(r.skipped)}  failed: ${list(r.failed)}`,
  );
  const sum = (k: "transitioned" | "skipped" | "failed") => rows.reduce((n, r) => n + r[k].length, 0);
  const errors = rows.filter((r) => r.error !== undefined).length;
  out.push(
    "",
    `${action} on ${plural(rows.length, "node")}: ${sum("transitioned")} transitioned, ${sum("skipped")} skipped, ${sum("failed")} failed` +
      (errors > 0 ? `, ${plural(errors, "node")} in error` : ""),
  );
  return `${out.join("\n")}\n`;
}

function requestOptions(o: ScoutFlags, signal: AbortSignal): RequestOptions {
  return { signal, ...targetingFromFlags(o) };
}

type Write = (s: string) => void;
const stdout: Write = (s) => process.stdout.write(s);
const stderr: Write = (s) => process.stderr.write(s);

/** Exit 1 (nothing matched) and 130 (^C) are said on stderr, as req says them. */
function finish(command: string, result: RpcResult, exit: number, err: Write): number {
  if (exit === 1) err(nothingMatched(command));
  if (result.stats.interrupted)
    err(interruptedNote(command, `showing the ${plural(result.replies.length, "reply", "replies")} so far`));
  return exit;
}

/**
 * `scout status` with a client: prints the table (or JSON) and returns the exit code:
 * the request's (0 1 2 3 4 130, see req), and 2 when a node could not list its checks.
 */
export async function scoutStatus(
  client: Client,
  o: ScoutFlags,
  signal: AbortSignal,
  out: Write = stdout,
  err: Write = stderr,
): Promise<number> {
  const result = await client.request("scout", "checks", {}, requestOptions(o, signal));
  const { rows, errors } = scoutRows(result);
  out(o.json ? `${JSON.stringify({ checks: rows, errors }, null, 2)}\n` : renderScoutStatus(rows, errors));
  let exit = exitCodeFor(result.stats);
  if (exit === 0 && errors.length > 0) exit = 2;
  return finish("scout status", result, exit, err);
}

/**
 * `scout trigger|maintenance|resume` with a client: one line per node and the totals;
 * the exit code is the request's, and 2 when a node failed a check it was asked to act on.
 */
export async function scoutAction(
  client: Client,
  action: ScoutAction,
  checks: string[],
  o: ScoutFlags,
  signal: AbortSignal,
  out: Write = stdout,
  err: Write = stderr,
): Promise<number> {
  const result = await client.request("scout", action, { checks }, requestOptions(o, signal));
  const rows = scoutActionRows(result);
  out(o.json ? `${JSON.stringify(rows, null, 2)}\n` : renderScoutAction(action, rows));
  let exit = exitCodeFor(result.stats);
  if (exit === 0 && rows.some((r) => r.failed.length > 0 || r.error !== undefined)) exit = 2;
  return finish(`scout ${action}`, result, exit, err);
}

function withRequestFlags(cmd: Command): Command {
  addConfigOption(cmd);
  addFilterOptions(cmd);
  addDiscoveryOptions(cmd);
  return cmd
    .option("--timeout <seconds>", "how long to wait for replies", secondsArg("--timeout"))
    .option("--json", "print JSON");
}

/** `chorus scout status|trigger|maintenance|resume`: Scout checks across the fleet. */
export function register(program: Command): void {
  const scout = program
    .command("scout")
    .description("Scout monitoring checks: their states across the fleet, and control");
  withRequestFlags(
    scout
      .command("status")
      .description(
        "Show every Scout check of the matching nodes (node, check, state, output) and counts per state",
      ),
  ).action(
    guarded("scout status", async (o: ScoutFlags) => {
      await withClient(o.config, async (client, signal) => {
        process.exitCode = await scoutStatus(client, o, signal);
      });
    }),
  );
  const actions: [ScoutAction, string][] = [
    ["trigger", "Run checks now (all checks when none is named)"],
    ["maintenance", "Stop checks from running (maintenance state), all when none is named"],
    ["resume", "Resume checks in maintenance, all when none is named"],
  ];
  for (const [action, description] of actions) {
    withRequestFlags(scout.command(`${action} [checks...]`).description(description)).action(
      guarded(`scout ${action}`, async (checks: string[], o: ScoutFlags) => {
        await withClient(o.config, async (client, signal) => {
          process.exitCode = await scoutAction(client, action, checks, o, signal);
        });
      }),
    );
  }
}
