import type { Command } from "commander";
import { runDemo } from "../demo/index.js";
import { EmulatorError } from "../emulator/index.js";
import { guarded } from "./errors.js";

/** `chorus demo`: a throw-away secured fleet, a ping and an inventory, then stop. */
export function register(program: Command): void {
  program
    .command("demo")
    .description("Set up trust, start a broker and emulated nodes, run ping and rpcutil inventory, stop")
    .option("--nodes <n>", "emulated nodes", "50")
    .option("--keep", "keep the temp dir with the trust setup", false)
    .action(
      guarded("demo", async (o: { nodes: string; keep: boolean }) => {
        const nodes = Number(o.nodes);
        if (!Number.isInteger(nodes) || nodes < 1) {
          throw new EmulatorError("usage", `--nodes: "${o.nodes}" is not a positive integer`);
        }
        const r = await runDemo({ nodes, keep: o.keep });
        if (r.pinged !== nodes) process.exitCode = 2;
      }),
    );
}
