import { Option, type Command } from "commander";
import {
  DEFAULT_RECEIVER_API,
  ReceiverApi,
  receiverApiFromConfig,
  receiverTokenFromConfig,
  type FollowResult,
  type RequestStatus,
} from "../../client/index.js";
import { addConfigOption, resolveConfigPath } from "./common.js";
import { guarded } from "./errors.js";
import { intArg, secondsArg } from "./flags.js";
import { countProgress, INTERRUPTED_EXIT, interruptedNote } from "./render/index.js";

interface ApiFlags {
  config?: string;
  api?: string;
  json?: boolean;
}

interface WatchFlags extends ApiFlags {
  /** ms */
  timeout?: number;
  progress: boolean;
}

interface ListFlags extends ApiFlags {
  caller?: string;
  agent?: string;
  limit?: number;
}

/**
 * The receiver API: --api, then $CHORUS_RECEIVER_API, then the client config's
 * plugin.chorus.receiver.api (a config that cannot be found is no error: the API
 * needs none), then the default.
 */
export function receiverApiUrl(o: ApiFlags, env: NodeJS.ProcessEnv = process.env): string {
  if (o.api) return o.api;
  if (env.CHORUS_RECEIVER_API) return env.CHORUS_RECEIVER_API;
  const path = clientConfigPath(o, env);
  return (path !== undefined ? receiverApiFromConfig(path) : undefined) ?? DEFAULT_RECEIVER_API;
}

/** The client config when one is named or found; only a named one that is missing is an error. */
function clientConfigPath(o: ApiFlags, env: NodeJS.ProcessEnv): string | undefined {
  try {
    return resolveConfigPath(o.config, env);
  } catch (err) {
    if (o.config !== undefined) throw err;
    return undefined;
  }
}

/** The receiver API's bearer token: CHORUS_RECEIVER_API_TOKEN, else the client config's token file. */
export function receiverApiToken(o: ApiFlags, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.CHORUS_RECEIVER_API_TOKEN) return env.CHORUS_RECEIVER_API_TOKEN;
  const path = clientConfigPath(o, env);
  return path !== undefined ? receiverTokenFromConfig(path) : undefined;
}

function api(o: ApiFlags): ReceiverApi {
  return new ReceiverApi({ url: receiverApiUrl(o), token: receiverApiToken(o) });
}

/**
 * The exit code of a request's status, as `req` would have exited: 0 every node
 * replied OK, 2 some failed or are missing, 3 none replied.
 */
export function statusExitCode(s: RequestStatus): number {
  if (s.replied === 0 && s.discovered > 0) return 3;
  if (s.failed > 0 || !s.complete) return 2;
  return 0;
}

function counts(s: RequestStatus): string {
  const extra = s.unexpected > 0 ? `, ${s.unexpected} unexpected` : "";
  return `${s.replied} / ${s.discovered} replied, ${s.ok} ok, ${s.failed} failed${extra}`;
}

function renderStatus(s: RequestStatus): string {
  const lines = [
    `Request:   ${s.request_id}${s.known ? "" : " (no record of the request yet: replies only)"}`,
    `Action:    ${s.agent}#${s.action}`,
    `Caller:    ${s.caller} (${s.collective})`,
    `Created:   ${s.created}`,
    `Replies:   ${counts(s)}`,
    `Complete:  ${s.complete ? "yes" : "no"}`,
  ];
  if (s.last_reply) lines.push(`Last reply: ${s.last_reply}`);
  return lines.join("\n") + "\n";
}

