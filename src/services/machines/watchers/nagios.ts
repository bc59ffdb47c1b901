/**
 * The `nagios` watcher: runs a Nagios-compatible plugin (or a builtin check) and fires the
 * transition named after the result: OK, WARNING, CRITICAL or UNKNOWN. Scout checks are
 * machines built around one of these (see ../scout.ts).
 *
 * Behaviour follows go-choria's nagioswatcher: exit codes 0..3 map to the four states and
 * anything else is UNKNOWN; the watcher's reported status follows the machine when it is
 * moved to one of those states from outside; entering FORCE_CHECK runs a check at once even
 * though the check's state_match does not list FORCE_CHECK; a check that ran less than
 * (interval - 1s) ago is not repeated, so a state change right after a check does not run
 * it twice.
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import type { Counter, Gauge, Registry } from "prom-client";
import { promClient } from "../../../core/util/index.js";
import { parseGoDuration } from "../duration.js";
import type { MachineHostServices, Watcher, WatcherDef, WatcherFactory, WatcherHost } from "../types.js";
import { WatcherProps } from "./properties.js";

export const NAGIOS_STATUSES = ["OK", "WARNING", "CRITICAL", "UNKNOWN"] as const;
export type NagiosStatus = (typeof NAGIOS_STATUSES)[number];

/** The status a plugin's exit code stands for (Nagios plugin API: 0..3, anything else UNKNOWN). */
export function nagiosStatusOf(exitCode: number | null): NagiosStatus {
  if (exitCode === null || exitCode < 0 || exitCode > 3) return "UNKNOWN";
  return NAGIOS_STATUSES[exitCode] as NagiosStatus;
}

export function nagiosStatusCode(s: NagiosStatus): number {
  return NAGIOS_STATUSES.indexOf(s);
}

/** One performance data item: `'label'=value[UOM];[warn];[crit];[min];[max]`. */
export interface PerfData {
  label: string;
  value: number;
  /** unit of measure as given ("", "s", "ms", "%", "B", "KB", "c", ...) */
  unit: string;
  /** thresholds are Nagios ranges ("10", "10:", "@5:10"), kept as written */
  warning?: string;
  critical?: string;
  min?: number;
  max?: number;
}

