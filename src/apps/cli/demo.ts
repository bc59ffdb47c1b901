import type { Command } from "commander";
import { runDemo, runOverlaysDemo } from "../demo/index.js";
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
    .option("--stay", "keep the fleet and the web console running until Ctrl-C", false)
    .option(
      "--overlays",
      "the Large Scale Design instead: two cells and a centre, fleets enrolled by provisioning, AAA logins, a job in both cells followed from the centre",
      false,
    )
    .option(
      "--cells <n>",
      "cells with --overlays",
      intArg("--cells", { min: 1, max: 9, expected: "a number of cells from 1 to 9" }),
      2,
    )
    .action(
      guarded(
        "demo",
        async (o: {
          nodes: number;
          keep: boolean;
          aaa: boolean;
          stay: boolean;
          overlays: boolean;
          cells: number;
        }) => {
          const { nodes } = o;
          if (o.overlays) {
            // --nodes is per cell here; 50 per cell enrols in about the same time as the plain demo
            const r = await runOverlaysDemo({ nodesPerCell: nodes, cells: o.cells, keep: o.keep });
            const short = r.cells.some((c) => c.answered !== c.enrolled || c.stored !== c.enrolled);
            const lost = r.counts.some((c) => c.streams.some((s) => s.atCentre !== s.inCell));
            if (short || lost) process.exitCode = 2;
            return;
          }
          const render = { ping: renderPing, text: renderText, stats: renderStats };
          const stay = () =>
            new Promise<void>((resolve) => {
              process.once("SIGINT", () => resolve());
              process.once("SIGTERM", () => resolve());
            });
          const r = await runDemo({ nodes, keep: o.keep, aaa: o.aaa, render, ...(o.stay && { stay }) });
          if (r.pinged !== nodes || (r.aaa && r.aaa.answered !== nodes)) process.exitCode = 2;
        },
      ),
    );
}
