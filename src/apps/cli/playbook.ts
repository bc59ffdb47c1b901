import { existsSync, writeFileSync } from "node:fs";
import { extname } from "node:path";
import type { Command } from "commander";
import { ClientError } from "../../client/index.js";
import {
  inputFlags,
  loadPlaybook,
  renderReportYaml,
  runPlaybook,
  type InputFlag,
  type Playbook,
  type PlaybookEvent,
  type PlaybookReport,
} from "../../services/playbooks/index.js";
import { addConfigOption, collect, withClient } from "./common.js";
import { guarded } from "./errors.js";
import { secondsArg } from "./flags.js";
import { INTERRUPTED_EXIT, interruptedNote } from "./render/index.js";
import { playbookEventLine, renderPlaybookShow, renderPlaybookSummary, taskBar } from "./render/playbook.js";

interface RunFlags {
  config?: string;
  input?: string[];
  noop?: boolean;
  report?: string;
  json?: boolean;
  /** ms */
  lockWait?: number;
}

/** The run command's own long options: an input of one of these names is given with --input only. */
const RUN_OPTIONS: ReadonlySet<string> = new Set([
  "config",
  "input",
  "noop",
  "report",
  "json",
  "lock-wait",
  "help",
]);

const PLAYBOOK_EXT = new Set([".yaml", ".yml", ".ts", ".mts", ".js", ".mjs"]);

const usage = (msg: string): ClientError => new ClientError("usage", msg);

/**
 * The book's file among what commander left unparsed. Documented as the first argument;
 * when input flags come first (`run --version 1.2 book.yaml`) their values cannot be told
 * from the file before the book is read, so the first existing playbook file is taken.
 */
export function splitFileArg(args: string[]): { file: string; rest: string[] } {
  const first = args[0];
  if (first !== undefined && !first.startsWith("-")) return { file: first, rest: args.slice(1) };
  const i = args.findIndex((a) => !a.startsWith("-") && PLAYBOOK_EXT.has(extname(a)) && existsSync(a));
  if (i < 0) throw usage("give the playbook file first: chorus playbook run FILE [--INPUT VALUE]...");
  return { file: args[i] as string, rest: [...args.slice(0, i), ...args.slice(i + 1)] };
}

const BOOLEAN_WORDS = /^(true|false|yes|no|on|off|t|f|y|n|1|0)$/i;

/**
 * `--name value`, `--name=value` and (for a boolean input) a bare `--name` for each input;
 * an array input given twice collects both (`a,b`). Unknown flags are usage errors that
 * list the inputs.
 */
export function parseInputArgs(args: string[], flags: InputFlag[]): Record<string, string> {
  const byName = new Map(flags.map((f) => [f.name, f]));
  const known = () => flags.map((f) => f.flag).join(", ") || "none";
  const out: Record<string, string> = {};
  for (let i = 0; i < args.length; i++) {
    const tok = args[i] as string;
    if (!tok.startsWith("--") || tok === "--") {
      throw usage(`unexpected argument "${tok}" (inputs are given as --NAME VALUE or --input NAME=VALUE)`);
    }
    const eq = tok.indexOf("=");
    const name = eq < 0 ? tok.slice(2) : tok.slice(2, eq);
    const flag = byName.get(name);
    if (!flag) throw usage(`unknown option --${name} (the playbook's inputs: ${known()})`);
    let value: string;
    if (eq >= 0) value = tok.slice(eq + 1);
    else if (flag.type === "boolean") {
      const next = args[i + 1];
      if (next !== undefined && BOOLEAN_WORDS.test(next)) {
        value = next;
        i++;
      } else value = "true";
    } else {
      const next = args[i + 1];
      if (next === undefined || (next.startsWith("--") && next.length > 2))
        throw usage(`--${name} needs a value`);
      value = next;
      i++;
    }
    const prev = out[name];
    out[name] = prev !== undefined && flag.type === "array" ? `${prev},${value}` : value;
  }
  return out;
}

