import { writeFileSync } from "node:fs";
import { Option, type Command } from "commander";
import {
  ClientError,
  DISPLAY_MODES,
  compileReplyFilter,
  computeSummaries,
  exitCodeFor,
  renderJson,
  renderJsonl,
  renderSenders,
  renderTable,
  renderText,
  replyProgress,
  sortReplies,
  type DisplayMode,
  type RequestOptions,
  type RpcResult,
} from "../../client/index.js";
import { coerceInputs, findAction } from "../../core/ddl/index.js";
import {
  addConfigOption,
  addDiscoveryOptions,
  addFilterOptions,
  discoveryFromFlags,
  filterFromFlags,
  parseKeyValues,
  parseSeconds,
  withClient,
  type DiscoveryFlags,
} from "./common.js";
import { guarded } from "./errors.js";

interface ReqFlags extends DiscoveryFlags {
  broadcast?: boolean;
  service?: boolean;
  timeout?: string;
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
  batch?: string;
  batchSleep?: string;
  limit?: string;
  limitMethod?: "first" | "random";
  limitSeed?: string;
  canary?: string;
  replyTo?: string;
  ttl?: string;
  retry?: string;
}

function positiveInt(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1)
    throw new ClientError("usage", `${flag}: "${v}" is not a positive whole number`);
  return n;
}

function seconds0(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n) || n < 0) {
    throw new ClientError("usage", `${flag}: "${v}" is not a number of seconds`);
  }
  return Math.round(n * 1000);
}

/** Flags to request options; everything is checked here, before anything is published. */
export function requestOptionsFromFlags(o: ReqFlags): RequestOptions {
  const modes = [o.broadcast && "--broadcast", o.service && "--service"].filter(Boolean);
  if (modes.length > 1) throw new ClientError("usage", "--broadcast and --service exclude each other");
  const outputs = [
    o.json && "--json",
    o.jsonl && "--jsonl",
    o.table && "--table",
    o.senders && "--senders",
  ].filter(Boolean);
  if (outputs.length > 1)
    throw new ClientError("usage", `choose one output format (got ${outputs.join(" ")})`);
  if (o.limitSeed !== undefined && o.limitMethod !== "random") {
    throw new ClientError("usage", "--limit-seed needs --limit-method random");
  }
  if (o.limitMethod !== undefined && o.limit === undefined)
    throw new ClientError("usage", "--limit-method needs --limit");
  if (o.batchSleep !== undefined && o.batch === undefined)
    throw new ClientError("usage", "--batch-sleep needs --batch");
  const { method, options } = discoveryFromFlags(o);
  const timeoutMs = parseSeconds("--timeout", o.timeout);
  const discoveryTimeoutMs = parseSeconds("--discovery-timeout", o.discoveryTimeout);
  const batchSize = positiveInt("--batch", o.batch);
  const canary = positiveInt("--canary", o.canary);
  const retries = o.retry === undefined ? undefined : Number(o.retry);
  if (retries !== undefined && (!Number.isInteger(retries) || retries < 0)) {
    throw new ClientError("usage", `--retry: "${o.retry}" is not a whole number`);
  }
  const ttlS = positiveInt("--ttl", o.ttl);
  const batchSleepMs = seconds0("--batch-sleep", o.batchSleep);
  return {
    mode: o.broadcast ? "broadcast" : o.service ? "service" : "direct",
    filter: filterFromFlags(o),
    ...(method !== undefined && { discoveryMethod: method }),
    discoveryOptions: options,
    ...(timeoutMs !== undefined && { timeoutMs }),
    ...(discoveryTimeoutMs !== undefined && { discoveryTimeoutMs }),
    discoveryWindowed: o.discoveryWindow === true,
    verifyReplySignatures: o.verifyReplies === true,
    ...(o.limit !== undefined && { limit: o.limit }),
    ...(o.limitMethod !== undefined && { limitMethod: o.limitMethod }),
    ...(o.limitSeed !== undefined && { limitSeed: o.limitSeed }),
    ...(batchSize !== undefined && { batchSize }),
    ...(batchSleepMs !== undefined && { batchSleepMs }),
    ...(canary !== undefined && { canary }),
    ...(o.replyTo !== undefined && { replyTo: o.replyTo }),
    ...(ttlS !== undefined && { ttlS }),
    ...(retries !== undefined && { retries }),
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
    .option("--broadcast", "send one message carrying the filter instead of one per node")
    .option("--service", "call a service agent: one message to its queue, one reply")
    .option(
      "--timeout <seconds>",
      "how long to wait for replies (default: discovery timeout + agent timeout)",
    )
    .option("--batch <n>", "address N nodes at a time, waiting for their replies (direct mode)")
    .option("--batch-sleep <seconds>", "pause between batches (default 1)")
    .option("--limit <n|n%>", "address at most N (or N%) of the discovered nodes")
    .addOption(
      new Option("--limit-method <method>", "which nodes --limit keeps (default first)").choices([
        "first",
        "random",
      ]),
    )
    .option("--limit-seed <seed>", "seed for --limit-method random: the same seed picks the same nodes")
    .option("--canary <n>", "send to N nodes first; go on only if they all answer OK")
    .option("--reply-to <subject>", "publish with this reply subject, print the request id, do not wait")
    .option("--ttl <seconds>", "how long the request stays valid (default 60)")
    .option("--retry <n>", "re-send up to N times to nodes that did not answer")
    .option("--verify-replies", "verify each reply's signature and sender token")
    .option("--json", "print Choria's JSON result format (with DDL summaries)")
    .option("--jsonl", "print one JSON reply per line")
    .option("--table", "print the replies as a table")
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
    .action(
      guarded("req", async (agent: string, action: string, inputs: string[], o: ReqFlags) => {
        const raw = parseKeyValues(inputs);
        const ropts = requestOptionsFromFlags(o);
        const keep = o.filterReplies !== undefined ? compileReplyFilter(o.filterReplies) : undefined;
        await withClient(o.config, async (client, signal) => {
          const ddl = client.ddl(agent);
          const data = coerceInputs(ddl, action, raw);
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
          const summaries = computeSummaries(findAction(ddl, action), result.replies);
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
          process.exitCode = exit;
        });
      }),
    );
}
