import type { Command } from "commander";
import { ClientError } from "../../client/index.js";
import {
  addGovernor,
  evictGovernorEntry,
  governorEntries,
  governorInfo,
  listGovernors,
  publishGovernorEvent,
  resetGovernor,
  runGoverned,
  type GovernorInfo,
} from "../../services/streams/index.js";
import { addConfigOption, withClient } from "./common.js";
import { guarded } from "./errors.js";
import { intArg, secondsArg, secondsOption } from "./flags.js";

interface GovFlags {
  config?: string;
  json?: boolean;
}

const out = (s: string) => process.stdout.write(s.endsWith("\n") ? s : `${s}\n`);

/** ", 3/10 runs per 3600s" for governors with a period limit, "" otherwise. */
function periodText(i: GovernorInfo, sep = ", "): string {
  if (i.periodMs === undefined || i.periodLimit === undefined) return "";
  return `${sep}${i.periodUsed ?? 0}/${i.periodLimit} runs per ${i.periodMs / 1000}s`;
}

function sub(gov: Command, name: string, desc: string): Command {
  const c = gov.command(name).description(desc);
  addConfigOption(c);
  return c.option("--json", "JSON output");
}

/** `chorus governor ...`: distributed concurrency limits on Choria Streams. */
export function register(program: Command): void {
  const gov = program.command("governor").description("Network-wide concurrency governors");

  sub(gov, "add", "Create or update a governor")
    .argument("<name>")
    .argument(
      "<capacity>",
      "concurrent slots",
      intArg("capacity", { min: 1, expected: "a positive integer" }),
    )
    .argument("<expire>", "seconds after which a held slot is evicted", secondsArg("expire"))
    .option("--replicas <n>", "data replicas", intArg("--replicas", { min: 1 }), 1)
    .option("--period <seconds>", "length of the period for --period-limit", secondsArg("--period"))
    .option(
      "--period-limit <n>",
      "at most this many runs start per --period",
      intArg("--period-limit", { min: 1, expected: "a positive integer" }),
    )
    .action(
      guarded(
        "governor add",
        async (
          name: string,
          cap: number,
          expireMs: number,
          o: GovFlags & { replicas: number; period?: number; periodLimit?: number },
        ) => {
          if ((o.period === undefined) !== (o.periodLimit === undefined))
            throw new ClientError("usage", "--period and --period-limit go together");
          const { period: periodMs, periodLimit } = o;
          await withClient(o.config, async (client) => {
            const info = await addGovernor(await client.connect(), name, {
              capacity: cap,
              expireMs,
              replicas: o.replicas,
              collective: client.collective,
              ...(periodMs !== undefined && { periodMs }),
              ...(periodLimit !== undefined && { periodLimit }),
            });
            out(
              o.json
                ? JSON.stringify(info, null, 2)
                : `governor ${name}: capacity ${info.capacity}, expire ${info.expireMs / 1000}s${periodText(info)}, ${info.active} active`,
            );
          });
        },
      ),
    );

  sub(gov, "list", "List governors")
    .alias("ls")
    .action(
      guarded("governor list", async (o: GovFlags) => {
        await withClient(o.config, async (client) => {
          const nc = await client.connect();
          const names = await listGovernors(nc, client.collective);
          if (o.json) {
            out(JSON.stringify(await Promise.all(names.map((n) => governorInfo(nc, n))), null, 2));
            return;
          }
          if (names.length === 0) out("no governors");
          for (const n of names) {
            const i = await governorInfo(nc, n);
            out(`${n}\t${i.active}/${i.capacity} in use\texpire ${i.expireMs / 1000}s${periodText(i, "\t")}`);
          }
        });
      }),
    );

  sub(gov, "view", "Show a governor and who holds its slots")
    .argument("<name>")
    .action(
      guarded("governor view", async (name: string, o: GovFlags) => {
        await withClient(o.config, async (client) => {
          const nc = await client.connect();
          const info = await governorInfo(nc, name);
          const entries = await governorEntries(nc, name);
          if (o.json) {
            out(JSON.stringify({ ...info, entries }, null, 2));
            return;
          }
          out(
            `governor ${name}: ${info.active}/${info.capacity} in use, expire ${info.expireMs / 1000}s${periodText(info)}, subject ${info.subject}`,
          );
          for (const e of entries) out(`  ${e.seq}\t${e.holder}\t${e.time}`);
        });
      }),
    );

  sub(gov, "evict", "Free a slot by its sequence number")
    .argument("<name>")
    .argument("<seq>", "", intArg("", { min: 1, expected: "a slot number" }))
    .action(
      guarded("governor evict", async (name: string, seq: number, o: GovFlags) => {
        await withClient(o.config, async (client) => {
          const nc = await client.connect();
          const holder = await evictGovernorEntry(nc, name, seq);
          publishGovernorEvent(nc, client.identity, name, "eviction", seq);
          await nc.flush();
          out(
            o.json ? JSON.stringify({ name, seq, holder }) : `evicted ${holder} from slot ${seq} of ${name}`,
          );
        });
      }),
    );

  sub(gov, "reset", "Free every slot")
    .argument("<name>")
    .action(
      guarded("governor reset", async (name: string, o: GovFlags) => {
        await withClient(o.config, async (client) => {
          await resetGovernor(await client.connect(), name);
          out(o.json ? JSON.stringify({ name, reset: true }) : `reset governor ${name}`);
        });
      }),
    );

  const run = gov
    .command("run")
    .description("Run a command inside a governor slot: chorus governor run NAME -- COMMAND [ARGS...]")
    .argument("<name>")
    .argument("<command...>")
    .addOption(secondsOption("--max-wait <seconds>", "give up waiting for a slot after this long", 300))
    .addOption(secondsOption("--interval <seconds>", "first wait between tries while full", 0.25));
  addConfigOption(run);
  run.action(
    guarded(
      "governor run",
      async (name: string, command: string[], o: GovFlags & { maxWait: number; interval: number }) => {
        const [cmd, ...args] = command;
        if (!cmd) throw new ClientError("usage", "no command given: chorus governor run NAME -- COMMAND");
        await withClient(o.config, async (client, signal) => {
          process.exitCode = await runGoverned(await client.connect(), name, cmd, args, {
            collective: client.collective,
            identity: client.identity,
            timeoutMs: o.maxWait,
            intervalMs: o.interval,
            signal,
          });
        });
      },
    ),
  );
}