/** `--input k=v` (repeatable) merged with the input flags; the flags win. */
function givenInputs(o: RunFlags, rest: string[], flags: InputFlag[]): Record<string, string> {
  const given: Record<string, string> = {};
  for (const kv of o.input ?? []) {
    const eq = kv.indexOf("=");
    if (eq <= 0) throw usage(`--input "${kv}" is not of the form name=value`);
    given[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return { ...given, ...parseInputArgs(rest, flags) };
}

/** Prints the live view: one line per event, a progress bar for rpc batches on a terminal. */
function liveView(
  out: NodeJS.WritableStream,
  noop: boolean,
): { onEvent: (e: PlaybookEvent) => void; stop: () => void } {
  const bar = taskBar(process.stderr);
  return {
    onEvent(e) {
      if (e.kind === "task_progress") {
        bar.update(e.done, e.total);
        return;
      }
      const line = playbookEventLine(e, { noop });
      if (line === undefined) return;
      bar.stop();
      out.write(line + "\n");
    },
    stop: () => bar.stop(),
  };
}

async function runBook(file: string, o: RunFlags, cmd: Command): Promise<void> {
  const { file: bookFile, rest } = splitFileArg([file, ...cmd.args.slice(1)]);
  const pb = await loadPlaybook(bookFile);
  const inputs = givenInputs(o, rest, inputFlags(pb));
  // with --json stdout is the report alone; the live view goes to stderr
  const view = liveView(o.json ? process.stderr : process.stdout, o.noop === true);
  let report: PlaybookReport | undefined;
  let interrupted = false;
  try {
    await withClient(o.config, async (client, signal) => {
      try {
        report = await runPlaybook(pb, {
          client,
          inputs,
          noop: o.noop === true,
          onEvent: view.onEvent,
          signal,
          // a lock names its holder by the caller id the broker knows it by
          locks: { owner: client.callerId, ...(o.lockWait !== undefined && { waitMs: o.lockWait }) },
        });
      } catch (err) {
        // ^C while waiting for a lock (or opening stores): nothing ran, so there is no report
        if (!signal.aborted) throw err;
      }
      interrupted = signal.aborted;
    });
  } finally {
    view.stop();
  }
  if (report === undefined) {
    process.stderr.write(interruptedNote("playbook run", "before any task ran (no report)"));
    process.exitCode = INTERRUPTED_EXIT;
    return;
  }
  const r = report;
  process.stdout.write(
    o.json ? JSON.stringify(r, null, 2) + "\n" : renderPlaybookSummary(r, { noop: o.noop === true }),
  );
  // after the summary: a report that cannot be written must not hide how the run went
  if (o.report) writeReport(o.report, r);
  if (interrupted) {
    process.stderr.write(
      interruptedNote("playbook run", `the book stopped${o.report ? `; the report is in ${o.report}` : ""}`),
    );
    process.exitCode = INTERRUPTED_EXIT;
    return;
  }
  process.exitCode = r.report.success ? 0 : 1;
}

function writeReport(path: string, r: PlaybookReport): void {
  try {
    writeFileSync(path, renderReportYaml(r));
  } catch (err) {
    throw usage(`--report: cannot write ${path}: ${(err as Error).message}`);
  }
}

async function showBook(file: string, o: { json?: boolean }): Promise<void> {
  const pb: Playbook = await loadPlaybook(file);
  process.stdout.write(
    o.json ? JSON.stringify(pb, null, 2) + "\n" : renderPlaybookShow(pb, inputFlags(pb), RUN_OPTIONS),
  );
}

/** `chorus playbook run|show`: multi-step orchestration from a YAML or TypeScript playbook. */
export function register(program: Command): void {
  // Input flags are the book's own (`--version 1.2`): without positional options the
  // program would take `--version` (and any of its options) for itself wherever it stands.
  program.enablePositionalOptions();
  const playbook = program
    .command("playbook")
    .description("Run multi-step playbooks (YAML or TypeScript) over node sets, with locks and data");
  addConfigOption(
    playbook
      .command("run")
      .argument("<file>", "the playbook: .yaml/.yml, or a .ts/.js module whose default export is one")
      .description(
        "Run a playbook; each of its inputs is also a flag (--NAME VALUE); exit 0 when it succeeds, 1 when it fails",
      ),
  )
    .option("--input <name=value>", "an input's value (repeatable); works for every input", collect)
    .option("--noop", "discover the node sets and show each task as it would run; run nothing, take no locks")
    .option("--report <file>", "write Choria's YAML report of the run to FILE")
    .option("--json", "print the report as JSON instead of the summary (the live view goes to stderr)")
    .option(
      "--lock-wait <seconds>",
      "wait this long for a lock another run holds (default: fail at once)",
      secondsArg("--lock-wait"),
    )
    .allowUnknownOption()
    .allowExcessArguments()
    .addHelpText(
      "after",
      "\nThe playbook's inputs are flags too (--NAME VALUE, --NAME=VALUE, a bare --NAME for a boolean);\n`chorus playbook show FILE` lists them. Exit: 0 the book succeeded, 1 it failed or could not\nstart (bad input, a held lock, a usage error), 130 interrupted (^C: the report is still written).",
    )
    .action(guarded("playbook run", runBook));
  playbook
    .command("show")
    .argument("<file>", "the playbook")
    .description("Show a playbook: inputs (as flags), node sets, data stores, locks and tasks as written")
    .option("--json", "print the compiled playbook (the representation both forms compile to)")
    .action(guarded("playbook show", showBook));
}
