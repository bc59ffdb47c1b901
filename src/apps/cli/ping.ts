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
import { renderPing, renderPingGraph } from "./render/index.js";

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
          process.exitCode = result.replies.length > 0 ? 0 : 1;
        });
      }),
    );
}
