import type { Command } from "commander";
import { runDemo } from "../demo/index.js";
import { guarded } from "./errors.js";
import { intArg } from "./flags.js";
import { renderPing, renderStats, renderText } from "./render/index.js";

/** `chorus demo`: a throw-away secured fleet, a ping and an inventory, then stop. */
export function register(program: Command): void {
  program
    .command("demo")
    .description("Set up trust, start a broker and emulated nodes, run ping and rpcutil inventory, stop")
    .option(
      "--nodes <n>",
      "emulated nodes",
      intArg("--nodes", { min: 1, expected: "a positive integer" }),
      50,
    )
    .option("--keep", "keep the temp dir with the trust setup", false)
    .option("--aaa", "also run the AAA service: log in, and send a request it signs and audits", false)
    .action(
      guarded("demo", async (o: { nodes: number; keep: boolean; aaa: boolean }) => {
        const { nodes } = o;
        const render = { ping: renderPing, text: renderText, stats: renderStats };
        const r = await runDemo({ nodes, keep: o.keep, aaa: o.aaa, render });
        if (r.pinged !== nodes || (r.aaa && r.aaa.answered !== nodes)) process.exitCode = 2;
      }),
    );
}
