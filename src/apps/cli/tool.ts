import { readFileSync } from "node:fs";
import { userInfo } from "node:os";
import type { Command } from "commander";
import { ClientError } from "../../client/index.js";
import { loadConfig } from "../../core/config/index.js";
import { Spool, submissionSettings } from "../../services/submission/index.js";
import { resolveConfigPath } from "./common.js";
import { guarded } from "./errors.js";
import { intArg, secondsOption } from "./flags.js";

interface SubmitFlags {
  config?: string;
  reliable?: boolean;
  priority: number;
  /** ms */
  ttl: number;
  maxTries: number;
  sender?: string;
  sign?: boolean;
  header?: string[];
  json?: boolean;
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

function readPayload(source: string): Buffer {
  try {
    return source === "-" ? readFileSync(0) : readFileSync(source);
  } catch (err) {
    throw new ClientError(
      "usage",
      `cannot read ${source === "-" ? "stdin" : source}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}

/** `chorus tool ...`: node-side utilities. */
export function register(program: Command): void {
  const tool = program.command("tool").description("Node-side utilities");

  tool
    .command("submit")
    .description(
      "Put a message in this node's submission spool; the server publishes it to " +
        "<collective>.submission.in.SUBJECT (FILE or - for stdin)",
    )
    .argument("<subject>")
    .argument("<file>", "payload file, or - for stdin")
    .option(
      "--config <file>",
      "server config holding plugin.choria.submission.spool (default: $CHORUS_CONFIG, then ./chorus.conf)",
    )
    .option("--reliable", "retry until the stream acknowledges it (in order per priority)")
    // the spool checks the range (priority must be 0..4)
    .option("--priority <0-4>", "0 is sent first", intArg("--priority", { expected: "0..4" }), 4)
    .addOption(secondsOption("--ttl <seconds>", "drop the message if not sent within this long", 86_400))
    .option(
      "--max-tries <n>",
      "give up a reliable message after this many attempts",
      intArg("--max-tries"),
      100,
    )
    .option("--sender <name>", "Choria-Sender header (default: the user name)")
    .option("--sign", "have the server sign the payload with its key")
    .option("--header <name:value>", "extra header (repeatable)", collect)
    .option("--json", "JSON output")
    .action(
      guarded("tool submit", (subject: string, file: string, o: SubmitFlags) => {
        const { priority, maxTries } = o;
        const headers: Record<string, string> = {};
        for (const h of o.header ?? []) {
          const i = h.indexOf(":");
          if (i <= 0) throw new ClientError("usage", `--header: "${h}" is not name:value`);
          headers[h.slice(0, i).trim()] = h.slice(i + 1).trim();
        }
        const cfgPath = resolveConfigPath(o.config);
        const s = submissionSettings(loadConfig(cfgPath));
        if (!s.spool) {
          throw new ClientError(
            "usage",
            `plugin.choria.submission.spool is not set in ${cfgPath}: this node has no spool`,
          );
        }
        const spool = new Spool({
          dir: s.spool,
          identity: s.identity,
          collective: s.mainCollective,
          maxSpoolSize: s.maxSpoolSize,
          minFreeBytes: s.minFreeBytes,
        });
        const msg = spool.submit({
          subject,
          payload: readPayload(file),
          sender: o.sender ?? userInfo().username,
          reliable: o.reliable === true,
          priority,
          ttlMs: o.ttl,
          maxTries,
          sign: o.sign === true,
          headers,
        });
        process.stdout.write(
          o.json
            ? `${JSON.stringify({ id: msg.id, subject: spool.prefix + msg.subject, priority: msg.priority, reliable: msg.reliable })}\n`
            : `spooled ${msg.reliable ? "reliable" : "unreliable"} message ${msg.id} for ${spool.prefix}${msg.subject} at priority ${msg.priority}\n`,
        );
      }),
    );
}
