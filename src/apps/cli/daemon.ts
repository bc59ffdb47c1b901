import { ChorusError } from "../../core/protocol/errors.js";

/** What `chorus <service> run` needs of a service (AaaService, ProvisionerService). */
export interface Daemon {
  readonly log: { info(fields: object, msg: string): void };
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts a service and runs it until SIGTERM or SIGINT. A config or start-up problem is
 * one line on stderr and exit 1, not a stack trace.
 */
export async function runDaemon(name: string, make: () => Daemon): Promise<void> {
  let service: Daemon;
  try {
    service = make();
    await service.start();
  } catch (err) {
    if (err instanceof ChorusError || (err instanceof Error && "code" in err)) {
      process.stderr.write(`chorus ${name}: ${err.message}\n`);
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
