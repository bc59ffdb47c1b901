import type { Command } from "commander";
import { Server } from "../../server/index.js";

async function run(configFile: string): Promise<void> {
  let server: Server;
  try {
    server = await Server.fromConfigFile(configFile, { waitOnFirstConnect: true });
    await server.start();
  } catch (err) {
    // Config, credential and connection problems: one line, no stack trace.
    process.stderr.write(`chorus server: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
  await new Promise<void>((resolve) => {
    let stopping = false;
    const shutdown = (signal: NodeJS.Signals) => {
      if (stopping) return;
      stopping = true;
      server.log.info({ signal }, "shutting down");
      server.stop().then(resolve, (err: Error) => {
        server.log.error({ err: err.message }, "unclean shutdown");
        resolve();
      });
    };
    process.once("SIGTERM", shutdown);
    process.once("SIGINT", shutdown);
  });
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
