import { Command } from "commander";

/** Builds the `chorus` command tree; each command lives in its own thin file. */
export function buildProgram(): Command {
  const program = new Command();
  program.name("chorus").description("Fleet orchestration over NATS, wire-compatible with Choria").showHelpAfterError();
  // COMMANDS: each cli/<name>.ts exports register(program); add one line per command file here.
  return program;
}

export async function main(argv: string[]): Promise<void> {
  await buildProgram().parseAsync(argv);
}
