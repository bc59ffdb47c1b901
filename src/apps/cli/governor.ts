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
import { addConfigOption, parseSeconds, withClient } from "./common.js";
import { guarded } from "./errors.js";

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
    .argument("<capacity>", "concurrent slots")
    .argument("<expire>", "seconds after which a held slot is evicted")
    .option("--replicas <n>", "data replicas", "1")
    .option("--period <seconds>", "length of the period for --period-limit")
    .option("--period-limit <n>", "at most this many runs start per --period")
    .action(
      guarded(
        "governor add",
        async (
          name: string,
          capacity: string,
          expire: string,
          o: GovFlags & { replicas: string; period?: string; periodLimit?: string },
        ) => {
          const cap = Number(capacity);
          if (!Number.isInteger(cap) || cap < 1)
            throw new ClientError("usage", `capacity "${capacity}" is not a positive integer`);
          const expireMs = parseSeconds("expire", expire)!;
          if ((o.period === undefined) !== (o.periodLimit === undefined))
            throw new ClientError("usage", "--period and --period-limit go together");
          const periodMs = parseSeconds("--period", o.period);
          const periodLimit = o.periodLimit === undefined ? undefined : Number(o.periodLimit);
          if (periodLimit !== undefined && (!Number.isInteger(periodLimit) || periodLimit < 1))
            throw new ClientError("usage", `--period-limit "${o.periodLimit}" is not a positive integer`);
          await withClient(o.config, async (client) => {
            const info = await addGovernor(await client.connect(), name, {
              capacity: cap,
              expireMs,
              replicas: Number(o.replicas),
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
    .argument("<seq>")
    .action(
      guarded("governor evict", async (name: string, seqArg: string, o: GovFlags) => {
        const seq = Number(seqArg);
        if (!Number.isInteger(seq) || seq < 1)
          throw new ClientError("usage", `"${seqArg}" is not a slot number`);
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
    .option("--max-wait <seconds>", "give up waiting for a slot after this long", "300")
    .option("--interval <seconds>", "first wait between tries while full", "0.25");
  addConfigOption(run);
  run.action(
    guarded(
      "governor run",
      async (name: string, command: string[], o: GovFlags & { maxWait: string; interval: string }) => {
        const [cmd, ...args] = command;
        if (!cmd) throw new ClientError("usage", "no command given: chorus governor run NAME -- COMMAND");
        await withClient(o.config, async (client, signal) => {
          process.exitCode = await runGoverned(await client.connect(), name, cmd, args, {
            collective: client.collective,
            identity: client.identity,
            timeoutMs: parseSeconds("--max-wait", o.maxWait)!,
            intervalMs: parseSeconds("--interval", o.interval)!,
            signal,
          });
        });
      },
    ),
  );
}
