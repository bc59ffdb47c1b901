import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { Writable } from "node:stream";
import type { Command } from "commander";
import { ClientError, login, needsLogin, tokenExpiresAt } from "../../client/index.js";
import { clientSettings, loadConfig, parseDuration } from "../../core/config/index.js";
import { resolveConfigPath } from "./common.js";
import { guarded } from "./errors.js";
import { FlagError } from "./flags.js";

interface LoginFlags {
  config?: string;
  username?: string;
  passwordStdin?: boolean;
  refreshBefore?: number;
}

function durationArg(value: string): number {
  const ms = parseDuration(value);
  if (ms === undefined || ms < 0)
    throw new FlagError(`--refresh-before: "${value}" is not a duration like 10m or 1h`);
  return ms;
}

/** One line from the terminal; with `hidden`, what is typed is not echoed. */
async function ask(question: string, hidden: boolean): Promise<string> {
  let muted = false;
  const output = new Writable({
    write(chunk: Buffer, _enc, done) {
      if (!muted) process.stderr.write(chunk);
      done();
    },
  });
  const rl = createInterface({ input: process.stdin, output, terminal: true });
  try {
    const answer = new Promise<string>((resolve) => rl.question(question, resolve));
    muted = hidden;
    const a = await answer;
    if (hidden) process.stderr.write("\n");
    return a;
  } finally {
    rl.close();
  }
}

function readStdinPassword(): string {
  // Only the line ending the shell or `echo` adds is dropped: the rest is the password.
  return readFileSync(0, "utf8").replace(/\r?\n$/, "");
}

/** `chorus login`: obtain a token from the AAA service (Choria's `choria login`). */
export function register(program: Command): void {
  program
    .command("login")
    .description("Log in to the AAA service and save the token it issues (plugin.login.aaasvc.login.url)")
    .option("--config <file>", "client config (default: $CHORUS_CONFIG, then ./chorus.conf)")
    .option("--username <name>", "user to log in as (default: $USER, asked for on a terminal)")
    .option("--password-stdin", "read the password from stdin instead of asking for it")
    .option(
      "--refresh-before <duration>",
      "only log in when the saved token expires within this long (e.g. 10m)",
      durationArg,
    )
    .action(
      guarded("login", async (o: LoginFlags) => {
        const configPath = resolveConfigPath(o.config);
        const s = clientSettings(loadConfig(configPath));
        const tokenFile = s.requestSigner?.tokenFile ?? s.tokenFile;
        const seedFile = s.requestSigner?.seedFile ?? s.seedFile;
        if (s.loginUrls.length === 0) {
          throw new ClientError("usage", `${configPath} has no login URL: set plugin.login.aaasvc.login.url`);
        }
        if (o.refreshBefore !== undefined && !needsLogin(tokenFile, o.refreshBefore)) {
          const at = tokenExpiresAt(tokenFile);
          process.stdout.write(
            `token ${tokenFile} is valid${at ? ` until ${at.toISOString()}` : ""}: not logging in\n`,
          );
          return;
        }
        const interactive = !o.passwordStdin && process.stdin.isTTY === true;
        if (!o.passwordStdin && !interactive) {
          throw new ClientError(
            "usage",
            "stdin is not a terminal: pass --password-stdin to read the password from it",
          );
        }
        const dflt = process.env.USER ?? "";
        let username = o.username;
        if (username === undefined) {
          if (interactive) {
            const typed = (await ask(`Username${dflt ? ` [${dflt}]` : ""}: `, false)).trim();
            username = typed === "" ? dflt : typed;
          } else username = dflt;
        }
        if (username === "") throw new ClientError("usage", "no username: pass --username or set USER");
        const password = o.passwordStdin ? readStdinPassword() : await ask("Password: ", true);
        if (password === "") throw new ClientError("usage", "an empty password was given");
        const r = await login({
          urls: s.loginUrls,
          username,
          password,
          seedFile,
          tokenFile,
          caFile: s.caFile,
        });
        process.stdout.write(
          `token saved to ${r.tokenFile}${r.expiresAt ? `, valid until ${r.expiresAt.toISOString()}` : ""}\n`,
        );
      }),
    );
}
