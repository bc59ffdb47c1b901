import { spawn, type ChildProcess } from "node:child_process";
import type { Command } from "commander";
import { ClientError } from "../../client/index.js";
import type { NatsConnection } from "../../core/connector/index.js";
import { Election, electionLeader, LEADER_ELECTION_BUCKET } from "../../services/streams/index.js";
import { addConfigOption, withClient } from "./common.js";
import { guarded } from "./errors.js";
import { secondsOption } from "./flags.js";

export interface RunElectedOptions {
  candidate: string;
  bucket?: string;
  /**
   * "exec" (default): start the command on winning, SIGTERM it on losing (SIGKILL
   * after `graceMs`), start it again on the next win. "notify": run the command
   * all along and send it SIGUSR1 on winning and SIGUSR2 on losing.
   */
  mode?: "exec" | "notify";
  graceMs?: number;
  signal: AbortSignal;
  stdio?: "inherit" | "ignore";
  env?: NodeJS.ProcessEnv;
  onState?: (leader: boolean) => void;
}

/**
 * Campaigns in election `name` and ties a child process to leadership until
 * `signal` aborts (or, in notify mode, the child exits). Returns the last exit code.
 */
export async function runElected(
  nc: NatsConnection,
  name: string,
  command: string,
  args: string[],
  o: RunElectedOptions,
): Promise<number> {
  const mode = o.mode ?? "exec";
  const grace = o.graceMs ?? 10_000;
  let child: ChildProcess | undefined;
  let lastCode = 0;
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  const env = (leader: boolean) => ({
    ...(o.env ?? process.env),
    CHORUS_ELECTION: name,
    CHORUS_ELECTION_LEADER: leader ? "1" : "0",
  });
  const startChild = (leader: boolean) => {
    const c = spawn(command, args, { stdio: o.stdio ?? "inherit", env: env(leader) });
    child = c;
    c.once("error", (err) => {
      process.stderr.write(`chorus election: cannot run ${command}: ${err.message}\n`);
      lastCode = 127;
    });
    c.once("exit", (code, sig) => {
      lastCode = code ?? (sig ? 128 : 1);
      if (child === c) child = undefined;
      // in notify mode the child is the service: when it ends, so does the run
      if (mode === "notify") done();
    });
  };
  const stopChild = async () => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once("exit", r));
    c.kill("SIGTERM");
    const t = setTimeout(() => c.kill("SIGKILL"), grace);
    await exited;
    clearTimeout(t);
  };
  const election = new Election(nc, {
    name,
    candidate: o.candidate,
    ...(o.bucket && { bucket: o.bucket }),
    onWon: () => {
      o.onState?.(true);
      if (mode === "exec") startChild(true);
      else child?.kill("SIGUSR1");
    },
    onLost: () => {
      o.onState?.(false);
      if (mode === "exec") void stopChild();
      else child?.kill("SIGUSR2");
    },
  });
  if (mode === "notify") startChild(false);
  await election.start();
  const onAbort = () => done();
  if (o.signal.aborted) done();
  o.signal.addEventListener("abort", onAbort);
  await finished;
  o.signal.removeEventListener("abort", onAbort);
  await election.stop();
  await stopChild();
  return lastCode;
}

/** `chorus election ...`: leader election on CHORIA_LEADER_ELECTION. */
export function register(program: Command): void {
  const el = program.command("election").description("Leader elections on Choria Streams");

  const run = el
    .command("run")
    .description(
      "Run a command while this node leads: chorus election run NAME -- COMMAND [ARGS...] " +
        "(started on winning, SIGTERM on losing; --notify: always running, SIGUSR1 on win, SIGUSR2 on loss)",
    )
    .argument("<name>")
    .argument("<command...>")
    .option("--candidate <name>", "name to campaign as (default: this identity)")
    .option("--bucket <bucket>", "election bucket", LEADER_ELECTION_BUCKET)
    .option("--notify", "keep the command running and signal it instead")
    .addOption(secondsOption("--grace <seconds>", "wait before SIGKILL after SIGTERM", 10));
  addConfigOption(run);
  run.action(
    guarded(
      "election run",
      async (
        name: string,
        command: string[],
        o: { config?: string; candidate?: string; bucket: string; notify?: boolean; grace: number },
      ) => {
        const [cmd, ...args] = command;
        if (!cmd) throw new ClientError("usage", "no command given: chorus election run NAME -- COMMAND");
        await withClient(o.config, async (client, signal) => {
          const candidate = o.candidate ?? client.identity;
          process.exitCode = await runElected(await client.connect(), name, cmd, args, {
            candidate,
            bucket: o.bucket,
            mode: o.notify ? "notify" : "exec",
            graceMs: o.grace,
            signal,
            onState: (leader) =>
              process.stderr.write(`chorus election: ${candidate} ${leader ? "won" : "lost"} ${name}\n`),
          });
        });
      },
    ),
  );

  const leader = el.command("leader").description("Show who leads an election").argument("<name>");
  addConfigOption(leader);
  leader.option("--bucket <bucket>", "election bucket", LEADER_ELECTION_BUCKET).action(
    guarded("election leader", async (name: string, o: { config?: string; bucket: string }) => {
      await withClient(o.config, async (client) => {
        const who = await electionLeader(await client.connect(), name, o.bucket);
        process.stdout.write(`${who ?? "no leader"}\n`);
        if (!who) process.exitCode = 1;
      });
    }),
  );
}