const VALUE_RE = /^([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)([a-zA-Z%]*)$/;

function optNumber(s: string | undefined): number | undefined {
  if (s === undefined || s === "") return undefined;
  const n = Number(s);
  return Number.isFinite(n) ? n : undefined;
}

/**
 * Parses the perfdata part of plugin output (what follows `|`). Items are space separated;
 * labels may be single-quoted to hold spaces (`''` is a literal quote). Malformed items and
 * values that are not numbers (such as `U`) are skipped rather than failing the whole check.
 * Spaces in labels become `_`, as go-choria does, since labels end up as metric names.
 */
export function parsePerfData(perf: string): PerfData[] {
  const out: PerfData[] = [];
  let i = 0;
  const n = perf.length;
  const isSpace = (c: string | undefined): boolean => c === " " || c === "\t" || c === "\n" || c === "\r";
  const skipToken = (): void => {
    while (i < n && !isSpace(perf[i])) i++;
  };
  while (i < n) {
    while (i < n && isSpace(perf[i])) i++;
    if (i >= n) break;
    let label = "";
    if (perf[i] === "'") {
      i++;
      let closed = false;
      while (i < n) {
        if (perf[i] === "'") {
          if (perf[i + 1] === "'") {
            label += "'";
            i += 2;
            continue;
          }
          i++;
          closed = true;
          break;
        }
        label += perf[i];
        i++;
      }
      if (!closed || perf[i] !== "=") {
        skipToken();
        continue;
      }
    } else {
      const start = i;
      while (i < n && perf[i] !== "=" && !isSpace(perf[i])) i++;
      if (perf[i] !== "=") {
        skipToken();
        continue;
      }
      label = perf.slice(start, i);
    }
    i++; // the "="
    const start = i;
    skipToken();
    const fields = perf.slice(start, i).split(";");
    const m = VALUE_RE.exec(fields[0] ?? "");
    if (!label || !m) continue;
    const item: PerfData = { label: label.replace(/ /g, "_"), value: Number(m[1]), unit: m[2] ?? "" };
    if (fields[1]) item.warning = fields[1];
    if (fields[2]) item.critical = fields[2];
    const min = optNumber(fields[3]);
    if (min !== undefined) item.min = min;
    const max = optNumber(fields[4]);
    if (max !== undefined) item.max = max;
    out.push(item);
  }
  return out;
}

/**
 * Splits plugin output per the Nagios plugin API: the first line is `TEXT | PERFDATA`, later
 * lines are long text until a `|`, after which everything is more perfdata.
 */
export function parseNagiosOutput(output: string): { text: string; perfdata: PerfData[] } {
  const nl = output.indexOf("\n");
  const first = nl < 0 ? output : output.slice(0, nl);
  const rest = nl < 0 ? "" : output.slice(nl + 1);
  const perfParts: string[] = [];
  const textParts: string[] = [];
  const bar = first.indexOf("|");
  if (bar < 0) textParts.push(first.trim());
  else {
    textParts.push(first.slice(0, bar).trim());
    perfParts.push(first.slice(bar + 1));
  }
  if (rest) {
    const bar2 = rest.indexOf("|");
    if (bar2 < 0) textParts.push(rest.trimEnd());
    else {
      textParts.push(rest.slice(0, bar2).trimEnd());
      perfParts.push(rest.slice(bar2 + 1));
    }
  }
  return {
    text: textParts.filter((t) => t !== "").join("\n"),
    perfdata: parsePerfData(perfParts.join(" ")),
  };
}

/** What a shell command produced. exitCode is null when it was killed (timeout, abort). */
export interface ShellResult {
  exitCode: number | null;
  output: string;
  timedOut: boolean;
}

/** Output beyond this is dropped: a runaway plugin must not fill the server's memory. */
const MAX_OUTPUT = 64 * 1024;

/**
 * Runs `command` with /bin/sh -c in `cwd`, stdout and stderr together (as go-choria's
 * CombinedOutput), killing the whole process group on timeout or abort.
 */
export function runShell(
  command: string,
  opts: { cwd: string; env: Record<string, string>; timeoutMs: number; signal?: AbortSignal },
): Promise<ShellResult> {
  return new Promise((resolve) => {
    let output = "";
    let timedOut = false;
    let done = false;
    const child = spawn("/bin/sh", ["-c", command], {
      cwd: opts.cwd,
      env: opts.env,
      stdio: ["ignore", "pipe", "pipe"],
      // own process group, so a timeout also kills what the shell started
      detached: true,
    });
    const onData = (d: Buffer): void => {
      if (output.length < MAX_OUTPUT) output += d.toString("utf8");
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    const kill = (): void => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      kill();
    }, opts.timeoutMs);
    const onAbort = (): void => kill();
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    const finish = (r: ShellResult): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener("abort", onAbort);
      resolve(r);
    };
    child.on("error", (err) => finish({ exitCode: null, output: err.message, timedOut: false }));
    child.on("close", (code) => finish({ exitCode: code, output: output.slice(0, MAX_OUTPUT), timedOut }));
  });
}

/** The environment plugins run with: only what go-choria gives them, plus the machine dir on PATH. */
export function pluginEnv(host: WatcherHost, watcherName: string): Record<string, string> {
  return {
    MACHINE_WATCHER_NAME: watcherName,
    MACHINE_NAME: host.machineName,
    PATH: `${process.env.PATH ?? "/usr/bin:/bin"}:${host.directory}`,
  };
}

/** One past check, newest last in `history`. */
export interface NagiosExecution {
  /** when the check started, ISO 8601 (Choria's `execute`) */
  execute: string;
  /** Nagios status code 0..3 */
  status: number;
  /** the plugin's raw exit code; null when it was killed or never ran */
  exit_code: number | null;
  output: string;
  perfdata: PerfData[];
  /** seconds */
  runtime: number;
}

/** How many results a check keeps (Scout shows the last 10). */
export const NAGIOS_HISTORY = 10;

export const NAGIOS_BUILTINS = ["heartbeat", "choria_status"] as const;
type Builtin = (typeof NAGIOS_BUILTINS)[number];

interface NagiosProps {
  plugin?: string;
  builtin?: Builtin;
  timeoutMs: number;
  annotations: Record<string, string>;
  lastMessageMs?: number;
  tokenExpireMs?: number;
}

/** Reads a string map property (annotations, labels); numbers and booleans are taken as text. */
export function stringMapProp(props: WatcherProps, key: string): Record<string, string> {
  const v = props.value(key);
  const out: Record<string, string> = {};
  if (v === undefined || v === null) return out;
  if (typeof v !== "object" || Array.isArray(v)) throw props.error(key, "must be a map of strings");
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    if (typeof x !== "string" && typeof x !== "number" && typeof x !== "boolean")
      throw props.error(`${key}.${k}`, "must be a string");
    out[k] = String(x);
  }
  return out;
}

