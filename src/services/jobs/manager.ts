import { join, resolve } from "node:path";
import { pino } from "pino";
import { nullSink, spoolSink } from "./events.js";
import { loadExecution, runExecution, type AgentInvoker } from "./runner.js";
import { executionIdOf, FILES, writeFileAtomic } from "./status.js";

/**
 * The body of a job manager process: `<command> <execution dir>`. Runs the execution
 * to its end, logging JSON lines to the execution's manager.log; SIGTERM or SIGINT
 * stop it (steps are killed and "stopped" recorded). Returns the exit code: 0 when
 * the execution succeeded, 1 when it did not, 2 for bad arguments.
 */
export async function managerMain(argv: string[], o: { invoker?: AgentInvoker }): Promise<number> {
  const arg = argv[0];
  let dir: string;
  try {
    if (arg === undefined || argv.length !== 1) throw new Error("usage: job manager <execution dir>");
    dir = resolve(arg);
    executionIdOf(dir);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 2;
  }
  // sync: the last lines must reach the file before the process exits
  const logger = pino(
    { base: { pid: process.pid } },
    pino.destination({ dest: join(dir, FILES.log), append: true, sync: true }),
  );
  const ac = new AbortController();
  const stop = (sig: string) => {
    logger.info({ signal: sig }, "stop requested");
    ac.abort();
  };
  const onTerm = () => stop("SIGTERM");
  const onInt = () => stop("SIGINT");
  process.on("SIGTERM", onTerm);
  process.on("SIGINT", onInt);
  try {
    const { meta } = loadExecution(dir);
    writeFileAtomic(dir, FILES.pid, String(process.pid));
    const sink = meta.spool_dir
      ? spoolSink({ spoolDir: meta.spool_dir, identity: meta.identity, collective: meta.collective, logger })
      : nullSink;
    const status = await runExecution(dir, {
      sink,
      ...(o.invoker ? { invoker: o.invoker } : {}),
      signal: ac.signal,
      logger,
    });
    return status.state === "succeeded" ? 0 : 1;
  } catch (err) {
    logger.error({ err: (err as Error).message }, "job manager failed");
    return 1;
  } finally {
    process.off("SIGTERM", onTerm);
    process.off("SIGINT", onInt);
  }
}
