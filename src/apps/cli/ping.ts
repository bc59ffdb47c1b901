import type { Command } from "commander";
import { ClientError } from "../../client/index.js";
import {
  addConfigOption,
  addDiscoveryOptions,
  addFilterOptions,
  filterFromFlags,
  withClient,
  type DiscoveryFlags,
} from "./common.js";
import { guarded } from "./errors.js";
import { secondsArg } from "./flags.js";
import {
  INTERRUPTED_EXIT,
  interruptedNote,
  nothingMatched,
  plural,
  renderPing,
  renderPingGraph,
} from "./render/index.js";

interface PingFlags extends DiscoveryFlags {
  /** ms */
  timeout?: number;
  graph?: boolean;
}

/** `chorus ping`: round-trip times of matching nodes via the discovery agent. */
export function register(program: Command): void {
  const cmd = program.command("ping").description("Ping matching nodes and show round-trip times");
  addConfigOption(cmd);
  addFilterOptions(cmd);
  addDiscoveryOptions(cmd);
  cmd
    .option(
      "--timeout <seconds>",
      "how long to wait for replies (default: the discovery timeout)",
      secondsArg("--timeout"),
    )
    .option("--graph", "show the latency distribution instead of one line per node")
    .action(
      guarded("ping", async (o: PingFlags) => {
        // A ping is a network round trip: file-based discovery has nothing to measure.
        if (
          (o.dm !== undefined && o.dm !== "broadcast" && o.dm !== "mc") ||
          o.nodes !== undefined ||
          o.do?.length
        ) {
          throw new ClientError("usage", "ping always uses broadcast discovery (no --dm, --do or --nodes)");
        }
        const filter = filterFromFlags(o);
        const timeoutMs = o.timeout ?? o.discoveryTimeout;
        await withClient(o.config, async (client, signal) => {
          const result = await client.ping({
            signal,
            filter,
            ...(timeoutMs !== undefined && { timeoutMs }),
            windowed: o.discoveryWindow === true,
          });
          process.stdout.write(o.graph ? renderPingGraph(result) : renderPing(result));
          const n = result.replies.length;
          if (signal.aborted) {
            process.stderr.write(
              interruptedNote("ping", `showing the ${plural(n, "reply", "replies")} received so far`),
            );
            process.exitCode = INTERRUPTED_EXIT;
          } else if (n === 0) {
            process.stderr.write(nothingMatched("ping"));
            process.exitCode = 1;
          } else process.exitCode = 0;
        });
      }),
    );
}
