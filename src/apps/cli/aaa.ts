import { createInterface } from "node:readline";
import type { Readable, Writable } from "node:stream";
import type { Command } from "commander";
import { AaaService, hashPassword } from "../../services/aaa/index.js";
import { intArg } from "./flags.js";
import { runDaemon } from "./daemon.js";

/** Reads one password from the terminal without echoing it. */
function promptHidden(question: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
    const out = rl as unknown as { _writeToOutput: (s: string) => void };
    process.stderr.write(question);
    // echo nothing while the password is typed
    out._writeToOutput = () => {};
    rl.question("", (answer) => {
      rl.close();
      process.stderr.write("\n");
      resolve(answer);
    });
    rl.on("SIGINT", () => {
      rl.close();
      reject(new Error("interrupted"));
    });
  });
}

async function crypt(cost: number): Promise<void> {
  if (process.stdin.isTTY) {
    const pw = await promptHidden("Password: ");
    const again = await promptHidden("Again: ");
    if (pw !== again) {
      process.stderr.write("chorus aaa crypt: the passwords differ\n");
      process.exit(1);
    }
    if (pw === "") {
      process.stderr.write("chorus aaa crypt: empty password\n");
      process.exit(1);
    }
    process.stdout.write(`${await hashPassword(pw, cost)}\n`);
    return;
  }
  await cryptLines(process.stdin, process.stdout, cost);
}

/** One bcrypt hash per non-empty input line, as Choria's `aaasvc crypt` (which uses cost 5). */
export async function cryptLines(input: Readable, output: Writable, cost = 10): Promise<number> {
  const rl = createInterface({ input, crlfDelay: Infinity });
  let n = 0;
  for await (const line of rl) {
    if (line === "") continue;
    output.write(`${await hashPassword(line, cost)}\n`);
    n++;
  }
  return n;
}

/** `chorus aaa run --config FILE`, `chorus aaa crypt [--cost N]`. */
export function register(program: Command): void {
  const aaa = program
    .command("aaa")
    .description("Authentication, authorization and audit service (Choria's aaasvc)");
  aaa
    .command("run")
    .description("Run the AAA login and request signing service")
    .requiredOption("--config <file>", "AAA service configuration file (JSON or YAML)")
    .action(async (opts: { config: string }) => {
      await runDaemon("aaa", () => AaaService.fromFile(opts.config));
    });
  aaa
    .command("crypt")
    .description("bcrypt passwords for a users file: one per stdin line, or prompted on a terminal")
    .option(
      "--cost <n>",
      "bcrypt cost 4-31",
      intArg("--cost", { min: 4, max: 31, expected: "a bcrypt cost from 4 to 31" }),
      10,
    )
    .action(async (opts: { cost: number }) => {
      await crypt(opts.cost);
    });
}
