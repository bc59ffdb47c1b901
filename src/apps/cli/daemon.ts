import { ChorusError } from "../../core/protocol/errors.js";

/** What `chorus <service> run` needs of a service (AaaService, ProvisionerService). */
export interface Daemon {
  readonly log: { info(fields: object, msg: string): void; warn(fields: object, msg: string): void };
  start(): Promise<void>;
  stop(): Promise<void>;
  /** SIGHUP: re-read the configuration and apply what can be applied live */
  reload?(): Promise<void>;
}

/**
 * Starts a service and runs it until SIGTERM or SIGINT. A config or start-up problem is
 * one line on stderr and exit 1, not a stack trace.
 */
export async function runDaemon(name: string, make: () => Daemon): Promise<void> {
  let service: Daemon | undefined;
  let ready = false;
  let stopping = false;
  // Node's default for SIGHUP is to exit: from the start on, a daemon reloads, or says it
  // cannot (or is still starting) and runs on
  process.on("SIGHUP", () => {
    if (stopping) return;
    const s = service;
    if (!s || !ready) {
      s?.log.warn({ signal: "SIGHUP" }, "still starting: SIGHUP ignored");
      return;
    }
    if (!s.reload) {
      s.log.warn({ signal: "SIGHUP" }, `chorus ${name} does not reload its configuration: restart it`);
      return;
    }
    s.reload().catch((err: unknown) =>
      s.log.warn({ err: (err as Error).message }, "reload failed; the old configuration stays"),
    );
  });
  try {
    service = make();
    await service.start();
    ready = true;
  } catch (err) {
    if (err instanceof ChorusError || (err instanceof Error && "code" in err)) {
      process.stderr.write(`chorus ${name}: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  const running = service;
  await new Promise<void>((resolve) => {
    const shutdown = (signal: NodeJS.Signals) => {
      if (stopping) return;
      stopping = true;
      running.log.info({ signal }, "shutting down");
      void running.stop().then(() => resolve());
    };
    process.once("SIGTERM", shutdown);
    process.once("SIGINT", shutdown);
  });
}
