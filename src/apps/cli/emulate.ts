import type { Command } from "commander";
import { SingleBar } from "cli-progress";
import { Emulator, EmulatorError } from "../emulator/index.js";
import { guarded } from "./errors.js";

function positiveInt(flag: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1)
    throw new EmulatorError("usage", `${flag}: "${v}" is not a positive integer`);
  return n;
}

/** `chorus emulate`: a virtual fleet of N nodes until interrupted. */
export function register(program: Command): void {
  program
    .command("emulate")
    .description("Run N virtual fleet nodes (real node pipelines on shared connections) against a broker")
    .requiredOption("--config <file>", "emulator config (emulator.conf from chorus setup dev)")
    .option("--nodes <n>", "number of virtual nodes", "100")
    .option("--connections <n>", "broker connections to spread replies over")
    .option("--workers <n>", "worker-thread shards (0 = in-process; default one per core at 2000+ nodes)")
    .action(
      guarded(
        "emulate",
        async (o: { config: string; nodes: string; connections?: string; workers?: string }) => {
          const nodes = positiveInt("--nodes", o.nodes);
          const workers =
            o.workers === undefined ? undefined : o.workers === "0" ? 0 : positiveInt("--workers", o.workers);
          const bar = process.stderr.isTTY
            ? new SingleBar({
                stream: process.stderr,
                format: "creating nodes {bar} {value}/{total}",
                clearOnComplete: true,
              })
            : undefined;
          bar?.start(nodes, 0);
          const em = Emulator.fromConfigFile(o.config, {
            nodes,
            ...(o.connections && { connections: positiveInt("--connections", o.connections) }),
            ...(workers !== undefined && { workers }),
            onProgress: (done) => bar?.update(done),
          });
          await em.start();
          bar?.stop();
          process.stdout.write(`emulating ${em.size} nodes; Ctrl-C to stop\n`);
          await new Promise<void>((resolve) => {
            process.once("SIGINT", resolve);
            process.once("SIGTERM", resolve);
          });
          await em.stop();
        },
      ),
    );
}
