import { writeFileSync } from "node:fs";
import { Option, type Command } from "commander";
import {
  ClientError,
  compileReplyFilter,
  type Client,
  type RequestOptions,
  type RpcResult,
} from "../../client/index.js";
import { coerceInputs, findAction, type AgentDDL } from "../../core/ddl/index.js";
import {
  addConfigOption,
  addDiscoveryOptions,
  addFilterOptions,
  targetingFromFlags,
  parseKeyValues,
  withClient,
  type DiscoveryFlags,
} from "./common.js";
import { guarded } from "./errors.js";
import { intArg, secondsArg } from "./flags.js";
import {
  DISPLAY_MODES,
  computeSummaries,
  exitCodeFor,
  interruptedNote,
  nothingMatched,
  plural,
  renderJson,
  renderJsonl,
  renderSenders,
  renderTable,
  renderText,
  replyProgress,
  INTERRUPTED_EXIT,
  sortReplies,
  type DisplayMode,
} from "./render/index.js";

interface ReqFlags extends DiscoveryFlags {
  broadcast?: boolean;
  service?: boolean;
  /** ms */
  timeout?: number;
  verifyReplies?: boolean;
  json?: boolean;
  jsonl?: boolean;
  table?: boolean;
  senders?: boolean;
  sort?: boolean;
  output?: string;
  filterReplies?: string;
  progress: boolean;
  display?: DisplayMode;
  batch?: number;
  /** ms */
  batchSleep?: number;
  limit?: string;
  limitMethod?: "first" | "random";
  limitSeed?: string;
  canary?: number;
  replyTo?: string;
  ttl?: number;
  retry?: number;
  async?: boolean;
}

/**
 * Flags to request options: commander parsed the numbers and refused exclusive flags
 * (one mode flag, one output format; see register()); here are the rules that only
 * concern flags (a flag that means nothing without another). What the options mean
 * is checked by the client (checkRequestOptions) before anything is published; its
 * errors name options, which guarded() prints as the flags that set them.
 */
export function requestOptionsFromFlags(o: ReqFlags): RequestOptions {
  if (o.limitSeed !== undefined && o.limitMethod !== "random") {
    throw new ClientError("usage", "--limit-seed needs --limit-method random");
  }
  if (o.limitMethod !== undefined && o.limit === undefined)
    throw new ClientError("usage", "--limit-method needs --limit");
  if (o.batchSleep !== undefined && o.batch === undefined)
    throw new ClientError("usage", "--batch-sleep needs --batch");
  return {
    mode: o.broadcast ? "broadcast" : o.service ? "service" : "direct",
    ...targetingFromFlags(o),
    verifyReplySignatures: o.verifyReplies === true,
    ...(o.limit !== undefined && { limit: o.limit }),
    ...(o.limitMethod !== undefined && { limitMethod: o.limitMethod }),
    ...(o.limitSeed !== undefined && { limitSeed: o.limitSeed }),
    ...(o.batch !== undefined && { batchSize: o.batch }),
    ...(o.batchSleep !== undefined && { batchSleepMs: o.batchSleep }),
    ...(o.canary !== undefined && { canary: o.canary }),
    ...(o.replyTo !== undefined && { replyTo: o.replyTo }),
    ...(o.ttl !== undefined && { ttlS: o.ttl }),
    ...(o.retry !== undefined && { retries: o.retry }),
  };
}

/** Only the replies the filter keeps; statistics still count every reply. */
function keepReplies(
  result: RpcResult,
  keep: ((r: RpcResult["replies"][number]) => boolean) | undefined,
): RpcResult {
  if (!keep) return result;
  return { ...result, replies: result.replies.filter(keep) };
}