const NAGIOS_PROPERTIES = [
  "plugin",
  "builtin",
  "timeout",
  "annotations",
  "last_message",
  "token_expire",
  "pubcert_expire",
  "gossfile",
] as const;

function parseProps(def: WatcherDef, path: string): NagiosProps {
  const p = new WatcherProps(def, path, NAGIOS_PROPERTIES);
  const plugin = p.string("plugin");
  const builtin = p.string("builtin");
  if (plugin !== undefined && plugin.trim() === "") throw p.error("plugin", "must not be empty");
  if (plugin && builtin) throw p.error("", "set plugin or builtin, not both");
  if (!plugin && !builtin) throw p.error("", "plugin or builtin is required");
  if (builtin === "goss") throw p.error("builtin", "the goss builtin is not supported by Chorus");
  if (builtin && !(NAGIOS_BUILTINS as readonly string[]).includes(builtin))
    throw p.error("builtin", `unknown builtin "${builtin}" (one of ${NAGIOS_BUILTINS.join(", ")})`);
  const out: NagiosProps = {
    timeoutMs: p.duration("timeout", 10_000),
    annotations: stringMapProp(p, "annotations"),
  };
  if (plugin) out.plugin = plugin;
  if (builtin) out.builtin = builtin as Builtin;
  if (p.has("last_message")) out.lastMessageMs = p.duration("last_message", 0);
  if (p.has("token_expire")) out.tokenExpireMs = p.duration("token_expire", 0);
  // accepted for Choria manifests; Chorus' status file carries no certificate expiry
  p.duration("pubcert_expire", 0);
  if (out.builtin === "choria_status" && !out.lastMessageMs)
    throw p.error("last_message", "is required for the choria_status builtin");
  if (out.timeoutMs <= 0) throw p.error("timeout", "must be more than 0");
  return out;
}

/** prom-client metrics shared by every nagios watcher on one registry (go-choria's names and labels). */
interface NagiosMetrics {
  status: Gauge<"name" | "status">;
  lastRun: Gauge<"name">;
  checks: Counter<"name">;
}

function nagiosMetrics(reg: Registry): NagiosMetrics {
  const prom = promClient();
  const get = <T>(name: string, make: () => T): T => (reg.getSingleMetric(name) as T | undefined) ?? make();
  get(
    "choria_machine_nagios_start_time",
    () =>
      new prom.Gauge({
        name: "choria_machine_nagios_start_time",
        help: "Time the Choria Machine subsystem started in unix seconds",
        registers: [reg],
      }),
  ).set(Math.floor(Date.now() / 1000));
  return {
    status: get(
      "choria_machine_nagios_watcher_status",
      () =>
        new prom.Gauge({
          name: "choria_machine_nagios_watcher_status",
          help: "Choria Nagios Check Status",
          labelNames: ["name", "status"] as const,
          registers: [reg],
        }),
    ),
    lastRun: get(
      "choria_machine_nagios_watcher_last_run_seconds",
      () =>
        new prom.Gauge({
          name: "choria_machine_nagios_watcher_last_run_seconds",
          help: "Choria Nagios Check Time",
          labelNames: ["name"] as const,
          registers: [reg],
        }),
    ),
    checks: get(
      "choria_machine_nagios_watcher_checks_count",
      () =>
        new prom.Counter({
          name: "choria_machine_nagios_watcher_checks_count",
          help: "Choria Nagios Check Count",
          labelNames: ["name"] as const,
          registers: [reg],
        }),
    ),
  };
}

interface CheckResult {
  status: NagiosStatus;
  exitCode: number | null;
  output: string;
}

/** The server status file fields choria_status reads (src/server/status.ts). */
interface StatusFileBody {
  uptime?: number;
  connected_server?: string;
  last_message?: number;
  stats?: Record<string, number>;
}

function jwtExpiry(token: string): number | undefined {
  const parts = token.trim().split(".");
  if (parts.length !== 3) throw new Error("token is not a three part JWT");
  const claims = JSON.parse(Buffer.from(parts[1] as string, "base64url").toString("utf8")) as Record<
    string,
    unknown
  >;
  return typeof claims.exp === "number" ? claims.exp : undefined;
}

/**
 * The choria_status builtin: CRITICAL when the node is not connected, has had no message
 * within last_message, or its token expires within token_expire; perfdata from the status file.
 */
