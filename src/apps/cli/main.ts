import type { Command } from "commander";
import { COMMANDS, programShell } from "./launch.js";

/**
 * Builds the whole `chorus` command tree from launch.ts's command table, loading every
 * command file (each command lives in its own thin file, exporting register(program)).
 * bin/chorus.js goes through launch.ts, which loads only the command being run.
 */
export async function buildProgram(): Promise<Command> {
  const program = programShell();
  // an alias shares its command's file: each file registers once, in table order
  const files = [...new Set(Object.values(COMMANDS))];
  for (const m of await Promise.all(files.map((load) => load()))) m.register(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  await (await buildProgram()).parseAsync(argv);
}
