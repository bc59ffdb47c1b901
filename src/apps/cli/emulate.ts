import { dirname, join } from "node:path";
import type { Command } from "commander";
import { SingleBar } from "cli-progress";
import { Emulator } from "../emulator/index.js";
import { guarded } from "./errors.js";
import { intArg } from "./flags.js";
import { plural } from "./render/index.js";

const count = (flag: string, min: number) => intArg(flag, { min, expected: "a positive integer" });

/** `chorus emulate`: a virtual fleet of N nodes until interrupted. */
export function register(program: Command): void {
  program
    .command("emulate")
    .description("Run N virtual fleet nodes (real node pipelines on shared connections) against a broker")
    .requiredOption("--config <file>", "emulator config (emulator.conf from chorus setup dev)")
    .option("--nodes <n>", "number of virtual nodes", count("--nodes", 1), 100)
    .option("--connections <n>", "broker connections to spread replies over", count("--connections", 1))
    .option(
      "--workers <n>",
      "worker-thread shards (0 = in-process; default one per core at 2000+ nodes)",
      count("--workers", 0),
    )
    .option(
      "--provisioning [token]",
      "start the nodes unprovisioned, for a provisioner to enroll (token: provisioning.jwt, default beside --config)",
    )
    .option(
      "--machines <dir>",
      "every node runs the machines of DIR (a machine's directory or a store of them)",
    )
    .option(
      "--scout-checks <n>",
      "every node runs N built-in Scout checks (check_1..N)",
      count("--scout-checks", 1),
    )
    .option(
      "--scout-fail-every <k>",
      "the Scout checks of every K-th node go CRITICAL (fact scout_fault=true)",
      count("--scout-fail-every", 1),
    )
    .option(
      "--check-interval <duration>",
      "how often the built-in Scout checks run (Go duration, default 1m)",
    )
    .action(
      guarded(
        "emulate",
        async (o: {
          config: string;
          nodes: number;
          connections?: number;
          workers?: number;
          provisioning?: string | boolean;
          machines?: string;
          scoutChecks?: number;
          scoutFailEvery?: number;
          checkInterval?: string;
        }) => {
          const { nodes, workers } = o;
          const tokenFile =
            typeof o.provisioning === "string"
              ? o.provisioning
              : o.provisioning
                ? join(dirname(o.config), "provisioning.jwt")
                : undefined;
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
            ...(o.connections && { connections: o.connections }),
            ...(workers !== undefined && { workers }),
            ...(tokenFile !== undefined && { provisioning: { tokenFile } }),
            ...((o.machines !== undefined || o.scoutChecks !== undefined) && {
              machines: {
                ...(o.machines !== undefined && { directory: o.machines }),
                ...(o.scoutChecks !== undefined && { scoutChecks: o.scoutChecks }),
                ...(o.scoutFailEvery !== undefined && { failEvery: o.scoutFailEvery }),
                ...(o.checkInterval !== undefined && { checkInterval: o.checkInterval }),
              },
            }),
            onProgress: (done) => bar?.update(done),
          });
          await em.start();
          bar?.stop();
          process.stdout.write(
            tokenFile !== undefined
              ? `emulating ${plural(em.size, "node")} in provisioning mode, waiting for a provisioner; Ctrl-C to stop\n`
              : `emulating ${plural(em.size, "node")}; Ctrl-C to stop\n`,
          );
          await new Promise<void>((resolve) => {
            process.once("SIGINT", resolve);
            process.once("SIGTERM", resolve);
          });
          await em.stop();
        },
      ),
    );
}