/** The replies the filter kept, in the output format the flags chose (and saved with -o). */
function printResult(result: RpcResult, ddl: AgentDDL, o: ReqFlags): void {
  const summaries = computeSummaries(findAction(ddl, result.action), result.replies);
  if (o.output !== undefined) {
    try {
      writeFileSync(o.output, renderJson(result, summaries));
    } catch (err) {
      throw new ClientError("usage", `-o: cannot write ${o.output}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }
  let text: string;
  if (o.json) text = renderJson(result, summaries);
  else if (o.jsonl) text = renderJsonl(result);
  else if (o.table) text = renderTable(result, ddl);
  else if (o.senders) text = renderSenders(result);
  else text = renderText(result, ddl, o.display ?? "ddl", summaries);
  process.stdout.write(text);
}

/**
 * `--async`: records and sends the request, prints its id (stdout, for scripts) and how
 * to follow it (stderr). The client refuses the options that need waiting for replies.
 */
async function runAsync(
  client: Client,
  agent: string,
  action: string,
  data: Record<string, unknown>,
  ropts: RequestOptions,
  o: ReqFlags,
  signal: AbortSignal,
): Promise<void> {
  const r = await client.requestAsync(agent, action, data, { ...ropts, signal }).catch((err: unknown) => {
    if (err instanceof ClientError && err.code === "no_replies_stream")
      throw new ClientError(err.code, `${err.message} (chorus receiver run --config FILE)`, { cause: err });
    throw err;
  });
  if (!r.sent) {
    if (signal.aborted) {
      process.stderr.write(interruptedNote("req", "nothing was sent"));
      process.exitCode = INTERRUPTED_EXIT;
    } else {
      process.stderr.write(nothingMatched("req"));
      process.exitCode = 1;
    }
    return;
  }
  process.stdout.write(
    o.json
      ? JSON.stringify({ requestid: r.requestId, reply_to: r.replyTo, discovered: r.discovered }) + "\n"
      : `${r.requestId}\n`,
  );
  process.stderr.write(
    `sent to ${plural(r.discovered, "node")}; follow the replies with: chorus job watch ${r.requestId}\n`,
  );
}

/** Checks flags and inputs, sends the request (with a progress bar on a terminal) and prints the result. */
async function runReq(agent: string, action: string, inputs: string[], o: ReqFlags): Promise<void> {
  const raw = parseKeyValues(inputs);
  const ropts = requestOptionsFromFlags(o);
  const keep = o.filterReplies !== undefined ? compileReplyFilter(o.filterReplies) : undefined;
  await withClient(o.config, async (client, signal) => {
    const ddl = client.ddl(agent);
    const data = coerceInputs(ddl, action, raw);
    if (o.async) return runAsync(client, agent, action, data, ropts, o, signal);
    const quiet = o.json || o.jsonl || o.table || o.senders || o.replyTo !== undefined;
    const progress = replyProgress(process.stderr, o.progress && !quiet);
    let result = await client
      .request(agent, action, data, {
        ...ropts,
        signal,
        onPublish: (targets) => progress.start(targets.length),
        onReply: () => progress.tick(),
      })
      .finally(() => progress.stop());
    if (o.replyTo !== undefined) {
      process.stdout.write(
        o.json
          ? JSON.stringify({
              requestid: result.stats.requestid,
              reply_to: o.replyTo,
              discovered: result.stats.discovered,
            }) + "\n"
          : `${result.stats.requestid}\n`,
      );
      process.exitCode = result.stats.discovered === 0 && ropts.mode !== "service" ? 1 : 0;
      return;
    }
    const exit = exitCodeFor(result.stats);
    result = keepReplies(result, keep);
    if (o.sort) result = sortReplies(result);
    printResult(result, ddl, o);
    // Exit 1 is "discovery found nothing": say so the way discover and ping do.
    if (exit === 1) process.stderr.write(nothingMatched("req"));
    // The text statistics say it; other formats would leave only the exit code.
    if (result.stats.interrupted && (o.json || o.jsonl || o.table || o.senders)) {
      process.stderr.write(
        interruptedNote(
          "req",
          `showing the replies so far; the request was not sent to ${plural(result.stats.skipped?.length ?? 0, "node")}`,
        ),
      );
    }
    process.exitCode = exit;
  });
}

/** `chorus req AGENT ACTION key=value...`: an RPC request to matching nodes. */
export function register(program: Command): void {
  const cmd = program
    .command("req <agent> <action> [inputs...]")
    .alias("rpc")
    .description("Invoke an agent action on matching nodes");
  addConfigOption(cmd);
  addFilterOptions(cmd);
  addDiscoveryOptions(cmd);
  cmd
    .addOption(
      new Option("--broadcast", "send one message carrying the filter instead of one per node").conflicts(
        "service",
      ),
    )
    .option("--service", "call a service agent: one message to its queue, one reply")
    .option(
      "--timeout <seconds>",
      "how long to wait for replies (default: discovery timeout + agent timeout)",
      secondsArg("--timeout"),
    )
    .option(
      "--batch <n>",
      "address N nodes at a time, waiting for their replies (direct mode)",
      intArg("--batch", { min: 1 }),
    )
    .option(
      "--batch-sleep <seconds>",
      "pause between batches (default 1)",
      secondsArg("--batch-sleep", { zero: true }),
    )
    .option("--limit <n|n%>", "address at most N (or N%) of the discovered nodes")
    .addOption(
      new Option("--limit-method <method>", "which nodes --limit keeps (default first)").choices([
        "first",
        "random",
      ]),
    )
    .option("--limit-seed <seed>", "seed for --limit-method random: the same seed picks the same nodes")
    .option(
      "--canary <n>",
      "send to N nodes first; go on only if they all answer OK",
      intArg("--canary", { min: 1 }),
    )
    .option("--reply-to <subject>", "publish with this reply subject, print the request id, do not wait")
    .addOption(
      new Option(
        "--async",
        "record the request for a receiver, send it, print its id and do not wait (see chorus job)",
      ).conflicts(["timeout", "jsonl", "table", "senders", "sort", "output", "filterReplies", "display"]),
    )
    .option("--ttl <seconds>", "how long the request stays valid (default 60)", intArg("--ttl", { min: 1 }))
    .option(
      "--retry <n>",
      "re-send up to N times to nodes that did not answer",
      intArg("--retry", { min: 0 }),
    )
    .option("--verify-replies", "verify each reply's signature and sender token")
    // one output format at most
    .addOption(
      new Option("--json", "print Choria's JSON result format (with DDL summaries)").conflicts([
        "jsonl",
        "table",
        "senders",
      ]),
    )
    .addOption(new Option("--jsonl", "print one JSON reply per line").conflicts(["table", "senders"]))
    .addOption(new Option("--table", "print the replies as a table").conflicts("senders"))
    .option("--senders", "print only the identities that replied")
    .option("--sort", "order replies by sender")
    .option("-o, --output <file>", "also save the JSON result to FILE")
    .option(
      "--filter-replies <expr>",
      "show only replies matching EXPR, e.g. \"ok() && data('value') == 'db'\"",
    )
    .option("--no-progress", "no progress bar (it is only shown on a terminal anyway)")
    .addOption(
      new Option("--display <mode>", "which replies to show (default: as the DDL says)").choices(
        DISPLAY_MODES.filter((m) => m !== "ddl"),
      ),
    )
    .action(guarded("req", runReq));
}
