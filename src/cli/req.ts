import { Option, type Command } from "commander";
import {
  DISPLAY_MODES,
  exitCodeFor,
  renderJson,
  renderText,
  replyProgress,
  type DisplayMode,
} from "../client/index.js";
import { coerceInputs } from "../ddl/index.js";
import {
  addConfigOption,
  addDiscoveryOptions,
  addFilterOptions,
  filterFromFlags,
  parseKeyValues,
  parseSeconds,
  readNodesFile,
  withClient,
  type DiscoveryFlags,
} from "./common.js";
import { guarded } from "./errors.js";

interface ReqFlags extends DiscoveryFlags {
  broadcast?: boolean;
  nodes?: string;
  timeout?: string;
  verifyReplies?: boolean;
  json?: boolean;
  progress: boolean;
  display?: DisplayMode;
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
    .option("--nodes <file>", "address the identities in FILE (one per line) instead of discovering")
    .option(
      "--timeout <seconds>",
      "how long to wait for replies (default: discovery timeout + agent timeout)",
    )
    .option("--verify-replies", "verify each reply's signature and sender token")
    .option("--json", "print Choria's JSON result format")
    .option("--no-progress", "no progress bar (it is only shown on a terminal anyway)")
    .addOption(
      new Option("--display <mode>", "which replies to show (default: as the DDL says)").choices(
        DISPLAY_MODES.filter((m) => m !== "ddl"),
      ),
    )
    .action(
      guarded("req", async (agent: string, action: string, inputs: string[], o: ReqFlags) => {
        const raw = parseKeyValues(inputs);
        const filter = filterFromFlags(o);
        const nodes = o.nodes !== undefined ? readNodesFile(o.nodes) : undefined;
        const timeoutMs = parseSeconds("--timeout", o.timeout);
        const discoveryTimeoutMs = parseSeconds("--discovery-timeout", o.discoveryTimeout);
        await withClient(o.config, async (client, signal) => {
          const ddl = client.ddl(agent);
          const data = coerceInputs(ddl, action, raw);
          const progress = replyProgress(process.stderr, o.progress && !o.json);
          const result = await client
            .request(agent, action, data, {
              signal,
              onPublish: (targets) => progress.start(targets.length),
              onReply: () => progress.tick(),
              mode: o.broadcast ? "broadcast" : "direct",
              filter,
              ...(nodes !== undefined && { nodes }),
              ...(timeoutMs !== undefined && { timeoutMs }),
              ...(discoveryTimeoutMs !== undefined && { discoveryTimeoutMs }),
              discoveryWindowed: o.discoveryWindow === true,
              verifyReplySignatures: o.verifyReplies === true,
            })
            .finally(() => progress.stop());
          process.stdout.write(o.json ? renderJson(result) : renderText(result, ddl, o.display ?? "ddl"));
          process.exitCode = exitCodeFor(result.stats);
        });
      }),
    );
}
