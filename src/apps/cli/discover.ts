import type { Command } from "commander";
import {
  addConfigOption,
  addDiscoveryOptions,
  addFilterOptions,
  discoveryFromFlags,
  filterFromFlags,
  withClient,
  type DiscoveryFlags,
} from "./common.js";
import { guarded } from "./errors.js";
import {
  INTERRUPTED_EXIT,
  interruptedNote,
  nothingMatched,
  plural,
  renderDiscovered,
} from "./render/index.js";

interface DiscoverFlags extends DiscoveryFlags {
  json?: boolean;
}

/** `chorus discover`: list the identities matching a filter. */
export function register(program: Command): void {
  const cmd = program.command("discover").alias("find").description("List the nodes matching a filter");
  addConfigOption(cmd);
  addFilterOptions(cmd);
  addDiscoveryOptions(cmd);
  cmd.option("--json", "print a JSON array").action(
    guarded("discover", async (o: DiscoverFlags) => {
      const filter = filterFromFlags(o);
      const { method, options } = discoveryFromFlags(o);
      const timeoutMs = o.discoveryTimeout;
      await withClient(o.config, async (client, signal) => {
        const ids = await client.discover({
          signal,
          filter,
          ...(method !== undefined && { method }),
          options,
          ...(timeoutMs !== undefined && { timeoutMs }),
          windowed: o.discoveryWindow === true,
        });
        process.stdout.write(renderDiscovered(ids, o.json === true));
        if (signal.aborted) {
          process.stderr.write(
            interruptedNote("discover", `showing the ${plural(ids.length, "node")} found so far`),
          );
          process.exitCode = INTERRUPTED_EXIT;
        } else if (ids.length === 0) {
          // Choria's convention: 1 when discovery found nothing.
          process.stderr.write(nothingMatched("discover"));
          process.exitCode = 1;
        }
      });
    }),
  );
}
