import type { Command } from "commander";
import { renderPing } from "../client/index.js";
import {
  addConfigOption,
  addDiscoveryOptions,
  addFilterOptions,
  filterFromFlags,
  parseSeconds,
  withClient,
  type DiscoveryFlags,
} from "./common.js";
import { guarded } from "./errors.js";

interface PingFlags extends DiscoveryFlags {
  timeout?: string;
}

/** `chorus ping`: round-trip times of matching nodes via the discovery agent. */
export function register(program: Command): void {
  const cmd = program.command("ping").description("Ping matching nodes and show round-trip times");
  addConfigOption(cmd);
  addFilterOptions(cmd);
  addDiscoveryOptions(cmd);
  cmd.option("--timeout <seconds>", "how long to wait for replies (default: the discovery timeout)").action(
    guarded("ping", async (o: PingFlags) => {
      const filter = filterFromFlags(o);
      const timeoutMs =
        parseSeconds("--timeout", o.timeout) ?? parseSeconds("--discovery-timeout", o.discoveryTimeout);
      await withClient(o.config, async (client, signal) => {
        const result = await client.ping({
          signal,
          filter,
          ...(timeoutMs !== undefined && { timeoutMs }),
          windowed: o.discoveryWindow === true,
        });
        process.stdout.write(renderPing(result));
        process.exitCode = result.replies.length > 0 ? 0 : 1;
      });
    }),
  );
}
