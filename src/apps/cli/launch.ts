import { CHORUS_VERSION } from "../../core/util/index.js";
import { setFlagsFromString } from "node:v8";
import { Command } from "commander";
import { FlagError } from "./flags.js";

/** What every command file exports: adds its command (and subcommands) to the program. */
export type Register = (program: Command) => void;

type CommandFile = () => Promise<{ register: Register }>;

const req: CommandFile = () => import("./req.js");
const discover: CommandFile = () => import("./discover.js");

/**
 * THE command table: top-level command (or alias) → its file, loaded on demand, in help
 * order. The lazy launcher loads only the file of the command being run; main.ts's
 * buildProgram() registers every file of this table, so a command added here is in
 * both. A long-running `chorus server run` must not carry the client, emulator, broker,
 * codegen, streams and progress-bar code of the other commands (two thirds of the
 * modules it used to load, never run); test/apps/cli/rss-lazy.test.ts checks that.
 */
export const COMMANDS: Readonly<Record<string, CommandFile>> = {
  setup: () => import("./setup.js"),
  jwt: () => import("./jwt.js"),
  broker: () => import("./broker.js"),
  server: () => import("./server.js"),
  req,
  rpc: req, // alias of req: the same file
  ping: () => import("./ping.js"),
  discover,
  find: discover, // Choria's alias of discover: the same file
  facts: () => import("./facts.js"),
  inventory: () => import("./inventory.js"),
  plugin: () => import("./plugin.js"),
  emulate: () => import("./emulate.js"),
  event: () => import("./event.js"),
  demo: () => import("./demo.js"),
  ui: () => import("./ui.js"),
  kv: () => import("./kv.js"),
  governor: () => import("./governor.js"),
  election: () => import("./election.js"),
  tool: () => import("./tool.js"),
  aaa: () => import("./aaa.js"),
  login: () => import("./login.js"),
  ca: () => import("./ca.js"),
  provisioner: () => import("./provisioner.js"),
  receiver: () => import("./receiver.js"),
  job: () => import("./job.js"),
  federation: () => import("./federation.js"),
  replicator: () => import("./replicator.js"),
  machine: () => import("./machine.js"),
  scout: () => import("./scout.js"),
  doctor: () => import("./doctor.js"),
  playbook: () => import("./playbook.js"),
};

/** `kv get` for the get subcommand of kv: how guarded() names a command in errors. */
function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c?.parent; c = c.parent) names.unshift(c.name());
  return names.join(" ");
}

/** The long (or short) flag of one of cmd's options, from the flags text commander quotes. */
function flagOf(cmd: Command, flags: string): string {
  const o = cmd.options.find((x) => x.flags === flags);
  return o?.long ?? o?.short ?? flags;
}

/**
 * A Command whose usage errors read like the rest of the CLI's. A value refused by a
 * flag parser (flags.ts, through commander's argParser) and flags that `.conflicts()`
 * print one line, `chorus <command>: <why>`, and exit 1, as guarded() does for errors
 * found later; commander's own errors (unknown option, missing argument, bad choice)
 * print the same one line with commander's wording.
 */
class ChorusCommand extends Command {
  override createCommand(name?: string): Command {
    return new ChorusCommand(name);
  }

  override error(message: string, opts?: { code?: string; exitCode?: number }): never {
    const refused = FlagError.last;
    FlagError.last = undefined;
    let why: string | undefined;
    if (opts?.code === "commander.invalidArgument" && refused && message.endsWith(` ${refused.message}`)) {
      why = refused.message;
    } else if (opts?.code === "commander.conflictingOption") {
      const m = /option '([^']+)' cannot be used with option '([^']+)'/.exec(message);
      if (m) why = `${flagOf(this, m[1] as string)} and ${flagOf(this, m[2] as string)} exclude each other`;
    }
    // commander's own usage errors (unknown option or command, missing argument, bad
    // choice) go through the same one-line printer, without commander's "error: " prefix
    why ??= message.replace(/^error: /, "");
    const path = commandPath(this);
    process.stderr.write(`chorus${path ? ` ${path}` : ""}: ${why}\n`);
    return process.exit(1);
  }
}

/** The `chorus` program without commands (shared by buildProgram() and the lazy launcher). */
export function programShell(): Command {
  return new ChorusCommand()
    .name("chorus")
    .description("Fleet orchestration over NATS, wire-compatible with Choria")
    .version(CHORUS_VERSION, "-V, --version", "Print the chorus version");
}

/**
 * Loading and starting the server grows V8's young generation from 1 to 8 MiB per
 * semi-space, as do request bursts: measured at idle 70 MiB RSS without this vs 65
 * MiB with it, and 85 vs 73 MiB after 1 000 inventory requests, for a little more CPU
 * in that burst (0.50-0.57 s vs 0.44-0.51 s: more scavenges). Growth factor 1 keeps
 * the initial size. It is the one V8 setting that works after start-up (it is read
 * each time the young generation would grow); set before the server's modules load,
 * since loading is what grows it.
 */
function daemonHeap(): void {
  setFlagsFromString("--semi-space-growth-factor=1");
}

/**
 * The CLI entry used by bin/chorus.js. The program has no global options, so the
 * first argument names the command: only that command's file is loaded, and it
 * parses exactly as in the full program. Anything else (no argument, --help, help,
 * --version, a typo that deserves suggestions) gets the full program from main.ts.
 */
export async function main(argv: string[]): Promise<void> {
  const name = argv[2];
  const load = name !== undefined && Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (load === undefined) {
    const full = await import("./main.js");
    await full.main(argv);
    return;
  }
  if (name === "server") daemonHeap();
  const program = programShell();
  (await load()).register(program);
  await program.parseAsync(argv);
}
