import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./nats.js";

export interface TestPostgres {
  /** postgres://postgres@127.0.0.1:<port>/postgres (trust auth, no password) */
  url: string;
  port: number;
  dir: string;
  stop(): Promise<void>;
}

/**
 * The folder holding initdb, pg_ctl and postgres: Debian's /usr/lib/postgresql/<version>/bin
 * (newest first), else wherever PATH has initdb. Undefined when PostgreSQL is not installed
 * (scripts/bootstrap.sh installs it).
 */
export function postgresBinDir(): string | undefined {
  const root = "/usr/lib/postgresql";
  if (existsSync(root)) {
    const versions = readdirSync(root)
      .filter((v) => existsSync(join(root, v, "bin", "initdb")))
      .sort((a, b) => Number(b) - Number(a));
    if (versions[0] !== undefined) return join(root, versions[0], "bin");
  }
  const which = spawnSync("sh", ["-c", "command -v initdb"], { encoding: "utf8" });
  const found = which.status === 0 ? which.stdout.trim() : "";
  return found ? found.replace(/\/initdb$/, "") : undefined;
}

/** uid/gid of the `postgres` user when we are root: PostgreSQL refuses to run as root. */
function postgresUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const line = readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .find((l) => l.startsWith("postgres:"));
  if (!line) throw new Error("running as root, but there is no postgres user to run PostgreSQL as");
  const f = line.split(":");
  return { uid: Number(f[2]), gid: Number(f[3]) };
}

/**
 * Starts a real PostgreSQL server on a temp data dir and a random loopback port (unix
 * socket in the temp dir, trust auth on loopback, fsync off: test data need not survive
 * a power cut). As root it runs as the `postgres` user. stop() shuts it down and removes
 * the dir; a test process that exits without stop() still shuts it down.
 */
export async function startPostgres(): Promise<TestPostgres> {
  const bin = postgresBinDir();
  if (!bin)
    throw new Error("PostgreSQL is not installed (scripts/bootstrap.sh installs Debian's postgresql)");
  const user = postgresUser();
  const dir = mkdtempSync(join(tmpdir(), "chorus-pg-"));
  const data = join(dir, "data");
  if (user) {
    chownSync(dir, user.uid, user.gid);
    chmodSync(dir, 0o700);
  }
  // pg_ctl start leaves the server holding its stdio: nothing may be a pipe we wait on
  const run = (cmd: string, args: string[], stderr: "pipe" | "ignore" = "pipe"): void => {
    const argv = user
      ? ["runuser", ["-u", "postgres", "--", join(bin, cmd), ...args]]
      : [join(bin, cmd), args];
    execFileSync(argv[0] as string, argv[1] as string[], { stdio: ["ignore", "ignore", stderr], cwd: dir });
  };
  const port = await freePort();
  try {
    run("initdb", [
      "-D",
      data,
      "-U",
      "postgres",
      "-A",
      "trust",
      "-E",
      "UTF8",
      "--no-sync",
      "--no-instructions",
    ]);
    const opts = `-p ${port} -h 127.0.0.1 -k ${dir} -c fsync=off -c synchronous_commit=off -c full_page_writes=off`;
    run(
      "pg_ctl",
      ["-D", data, "-o", opts, "-l", join(dir, "postgres.log"), "-w", "-t", "30", "start"],
      "ignore",
    );
  } catch (err) {
    const log = existsSync(join(dir, "postgres.log")) ? readFileSync(join(dir, "postgres.log"), "utf8") : "";
    rmSync(dir, { recursive: true, force: true });
    const stderr = (err as { stderr?: Buffer }).stderr?.toString() ?? "";
    throw new Error(`cannot start PostgreSQL: ${(err as Error).message}\n${stderr}${log}`, { cause: err });
  }
  let stopped = false;
  const shutdown = (): void => {
    if (stopped) return;
    stopped = true;
    try {
      run("pg_ctl", ["-D", data, "-m", "immediate", "-w", "-t", "30", "stop"]);
    } catch {
      // already gone
    }
    rmSync(dir, { recursive: true, force: true });
  };
  process.once("exit", shutdown);
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    dir,
    async stop() {
      process.removeListener("exit", shutdown);
      shutdown();
    },
  };
}
