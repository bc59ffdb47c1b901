import type { Command } from "commander";
import { ChorusError } from "../../core/protocol/errors.js";
import { ProvisionerService } from "../../services/provisioner/index.js";

async function run(configFile: string): Promise<void> {
  let service: ProvisionerService;
  try {
    service = ProvisionerService.fromFile(configFile);
    await service.start();
  } catch (err) {
    if (err instanceof ChorusError || (err instanceof Error && "code" in err)) {
      process.stderr.write(`chorus provisioner: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  await new Promise<void>((resolve) => {
    let stopping = false;
    const shutdown = (signal: NodeJS.Signals) => {
      if (stopping) return;
      stopping = true;
      service.log.info({ signal }, "shutting down");
      void service.stop().then(() => resolve());
    };
    process.once("SIGTERM", shutdown);
    process.once("SIGINT", shutdown);
  });
}

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
      await run(opts.config);
    });
}
