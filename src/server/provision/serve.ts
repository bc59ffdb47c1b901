import { Server, type ServerOptions } from "../server.js";

/** How a serveConfigFile loop ended: stopped by its signal, or a shutdown asked for by the fleet. */
export type ServeOutcome = "stopped" | "shutdown";

export interface ServeOptions {
  /** applied to every Server built from the file */
  overrides?: Partial<ServerOptions>;
  /** aborting stops the running server and ends the loop */
  signal?: AbortSignal;
  /** each server once started (tests and embedders watch restarts here) */
  onStart?: (server: Server) => void;
}

function aborted(signal: AbortSignal | undefined): Promise<"aborted"> {
  return new Promise((resolve) => {
    if (!signal) return;
    if (signal.aborted) resolve("aborted");
    else signal.addEventListener("abort", () => resolve("aborted"), { once: true });
  });
}

/**
 * Runs a node from a config file until told to stop, building it again from the same
 * file whenever it asks for a restart: a node that has just been provisioned comes back
 * in normal mode with its new identity and credentials, one sent back to provisioning
 * mode comes back in it. Errors from building or starting a server are thrown.
 */
export async function serveConfigFile(configFile: string, o: ServeOptions = {}): Promise<ServeOutcome> {
  const stop = aborted(o.signal);
  for (;;) {
    if (o.signal?.aborted) return "stopped";
    const server = await Server.fromConfigFile(configFile, o.overrides ?? {});
    // a broker that never answers must not keep a stop request waiting
    const started = await Promise.race([server.start().then(() => "started" as const), stop]);
    if (started === "aborted") {
      await server.stop();
      return "stopped";
    }
    o.onStart?.(server);
    const why = await Promise.race([server.exitRequested(), stop]);
    if (why === "aborted") {
      server.log.info("shutting down");
      await server.stop();
      return "stopped";
    }
    server.log.info({ action: why.action, reason: why.reason }, `${why.action} requested`);
    await server.stop();
    if (why.action === "shutdown") return "shutdown";
  }
}