export function checkChoriaStatus(
  services: MachineHostServices,
  opts: { lastMessageMs: number; tokenExpireMs?: number },
  now = Date.now(),
): CheckResult {
  const file = services.statusFile;
  if (!file) return { status: "UNKNOWN", exitCode: 3, output: "Status file not configured" };
  let st: StatusFileBody;
  try {
    st = JSON.parse(readFileSync(file, "utf8")) as StatusFileBody;
    if (typeof st !== "object" || st === null) throw new Error("not a JSON object");
  } catch (err) {
    return { status: "CRITICAL", exitCode: 2, output: `Status file error: ${(err as Error).message}` };
  }
  const nowS = Math.floor(now / 1000);
  let tokenExpires: number | undefined;
  let tokenError: string | undefined;
  if (services.tokenFile) {
    try {
      tokenExpires = jwtExpiry(readFileSync(services.tokenFile, "utf8"));
    } catch (err) {
      tokenError = `token file ${services.tokenFile}: ${(err as Error).message}`;
    }
  }
  const stats = st.stats ?? {};
  const num = (v: unknown): number => (typeof v === "number" && Number.isFinite(v) ? Math.floor(v) : 0);
  const lastMsg = num(st.last_message);
  const perf = [
    `uptime=${num(st.uptime)};;`,
    `filtered_msgs=${num(stats.filtered)};;`,
    `invalid_msgs=${num(stats.invalid)};;`,
    `passed_msgs=${num(stats.passed)};;`,
    `replies_msgs=${num(stats.replies)};;`,
    `total_msgs=${num(stats.total)};;`,
    `ttlexpired_msgs=${num(stats.ttlexpired)};;`,
    `last_msg=${lastMsg};;`,
    ...(tokenExpires !== undefined ? [`token_expire_seconds=${tokenExpires - nowS};;`] : []),
    `events=${num(stats.events)};;`,
  ].join(" ");
  const crit = (why: string): CheckResult => ({
    status: "CRITICAL",
    exitCode: 2,
    output: `CRITICAL: ${why}|${perf}`,
  });
  if (opts.tokenExpireMs !== undefined && opts.tokenExpireMs > 0) {
    if (tokenError) return crit(tokenError);
    if (tokenExpires !== undefined && (tokenExpires - nowS) * 1000 < opts.tokenExpireMs)
      return crit(`token expires ${new Date(tokenExpires * 1000).toISOString()} (${tokenExpires - nowS}s)`);
  }
  // A node that just started and has had no message yet gets last_message to receive one.
  const graceful = lastMsg === 0 && num(st.uptime) * 1000 < opts.lastMessageMs;
  if (!graceful && lastMsg * 1000 < now - opts.lastMessageMs)
    return crit(`last message at ${new Date(lastMsg * 1000).toISOString()}`);
  if (!st.connected_server) return crit("Not connected to any server");
  return { status: "OK", exitCode: 0, output: `OK: ${file}|${perf}` };
}

class NagiosWatcher implements Watcher {
  readonly type = "nagios";
  private readonly props: NagiosProps;
  private readonly intervalMs: number;
  private readonly metrics: NagiosMetrics | undefined;
  private status: NagiosStatus = "UNKNOWN";
  private output = "";
  private perfdata: PerfData[] = [];
  private checkTime = 0;
  private runtime = 0;
  private history: NagiosExecution[] = [];
  private running: Promise<void> | undefined;
  private readonly closer = new AbortController();
  private closed = false;

  constructor(
    readonly def: WatcherDef,
    private readonly host: WatcherHost,
    path: string,
  ) {
    this.props = parseProps(def, path);
    this.intervalMs = def.interval ? parseGoDuration(def.interval, `${path}.interval`, "bad_watcher") : 0;
    this.metrics = host.services.metrics ? nagiosMetrics(host.services.metrics) : undefined;
    this.updateMetrics();
  }

  stateChanged(state: string): void {
    if ((NAGIOS_STATUSES as readonly string[]).includes(state)) {
      // the machine was put in a check state from outside (remediation, rpc): report that
      this.status = state as NagiosStatus;
      this.updateMetrics();
      return;
    }
    if (state === "FORCE_CHECK") {
      this.host.log.info({ machine: this.host.machineName }, "forcing a check");
      void this.check(this.closer.signal, true);
    }
  }

  run(signal: AbortSignal): Promise<void> {
    return this.check(signal, false);
  }

