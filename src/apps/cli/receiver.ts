import type { Command } from "commander";
import { ReceiverService } from "../../services/receiver/index.js";
import { runDaemon } from "./daemon.js";

/** `chorus receiver run --config FILE`. */
export function register(program: Command): void {
  const receiver = program
    .command("receiver")
    .description(
      "Reply receiver: stores asynchronous replies in SQLite or PostgreSQL and serves their progress",
    );
  receiver
    .command("run")
    .description("Store async replies and request records exactly once; serve the HTTP API")
    .requiredOption("--config <file>", "receiver configuration file (YAML or JSON)")
    .action(async (opts: { config: string }) => {
      await runDaemon("receiver", () => ReceiverService.fromFile(opts.config));
    });
}
