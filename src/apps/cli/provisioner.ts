import type { Command } from "commander";
import { ProvisionerService } from "../../services/provisioner/index.js";
import { runDaemon } from "./daemon.js";

/** `chorus provisioner run --config FILE`. */
export function register(program: Command): void {
  const provisioner = program
    .command("provisioner")
    .description(
      "Provisioning service: configures nodes that start in provisioning mode (Choria's provisioner)",
    );
  provisioner
    .command("run")
    .description("Find nodes in provisioning mode and provision them")
    .requiredOption("--config <file>", "provisioner configuration file (YAML or JSON)")
    .action(async (opts: { config: string }) => {
      await runDaemon("provisioner", () => ProvisionerService.fromFile(opts.config));
    });
}
