import type { Command } from "commander";
import { register as registerBroker } from "./broker.js";
import { register as registerDemo } from "./demo.js";
import { register as registerDiscover } from "./discover.js";
import { register as registerFacts } from "./facts.js";
import { register as registerInventory } from "./inventory.js";
import { register as registerPlugin } from "./plugin.js";
import { register as registerElection } from "./election.js";
import { register as registerEmulate } from "./emulate.js";
import { register as registerEvent } from "./event.js";
import { register as registerGovernor } from "./governor.js";
import { register as registerJwt } from "./jwt.js";
import { register as registerKv } from "./kv.js";
import { register as registerPing } from "./ping.js";
import { register as registerReq } from "./req.js";
import { register as registerServer } from "./server.js";
import { register as registerSetup } from "./setup.js";
import { register as registerTool } from "./tool.js";
import { programShell } from "./launch.js";

/**
 * Builds the whole `chorus` command tree, loading every command; each command lives
 * in its own thin file. bin/chorus.js goes through launch.ts, which loads only the
 * command being run.
 */
export function buildProgram(): Command {
  const program = programShell();
  // Each cli/<name>.ts exports register(program); one line per command file.
  registerSetup(program);
  registerJwt(program);
  registerBroker(program);
  registerServer(program);
  registerReq(program);
  registerPing(program);
  registerDiscover(program);
  registerFacts(program);
  registerInventory(program);
  registerPlugin(program);
  registerEmulate(program);
  registerEvent(program);
  registerDemo(program);
  registerKv(program);
  registerGovernor(program);
  registerElection(program);
  registerTool(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  await buildProgram().parseAsync(argv);
}
