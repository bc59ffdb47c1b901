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
import { secondsArg } from "./flags.js";
import { factReport, renderFactReport } from "./render/index.js";

interface FactsFlags extends DiscoveryFlags {
  json?: boolean;
  verbose?: boolean;
  /** ms */
  timeout?: number;
}

/** `chorus facts FACT`: how one fact's values are distributed over matching nodes (rpcutil get_fact). */
export function register(program: Command): void {
  const cmd = program
    .command("facts <fact>")
    .description("Show the distribution of a fact's values across the fleet");
  addConfigOption(cmd);
  addFilterOptions(cmd);
  addDiscoveryOptions(cmd);
  cmd
    .option("-v, --verbose", "list the nodes holding each value")
    .option("--json", "print the report as JSON")
    .option("--timeout <seconds>", "how long to wait for replies", secondsArg("--timeout"))
    .action(
      guarded("facts", async (fact: string, o: FactsFlags) => {
        const filter = filterFromFlags(o);
        const { method, options } = discoveryFromFlags(o);
        const timeoutMs = o.timeout;
        const discoveryTimeoutMs = o.discoveryTimeout;
        await withClient(o.config, async (client, signal) => {
          const result = await client.request(
            "rpcutil",
            "get_fact",
            { fact },
            {
              signal,
              filter,
              ...(method !== undefined && { discoveryMethod: method }),
              discoveryOptions: options,
              discoveryWindowed: o.discoveryWindow === true,
              ...(timeoutMs !== undefined && { timeoutMs }),
              ...(discoveryTimeoutMs !== undefined && { discoveryTimeoutMs }),
            },
          );
          const report = factReport(fact, result.replies);
          process.stdout.write(
            o.json ? JSON.stringify(report, null, 2) + "\n" : renderFactReport(report, o.verbose),
          );
          process.exitCode = result.stats.discovered === 0 ? 1 : result.stats.responses === 0 ? 3 : 0;
        });
      }),
    );
}