function renderList(rs: RequestStatus[]): string {
  if (rs.length === 0) return "No requests.\n";
  const header = ["Request", "Created", "Action", "Caller", "Replied", "OK", "Failed", "Complete"];
  const rows = rs.map((s) => [
    s.request_id,
    s.created,
    `${s.agent}#${s.action}`,
    s.caller,
    `${s.replied}/${s.discovered}`,
    String(s.ok),
    String(s.failed),
    s.complete ? "yes" : "no",
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
  return (
    [header, ...rows]
      .map((r) =>
        r
          .map((c, i) => c.padEnd(widths[i] as number))
          .join("  ")
          .trimEnd(),
      )
      .join("\n") + "\n"
  );
}

async function runStatus(id: string, o: ApiFlags): Promise<void> {
  const s = await api(o).status(id);
  process.stdout.write(o.json ? JSON.stringify(s, null, 2) + "\n" : renderStatus(s));
}

async function runList(o: ListFlags): Promise<void> {
  const rs = await api(o).list({
    ...(o.limit !== undefined && { limit: o.limit }),
    ...(o.caller !== undefined && { caller: o.caller }),
    ...(o.agent !== undefined && { agent: o.agent }),
  });
  process.stdout.write(o.json ? JSON.stringify({ requests: rs }, null, 2) + "\n" : renderList(rs));
}

/** Follows a request: a bar on a terminal, a line per change otherwise; the exit code says how it ended. */
async function runWatch(id: string, o: WatchFlags): Promise<void> {
  const receiver = api(o);
  const bar = countProgress(process.stderr, o.progress && !o.json);
  const lines = !o.json && !(o.progress && process.stderr.isTTY);
  const ac = new AbortController();
  const onInt = () => ac.abort();
  process.once("SIGINT", onInt);
  let r: FollowResult;
  try {
    r = await receiver.follow(id, {
      signal: ac.signal,
      ...(o.timeout !== undefined && { timeoutMs: o.timeout }),
      onStatus: (s) => {
        bar.update(s.replied, s.discovered, { ok: s.ok, failed: s.failed });
        if (lines) process.stdout.write(`${counts(s)}\n`);
      },
    });
  } finally {
    process.removeListener("SIGINT", onInt);
    bar.stop();
  }
  const s = r.status;
  if (o.json) process.stdout.write(JSON.stringify({ ...s, outcome: r.outcome }, null, 2) + "\n");
  else if (s)
    process.stdout.write(`${r.outcome === "complete" ? "Complete" : "Not complete"}: ${counts(s)}\n`);
  if (r.outcome === "interrupted") {
    process.stderr.write(interruptedNote("job watch", "the request goes on; watch it again any time"));
    process.exitCode = INTERRUPTED_EXIT;
    return;
  }
  if (r.outcome === "timeout") process.stderr.write(`chorus job watch: not complete after --timeout\n`);
  process.exitCode = statusExitCode(s as RequestStatus);
}

function addApiOptions(cmd: Command): Command {
  addConfigOption(cmd);
  return cmd
    .option(
      "--api <url>",
      `the receiver's HTTP API (default: $CHORUS_RECEIVER_API, the config's plugin.chorus.receiver.api, ${DEFAULT_RECEIVER_API})`,
    )
    .option("--json", "print JSON");
}

/** `chorus job status|watch|list`: asynchronous requests as a receiver stored their replies. */
export function register(program: Command): void {
  const job = program
    .command("job")
    .description("Follow asynchronous requests (req --async) through a receiver's API");
  addApiOptions(
    job.command("status <id>").description("Show how far an asynchronous request has got"),
  ).action(guarded("job status", runStatus));
  addApiOptions(
    job
      .command("watch <id>")
      .description(
        "Follow an asynchronous request until every node replied (exit 0 all OK, 2 some failed or missing)",
      ),
  )
    .option(
      "--timeout <seconds>",
      "give up after this long (exit 2, or 3 when nobody replied)",
      secondsArg("--timeout"),
    )
    .addOption(new Option("--no-progress", "no progress bar (it is only shown on a terminal anyway)"))
    .action(guarded("job watch", runWatch));
  addApiOptions(job.command("list").description("List asynchronous requests, newest first"))
    .option("--caller <callerid>", "only this caller's requests")
    .option("--agent <agent>", "only requests to this agent")
    .option("--limit <n>", "at most N requests (default 50)", intArg("--limit", { min: 1 }))
    .action(guarded("job list", runList));
}
