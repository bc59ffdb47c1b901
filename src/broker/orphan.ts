import { lstatSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import type { BrokerSettings } from "../core/config/index.js";
import { sleep, type Logger } from "../core/util/index.js";
import { NATS_WRAPPER_NAME } from "./nats-wrapper.js";
import { BrokerError } from "./trust.js";

/**
 * The nats-server pidfile and the orphan takeover. The pidfile holds the bare pid (as
 * nats-server's own pid_file does, so `nats-server --signal reload=FILE` works) and lives
 * where the next run finds it: `<runtime_dir>/nats-server.pid` when
 * plugin.choria.network.runtime_dir is set, otherwise in a private per-user directory
 * keyed by the listen address and client port (the default runtime directory is a fresh
 * temporary one on every run).
 */

/** What /proc says about a process (Linux). */
export interface ProcInfo {
  argv: string[];
  /** R, S, D, Z (zombie), ... */
  state: string;
  ppid: number;
  /** Start time in clock ticks since boot: with the pid, identifies one process. */
  startTime: string;
}

export function procInfo(pid: number): ProcInfo | undefined {
  if (!Number.isInteger(pid) || pid <= 1) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) is in parentheses and may hold spaces or parentheses.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    if (argv[argv.length - 1] === "") argv.pop();
    return {
      argv,
      state: fields[0] ?? "",
      ppid: Number(fields[1]),
      startTime: fields[19] ?? "",
    };
  } catch {
    return undefined;
  }
}

/** Whether the process is a nats-server (the configured binary, or any called nats-server). */
export function isNatsServer(info: ProcInfo, binary?: string): boolean {
  const [argv0, argv1] = info.argv;
  if (argv0 === undefined) return false;
  if (basename(argv0) === "nats-server") return true;
  // A script run through its interpreter shows up as `interpreter /path/to/script ...`.
  return binary !== undefined && (argv0 === binary || argv1 === binary);
}

/**
 * The pid of the live supervisor running this nats-server through the wrapper, if any.
 * The wrapper's argv carries its supervisor's pid; the wrapper's parent is that pid only
 * while the supervisor lives (once it dies the wrapper is reparented).
 */
export function liveSupervisorOf(info: ProcInfo): number | undefined {
  const wrapper = procInfo(info.ppid);
  if (!wrapper) return undefined;
  const i = wrapper.argv.findIndex((a) => basename(a) === NATS_WRAPPER_NAME);
  if (i < 0) return undefined;
  const supervisor = Number(wrapper.argv[i + 1]);
  return Number.isInteger(supervisor) && supervisor > 1 && wrapper.ppid === supervisor
    ? supervisor
    : undefined;
}

/** Where the pidfile for these settings lives (see the module comment). */
export function natsPidFile(settings: BrokerSettings): string {
  if (settings.runtimeDir) return join(settings.runtimeDir, "nats-server.pid");
  const addr = settings.listenAddress.replace(/[^A-Za-z0-9.]/g, "_");
  return join(userStateDir(), `nats-server-${addr}-${settings.clientPort}.pid`);
}

/**
 * Where the supervisor records nats-server's monitoring URL while it runs (beside the
 * pidfile), so `chorus broker status` finds a port that was picked at start.
 */
export function natsMonitorFile(settings: BrokerSettings): string {
  return natsPidFile(settings).replace(/\.pid$/, ".monitor");
}

function userStateDir(): string {
  return join(tmpdir(), `chorus-broker-${process.getuid?.() ?? "user"}`);
}

/**
 * Creates the per-user pidfile directory, refusing one that someone else could write to
 * (it sits in a shared temporary directory and decides which process gets killed).
 */
export function ensurePidFileDir(settings: BrokerSettings): void {
  if (settings.runtimeDir) return; // created by the supervisor, private
  const dir = userStateDir();
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
  const st = lstatSync(dir);
  const uid = process.getuid?.();
  if (!st.isDirectory() || (uid !== undefined && st.uid !== uid) || (st.mode & 0o022) !== 0) {
    throw new BrokerError(
      "pidfile",
      `${dir} is not a private directory of this user; remove it or set plugin.choria.network.runtime_dir`,
    );
  }
}

export function readPidFile(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, "utf8").trim());
    return Number.isInteger(pid) && pid > 1 ? pid : undefined;
  } catch {
    return undefined;
  }
}

export function writePidFile(file: string, pid: number): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${pid}\n`, { mode: 0o644 });
  renameSync(tmp, file);
}

/** Removes the pidfile; with a pid, only when it still names that pid. */
export function removePidFile(file: string, pid?: number): void {
  if (pid !== undefined && readPidFile(file) !== pid) return;
  rmSync(file, { force: true });
}

function sameProcess(pid: number, startTime: string): boolean {
  const now = procInfo(pid);
  return now !== undefined && now.state !== "Z" && now.startTime === startTime;
}

async function gone(pid: number, startTime: string, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (!sameProcess(pid, startTime)) return true;
    if (Date.now() >= deadline) return false;
    await sleep(50);
  }
}

export interface TakeOverOptions {
  pidFile: string;
  /** The binary this supervisor runs, to recognise nats-servers started as scripts. */
  binary?: string;
  /** How long the orphan gets after SIGTERM before SIGKILL. */
  graceMs: number;
  log: Logger;
}

/**
 * Clears the way for a new nats-server. A pidfile naming a live nats-server that no live
 * supervisor runs (an orphan, e.g. left by a supervisor and wrapper both SIGKILLed) gets
 * SIGTERM, then SIGKILL after graceMs. One run by a live supervisor is left alone and is an
 * error: the broker is already running. A stale pidfile (dead pid, or a pid now used by
 * another program) is removed. Returns the pid taken over, if any.
 */
export async function takeOverOrphan(o: TakeOverOptions): Promise<number | undefined> {
  const pid = readPidFile(o.pidFile);
  if (pid === undefined || pid === process.pid) {
    removePidFile(o.pidFile);
    return undefined;
  }
  const info = procInfo(pid);
  if (!info || info.state === "Z" || !isNatsServer(info, o.binary)) {
    o.log.debug(`removing stale nats-server pidfile ${o.pidFile} (pid ${pid} is not a nats-server)`);
    removePidFile(o.pidFile);
    return undefined;
  }
  const supervisor = liveSupervisorOf(info);
  if (supervisor !== undefined) {
    throw new BrokerError(
      "already_running",
      `nats-server pid ${pid} (from ${o.pidFile}) is run by a live chorus broker supervisor, pid ${supervisor}: ` +
        "this broker is already running",
    );
  }
  o.log.warn(`taking over an orphaned nats-server (pid ${pid}, from ${o.pidFile}): stopping it`);
  const signal = (sig: NodeJS.Signals): void => {
    if (!sameProcess(pid, info.startTime)) return;
    try {
      process.kill(pid, sig);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ESRCH") return;
      throw new BrokerError("orphan", `cannot stop orphaned nats-server pid ${pid}: ${code ?? String(err)}`);
    }
  };
  signal("SIGTERM");
  if (!(await gone(pid, info.startTime, o.graceMs))) {
    o.log.warn(
      `orphaned nats-server pid ${pid} did not exit within ${o.graceMs}ms of SIGTERM, sending SIGKILL`,
    );
    signal("SIGKILL");
    if (!(await gone(pid, info.startTime, 5000)))
      throw new BrokerError("orphan", `orphaned nats-server pid ${pid} survived SIGKILL`);
  }
  removePidFile(o.pidFile);
  o.log.warn(`orphaned nats-server pid ${pid} stopped; starting a supervised one`);
  return pid;
}