  /** Runs the check unless one is running or one ran within the last interval (less a second). */
  private async check(signal: AbortSignal, force: boolean): Promise<void> {
    if (this.closed) return;
    // a forced check waits for one under way (likely being aborted as the machine left
    // the check's states) rather than being lost
    if (this.running) return force ? this.running.then(() => this.check(signal, true)) : this.running;
    // go-choria skips a check within (interval - 1s) of the last; half the interval keeps
    // sub-2s test intervals from re-checking on the state change their own result caused
    const recent = Math.max(this.intervalMs - 1000, this.intervalMs / 2);
    if (!force && this.checkTime > 0 && this.intervalMs > 0 && Date.now() - this.checkTime < recent) return;
    this.running = this.doCheck(signal).finally(() => (this.running = undefined));
    return this.running;
  }

  private async doCheck(signal: AbortSignal): Promise<void> {
    const started = Date.now();
    const previousCheck = this.checkTime;
    this.checkTime = started;
    let result: CheckResult;
    try {
      result = await this.execute(signal);
    } catch (err) {
      result = { status: "UNKNOWN", exitCode: null, output: (err as Error).message };
    }
    // aborted: the machine left the check's states (maintenance) or stopped; not a result
    if (this.closed || signal.aborted) {
      this.checkTime = previousCheck;
      return;
    }
    this.runtime = (Date.now() - started) / 1000;
    this.output = result.output.trim();
    this.perfdata = parseNagiosOutput(result.output).perfdata;
    this.status = result.status;
    this.history.push({
      execute: new Date(started).toISOString(),
      status: nagiosStatusCode(result.status),
      exit_code: result.exitCode,
      output: this.output,
      perfdata: this.perfdata,
      runtime: this.runtime,
    });
    if (this.history.length > NAGIOS_HISTORY) this.history.splice(0, this.history.length - NAGIOS_HISTORY);
    this.metrics?.checks.inc({ name: this.host.machineName });
    this.updateMetrics();
    this.host.announce();
    // a steady result fires a transition into the state the machine is in, which the
    // engine ignores as Choria's FSM does, so remediation does not re-run each check
    try {
      this.host.fire(result.status, `${this.def.name}: ${this.output.split("\n")[0] ?? ""}`);
    } catch (err) {
      this.host.log.warn({ err: err as Error, transition: result.status }, "could not transition");
    }
  }

  private async execute(signal: AbortSignal): Promise<CheckResult> {
    const { plugin, builtin } = this.props;
    if (builtin === "heartbeat")
      return { status: "OK", exitCode: 0, output: String(Math.floor(Date.now() / 1000)) };
    if (builtin === "choria_status") {
      const opts: { lastMessageMs: number; tokenExpireMs?: number } = {
        lastMessageMs: this.props.lastMessageMs ?? 0,
      };
      if (this.props.tokenExpireMs !== undefined) opts.tokenExpireMs = this.props.tokenExpireMs;
      return checkChoriaStatus(this.host.services, opts);
    }
    const r = await runShell(plugin as string, {
      cwd: this.host.directory,
      env: pluginEnv(this.host, this.def.name),
      timeoutMs: this.props.timeoutMs,
      signal,
    });
    if (r.timedOut)
      return {
        status: "UNKNOWN",
        exitCode: null,
        output: `${r.output.trim()}\ntimed out after ${this.props.timeoutMs / 1000}s`.trim(),
      };
    return { status: nagiosStatusOf(r.exitCode), exitCode: r.exitCode, output: r.output };
  }

  private updateMetrics(): void {
    if (!this.metrics || this.closed) return;
    const name = this.host.machineName;
    for (const s of NAGIOS_STATUSES) if (s !== this.status) this.metrics.status.remove({ name, status: s });
    this.metrics.status.set({ name, status: this.status }, nagiosStatusCode(this.status));
    this.metrics.lastRun.set({ name }, Math.floor(Date.now() / 1000));
  }

  snapshot(): Record<string, unknown> {
    const snap: Record<string, unknown> = {
      plugin: this.props.plugin ?? this.props.builtin ?? "",
      status: this.status,
      status_code: nagiosStatusCode(this.status),
      output: this.output,
      check_time: Math.floor(this.checkTime / 1000),
      perfdata: this.perfdata,
      runtime: this.runtime,
      history: [...this.history],
      annotations: { ...this.props.annotations },
    };
    if (this.props.builtin) snap.builtin = this.props.builtin;
    return snap;
  }

  close(): void {
    this.closed = true;
    this.closer.abort();
    if (this.metrics) {
      // a removed check must not keep reporting its last status
      const name = this.host.machineName;
      for (const s of NAGIOS_STATUSES) this.metrics.status.remove({ name, status: s });
      this.metrics.lastRun.remove({ name });
      this.metrics.checks.remove({ name });
    }
  }
}

export const nagiosWatcher: WatcherFactory = (def, host, path) => new NagiosWatcher(def, host, path);
