import { ChorusError } from "../../core/protocol/errors.js";

/**
 * The flags that set library options, for errors that name an option: the library
 * says "limit needs direct mode (not broadcast or service)", the CLI "--limit needs
 * direct mode (not --broadcast or --service)". Keys are what the client's errors name:
 * a RequestOptions or DiscoverOptions property, `property=value`, or `filter.<list>`.
 */
export const OPTION_FLAGS: Readonly<Record<string, string>> = {
  limit: "--limit",
  limitMethod: "--limit-method",
  limitSeed: "--limit-seed",
  batchSize: "--batch",
  batchSleepMs: "--batch-sleep",
  canary: "--canary",
  replyTo: "--reply-to",
  retries: "--retry",
  ttlS: "--ttl",
  "mode=broadcast": "--broadcast",
  "mode=service": "--service",
  discoveryMethod: "--dm",
  method: "--dm",
  discoveryOptions: "--do",
  options: "--do",
  // the file a file-list method reads, which --nodes FILE also names
  "discoveryOptions.file": "--do file=PATH (or --nodes PATH)",
  "options.file": "--do file=PATH (or --nodes PATH)",
  "filter.identity": "-I",
  "filter.compound": "-S",
};

/**
 * An error's message in the CLI's words. The client's errors that name options say
 * them by flag; they are recognised by shape, so that this file (loaded by every
 * command, daemons included) does not load the client.
 */
export function cliMessage(err: ChorusError): string {
  // the remote signer needs a fresh login token; the library says what, the CLI says how
  if (err.code === "token_expired" || err.code === "no_token") return `${err.message}: run chorus login`;
  const describe = (err as { describe?: unknown }).describe;
  if (typeof describe !== "function") return err.message;
  return (describe as (name: (option: string) => string | undefined) => string).call(err, (o) =>
    Object.hasOwn(OPTION_FLAGS, o) ? OPTION_FLAGS[o] : undefined,
  );
}

/**
 * Wraps a command action so expected failures print one line naming the cause and
 * exit non-zero, instead of a stack trace.
 */
export function guarded<A extends unknown[]>(
  command: string,
  fn: (...args: A) => Promise<void> | void,
): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (err) {
      if (err instanceof ChorusError) {
        process.stderr.write(`chorus ${command}: ${cliMessage(err)}\n`);
        process.exit(1);
      }
      throw err;
    }
  };
}
