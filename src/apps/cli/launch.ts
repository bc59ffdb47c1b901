import { setFlagsFromString } from "node:v8";
import { Command } from "commander";

/** What every command file exports: adds its command (and subcommands) to the program. */
export type Register = (program: Command) => void;

/**
 * Top-level command → its file, loaded on demand. A long-running `chorus server run`
 * must not carry the client, emulator, broker, codegen, streams and progress-bar code
 * of the other commands (two thirds of the modules it used to load, never run);
 * test/cli/rss-lazy.test.ts checks this table against buildProgram(), so a new
 * command cannot be forgotten here.
 */
export const COMMANDS: Record<string, () => Promise<{ register: Register }>> = {
  setup: () => import("./setup.js"),
  jwt: () => import("./jwt.js"),
  broker: () => import("./broker.js"),
  server: () => import("./server.js"),
  req: () => import("./req.js"),
  rpc: () => import("./req.js"), // alias of req
  ping: () => import("./ping.js"),
  discover: () => import("./discover.js"),
  facts: () => import("./facts.js"),
  inventory: () => import("./inventory.js"),
  plugin: () => import("./plugin.js"),
  emulate: () => import("./emulate.js"),
  event: () => import("./event.js"),
  demo: () => import("./demo.js"),
  kv: () => import("./kv.js"),
  governor: () => import("./governor.js"),
  election: () => import("./election.js"),
  tool: () => import("./tool.js"),
};

/** The `chorus` program without commands (shared by buildProgram() and the lazy launcher). */
export function programShell(): Command {
  return new Command()
    .name("chorus")
    .description("Fleet orchestration over NATS, wire-compatible with Choria")
    .showHelpAfterError("(run with --help for usage)");
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
