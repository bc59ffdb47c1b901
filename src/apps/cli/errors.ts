import { ChorusError } from "../../core/protocol/errors.js";

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
        process.stderr.write(`chorus ${command}: ${err.message}\n`);
        process.exit(1);
      }
      throw err;
    }
  };
}
