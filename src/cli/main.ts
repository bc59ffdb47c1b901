import { Command } from "commander";
import { register as registerBroker } from "./broker.js";
import { register as registerJwt } from "./jwt.js";
import { register as registerSetup } from "./setup.js";

/** Builds the `chorus` command tree; each command lives in its own thin file. */
export function buildProgram(): Command {
  const program = new Command();
  program
    .name("chorus")
    .description("Fleet orchestration over NATS, wire-compatible with Choria")
    .showHelpAfterError();
  // Each cli/<name>.ts exports register(program); one line per command file.
  registerSetup(program);
  registerJwt(program);
  registerBroker(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  await buildProgram().parseAsync(argv);
}
