import type { Command } from "commander";
import { serveConfigFile } from "../../server/index.js";

async function run(configFile: string): Promise<void> {
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once("SIGTERM", onSignal);
  process.once("SIGINT", onSignal);
  let outcome: Awaited<ReturnType<typeof serveConfigFile>>;
  try {
    // restarts (a node just provisioned, or sent back to provisioning) happen inside the loop
    outcome = await serveConfigFile(configFile, {
      signal: stop.signal,
      overrides: { waitOnFirstConnect: true },
    });
  } catch (err) {
    // Config, credential and connection problems: one line, no stack trace.
    process.stderr.write(`chorus server: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
  process.off("SIGTERM", onSignal);
  process.off("SIGINT", onSignal);
  // the fleet asked this node to go away (choria_provision#shutdown): exit 0 as Choria does
  if (outcome === "shutdown") process.exit(0);
}

/** `chorus server run --config FILE`: run a Choria-compatible node with the built-in agents. */
export function register(program: Command): void {
  const server = program.command("server").description("Run a Choria-compatible server (node)");
  server
    .command("run")
    .description("Connect to the broker and serve the built-in and configured agents")
    .requiredOption("--config <file>", "server configuration file")
    .action(async (opts: { config: string }) => {
      await run(opts.config);
    });
}
