import { createRequire } from "node:module";
/**
 * Scout: monitoring checks built as machines. A check definition (go-choria's Puppet
 * `choria::scout_check` / Hiera `choria::scout_checks`) becomes a machine with states
 * UNKNOWN, OK, WARNING, CRITICAL, FORCE_CHECK and MAINTENANCE, a `check` nagios watcher
 * active in the four check states, and optionally a `remediate` exec watcher that runs in
 * the remediate states (CRITICAL by default) every remediate_interval and, when it
 * succeeds, moves the check to UNKNOWN so the next check judges the result.
 *
 * How a node gets checks: a `scout_checks.yaml` file (see loadScoutChecks) whose checks
 * materializeScoutChecks writes as ordinary machine directories in the machine store, as
 * Choria's Puppet module does; the machine manager then runs and reloads them like any
 * other machine.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomicSync } from "../../core/util/index.js";
import { parseGoDuration } from "./duration.js";
import { MachineError } from "./errors.js";
import { watcherStateProtocol } from "./events.js";
import { validateManifest } from "./manifest.js";
import type { MachineManifest, TransitionDef, WatcherDef } from "./types.js";
import type { NagiosExecution, PerfData } from "./watchers/nagios.js";

// yaml loads on first use: a server that runs no machines never pays for it
const requireYaml = createRequire(import.meta.url);
const yaml = (): typeof import("yaml") => requireYaml("yaml") as typeof import("yaml");

/** The states a check reports (the nagios statuses). */
export const SCOUT_CHECK_STATES = ["UNKNOWN", "OK", "WARNING", "CRITICAL"] as const;
export const SCOUT_FORCE_CHECK = "FORCE_CHECK";
export const SCOUT_MAINTENANCE = "MAINTENANCE";
export const SCOUT_RESUME = "RESUME";

/** What the scout agent's actions fire (go-choria scout/agent/scout). */
export const SCOUT_ACTION_TRANSITIONS = {
  trigger: SCOUT_FORCE_CHECK,
  maintenance: SCOUT_MAINTENANCE,
  resume: SCOUT_RESUME,
} as const;
export type ScoutAction = keyof typeof SCOUT_ACTION_TRANSITIONS;

/** A check as written in scout_checks.yaml (field names and defaults from choria::scout_check). */
export interface ScoutCheckDefinition {
  name: string;
  /** a Nagios plugin command; run with /bin/sh -c from the check's directory */
  plugin?: string;
  /** `heartbeat` or `choria_status` */
  builtin?: string;
  /** appended to plugin */
  arguments?: string;
  /** how long the plugin may run (default 10s) */
  timeout?: string;
  /** default 5m */
  check_interval?: string;
  remediate_command?: string;
  /** states in which remediation runs (default CRITICAL) */
  remediate_states?: string[];
  /** default 15m */
  remediate_interval?: string;
  annotations?: Record<string, string>;
  /** choria_status: most time allowed since the last message (required for it) */
  last_message?: string;
  /** choria_status: CRITICAL when the token expires sooner than this */
  token_expire?: string;
}

const DEFINITION_KEYS = [
  "name",
  "plugin",
  "builtin",
  "arguments",
  "timeout",
  "check_interval",
  "remediate_command",
  "remediate_states",
  "remediate_interval",
  "annotations",
  "last_message",
  "token_expire",
] as const;

const NAME_RE = /^[a-zA-Z][a-zA-Z0-9_-]+$/;
const CHECK_STATES: readonly string[] = SCOUT_CHECK_STATES;

function bad(path: string, msg: string): MachineError {
  return new MachineError("bad_manifest", `${path}: ${msg}`);
}

/** Checks a definition read from YAML; `path` prefixes every error ("scout_checks.yaml: checks.mailq"). */
export function validateScoutCheck(raw: unknown, path: string): ScoutCheckDefinition {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) throw bad(path, "a check must be a map");
  const o = raw as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!(DEFINITION_KEYS as readonly string[]).includes(k))
      throw bad(`${path}.${k}`, `unknown key (known: ${DEFINITION_KEYS.join(", ")})`);
  }
  const str = (k: keyof ScoutCheckDefinition): string | undefined => {
    const v = o[k];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "string") throw bad(`${path}.${k}`, `must be a string, got ${JSON.stringify(v)}`);
    return v;
  };
  const dur = (k: keyof ScoutCheckDefinition): string | undefined => {
    const v = str(k);
    if (v === undefined) return undefined;
    if (parseGoDuration(v, `${path}.${k}`) <= 0) throw bad(`${path}.${k}`, "must be more than 0");
    return v;
  };
  const name = str("name");
  if (!name) throw bad(`${path}.name`, "is required");
  if (!NAME_RE.test(name)) throw bad(`${path}.name`, `"${name}" must match ${NAME_RE.source}`);
  const def: ScoutCheckDefinition = { name };
  const plugin = str("plugin");
  const builtin = str("builtin");
  if (plugin && builtin) throw bad(path, "set plugin or builtin, not both");
  if (!plugin && !builtin) throw bad(path, "plugin or builtin is required");
  if (plugin !== undefined) def.plugin = plugin;
  if (builtin !== undefined) {
    if (builtin !== "heartbeat" && builtin !== "choria_status")
      throw bad(`${path}.builtin`, `unknown builtin "${builtin}" (one of heartbeat, choria_status)`);
    def.builtin = builtin;
  }
  const args = str("arguments");
  if (args !== undefined) {
    if (!plugin) throw bad(`${path}.arguments`, "only a plugin takes arguments");
    def.arguments = args;
  }
  for (const k of [
    "timeout",
    "check_interval",
    "remediate_interval",
    "last_message",
    "token_expire",
  ] as const) {
    const v = dur(k);
    if (v !== undefined) def[k] = v;
  }
  if (def.check_interval !== undefined && parseGoDuration(def.check_interval, "") < 500)
    throw bad(`${path}.check_interval`, "must be at least 500ms");
  if (def.remediate_interval !== undefined && parseGoDuration(def.remediate_interval, "") < 500)
    throw bad(`${path}.remediate_interval`, "must be at least 500ms");
  if (builtin === "choria_status" && def.last_message === undefined)
    throw bad(`${path}.last_message`, "is required for the choria_status builtin");
  const rc = str("remediate_command");
  if (rc !== undefined && rc.trim() !== "") def.remediate_command = rc;
  if (o.remediate_states !== undefined && o.remediate_states !== null) {
    const rs = o.remediate_states;
    if (!Array.isArray(rs)) throw bad(`${path}.remediate_states`, "must be a list of states");
    rs.forEach((s, i) => {
      if (typeof s !== "string" || !CHECK_STATES.includes(s))
        throw bad(`${path}.remediate_states[${i}]`, `must be one of ${CHECK_STATES.join(", ")}`);
    });
    def.remediate_states = rs as string[];
  }
  if (o.annotations !== undefined && o.annotations !== null) {
    const a = o.annotations;
    if (typeof a !== "object" || Array.isArray(a))
      throw bad(`${path}.annotations`, "must be a map of strings");
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(a as Record<string, unknown>)) {
      if (typeof v !== "string" && typeof v !== "number" && typeof v !== "boolean")
        throw bad(`${path}.annotations.${k}`, "must be a string");
      out[k] = String(v);
    }
    def.annotations = out;
  }
  return def;
}

/**
 * The machine for a check: choria::scout_check's machine, with Chorus' defaults
 * (timeout 10s, check_interval 5m, remediate_interval 15m, remediate_states [CRITICAL]).
 */
export function scoutCheckManifest(
  input: ScoutCheckDefinition,
  path = `scout check ${input.name}`,
): MachineManifest {
  const def = validateScoutCheck(input, path);
  const checkStates = [...SCOUT_CHECK_STATES];
  const props: Record<string, unknown> = def.plugin
    ? { plugin: def.arguments ? `${def.plugin} ${def.arguments}` : def.plugin }
    : { builtin: def.builtin };
  props.timeout = def.timeout ?? "10s";
  if (def.annotations && Object.keys(def.annotations).length > 0) props.annotations = def.annotations;
  if (def.last_message) props.last_message = def.last_message;
  if (def.token_expire) props.token_expire = def.token_expire;
  const watchers: WatcherDef[] = [
    {
      name: "check",
      type: "nagios",
      interval: def.check_interval ?? "5m",
      state_match: checkStates,
      properties: props,
    },
  ];
  const remediateStates = def.remediate_states ?? ["CRITICAL"];
  if (def.remediate_command && remediateStates.length > 0) {
    watchers.push({
      name: "remediate",
      type: "exec",
      interval: def.remediate_interval ?? "15m",
      state_match: remediateStates,
      // a successful remediation makes the result unknown until the next check
      success_transition: "UNKNOWN",
      properties: { command: def.remediate_command },
    });
  }
  const fromAny = [...checkStates, SCOUT_FORCE_CHECK];
  const transitions: TransitionDef[] = [
    ...checkStates.map((s) => ({ name: s, from: fromAny, destination: s })),
    { name: SCOUT_FORCE_CHECK, from: checkStates, destination: SCOUT_FORCE_CHECK },
    { name: SCOUT_MAINTENANCE, from: fromAny, destination: SCOUT_MAINTENANCE },
    { name: SCOUT_RESUME, from: [SCOUT_MAINTENANCE], destination: SCOUT_FORCE_CHECK },
  ];
  const manifest: MachineManifest = {
    name: def.name,
    version: "1.0.0",
    initial_state: "UNKNOWN",
    transitions,
    watchers,
  };
  // the engine's own checks (watcher properties included) so a bad check fails here, named
  return validateManifest(manifest, path);
}

/** A Scout check is a machine with a nagios watcher (go-choria aagent/info.go). */
export function isScoutMachine(m: { manifest: MachineManifest }): boolean {
  return m.manifest.watchers.some((w) => w.type === "nagios");
}

/** What `chorus scout status`, the scout agent and discovery see of one check. */
export interface ScoutCheckState {
  name: string;
  /** the machine's state: OK, WARNING, CRITICAL, UNKNOWN, MAINTENANCE or FORCE_CHECK */
  state: string;
  /** the nagios status of the last check (or of the state it was moved to) */
  status: string;
  status_code: number;
  output: string;
  perfdata: PerfData[];
  /** the last results, oldest first (at most 10) */
  history: NagiosExecution[];
  /** unix seconds of the last check, 0 before one ran */
  check_time: number;
  /** seconds the last check took */
  runtime: number;
  annotations: Record<string, string>;
  plugin: string;
}

interface MachineLike {
  name: string;
  state(): string;
  watcherSnapshots(): { name: string; type: string; state: Record<string, unknown> }[];
}

/** The check's state from its machine's nagios watcher. */
export function scoutCheckState(m: MachineLike): ScoutCheckState {
  const snap = m.watcherSnapshots().find((w) => w.type === "nagios")?.state ?? {};
  const s = <T>(k: string, dflt: T): T => (snap[k] !== undefined ? (snap[k] as T) : dflt);
  return {
    name: m.name,
    state: m.state(),
    status: s("status", "UNKNOWN"),
    status_code: s("status_code", 3),
    output: s("output", ""),
    perfdata: s("perfdata", []),
    history: s("history", []),
    check_time: s("check_time", 0),
    runtime: s("runtime", 0),
    annotations: s("annotations", {}),
    plugin: s("plugin", ""),
  };
}

/** One entry of the scout agent's `checks` reply, shaped as go-choria's CheckState. */
export interface ScoutCheckWire {
  name: string;
  state: string;
  version: string;
  /** unix seconds the machine started */
  start_time: number;
  /** the nagios watcher's state notification (io.choria.machine.watcher.nagios.v1.state) */
  status: Record<string, unknown> | null;
}

/** A check as the scout agent's `checks` action reports it, so Choria's scout clients read it. */
export function scoutCheckWire(
  m: MachineLike & { id: string; version: string; startTime: number },
  identity: string,
): ScoutCheckWire {
  const w = m.watcherSnapshots().find((x) => x.type === "nagios");
  return {
    name: m.name,
    state: m.state(),
    version: m.version,
    start_time: m.startTime,
    status: w
      ? {
          ...w.state,
          protocol: watcherStateProtocol("nagios"),
          identity,
          id: m.id,
          version: m.version,
          timestamp: Math.floor(Date.now() / 1000),
          machine: m.name,
          name: w.name,
          type: "nagios",
        }
      : null,
  };
}

export type ScoutTransitionResult = "transitioned" | "skipped" | "failed";

interface TransitionableMachine {
  availableTransitions(): string[];
  transition(name: string, info?: string): boolean;
}

/**
 * One scout agent action on one check, decided as go-choria does: skipped when the
 * transition is not valid from the current state (resume of a check not in maintenance,
 * trigger during maintenance), failed when firing it fails, else transitioned.
 * `trigger` fires FORCE_CHECK, whose nagios watcher checks at once.
 */
export function scoutTransition(m: TransitionableMachine, action: ScoutAction): ScoutTransitionResult {
  const t = SCOUT_ACTION_TRANSITIONS[action];
  if (!m.availableTransitions().includes(t)) return "skipped";
  try {
    return m.transition(t, `scout ${action}`) ? "transitioned" : "failed";
  } catch {
    return "failed";
  }
}

/**
 * An action over several checks (the scout agent's trigger/maintenance/resume): `names`
 * empty means every check; a name that is no check is failed.
 */
export function scoutTransitionChecks(
  machines: Iterable<MachineLike & TransitionableMachine & { manifest: MachineManifest }>,
  names: string[],
  action: ScoutAction,
): { transitioned: string[]; failed: string[]; skipped: string[] } {
  const checks = new Map<string, MachineLike & TransitionableMachine>();
  for (const m of machines) if (isScoutMachine(m)) checks.set(m.name, m);
  const out = { transitioned: [] as string[], failed: [] as string[], skipped: [] as string[] };
  for (const n of names.length > 0 ? names : [...checks.keys()].sort()) {
    const m = checks.get(n);
    out[m ? scoutTransition(m, action) : "failed"].push(n);
  }
  return out;
}

/**
 * Reads a scout_checks.yaml:
 *
 * ```yaml
 * annotations:            # optional: every check's, under its own
 *   environment: production
 * checks:                 # a map of name => check (Hiera style) or a list with names
 *   heartbeat: { builtin: heartbeat, check_interval: 1m }
 *   mailq:
 *     plugin: /usr/lib64/nagios/plugins/check_mailq
 *     arguments: -M exim -w 5 -c 10
 *     remediate_command: /usr/local/bin/runq.sh
 * ```
 *
 * Errors name the file and key (`scout_checks.yaml: checks.mailq.timeout: ...`).
 */
export function loadScoutChecks(file: string): ScoutCheckDefinition[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new MachineError("io", `${file}: cannot read: ${(err as Error).message}`, { cause: err });
  }
  let doc: unknown;
  try {
    doc = yaml().parse(text);
  } catch (err) {
    throw bad(file, `does not parse: ${(err as Error).message}`);
  }
  if (doc === null || doc === undefined) return [];
  if (typeof doc !== "object" || Array.isArray(doc)) throw bad(file, "must be a map with `checks`");
  const top = doc as Record<string, unknown>;
  for (const k of Object.keys(top))
    if (k !== "checks" && k !== "annotations")
      throw bad(`${file}: ${k}`, "unknown key (known: annotations, checks)");
  const nodeAnnotations: Record<string, string> = {};
  if (top.annotations !== undefined && top.annotations !== null) {
    if (typeof top.annotations !== "object" || Array.isArray(top.annotations))
      throw bad(`${file}: annotations`, "must be a map of strings");
    for (const [k, v] of Object.entries(top.annotations as Record<string, unknown>)) {
      if (typeof v !== "string" && typeof v !== "number" && typeof v !== "boolean")
        throw bad(`${file}: annotations.${k}`, "must be a string");
      nodeAnnotations[k] = String(v);
    }
  }
  const entries: [string, unknown][] = [];
  const checks = top.checks;
  if (checks === undefined || checks === null) return [];
  if (Array.isArray(checks)) checks.forEach((c, i) => entries.push([`checks[${i}]`, c]));
  else if (typeof checks === "object") {
    for (const [name, c] of Object.entries(checks as Record<string, unknown>)) {
      const body = c === null || c === undefined ? {} : c;
      if (typeof body !== "object" || Array.isArray(body))
        throw bad(`${file}: checks.${name}`, "must be a map");
      const named = body as Record<string, unknown>;
      if (named.name !== undefined && named.name !== name)
        throw bad(`${file}: checks.${name}.name`, `differs from its key "${name}"`);
      entries.push([`checks.${name}`, { ...named, name }]);
    }
  } else throw bad(`${file}: checks`, "must be a map of checks or a list");
  const seen = new Set<string>();
  return entries.map(([at, raw]) => {
    const def = validateScoutCheck(raw, `${file}: ${at}`);
    if (seen.has(def.name)) throw bad(`${file}: ${at}.name`, `duplicate check "${def.name}"`);
    seen.add(def.name);
    if (Object.keys(nodeAnnotations).length > 0) def.annotations = { ...nodeAnnotations, ...def.annotations };
    scoutCheckManifest(def, `${file}: ${at}`);
    return def;
  });
}

/** Marks machine directories written by materializeScoutChecks, so only those are removed. */
export const SCOUT_CHECK_MARKER = ".chorus-scout-check";

/**
 * Writes each check as `<store>/<name>/machine.yaml` (only when it changed, so the manager
 * does not restart unchanged checks) and removes check directories this function wrote
 * earlier whose check is gone. Directories of other machines are never touched; a check
 * whose name clashes with a machine not written here is refused.
 */
export function materializeScoutChecks(
  checks: ScoutCheckDefinition[],
  store: string,
): { written: string[]; unchanged: string[]; removed: string[] } {
  const out = { written: [] as string[], unchanged: [] as string[], removed: [] as string[] };
  mkdirSync(store, { recursive: true });
  const wanted = new Set<string>();
  for (const def of checks) {
    const manifest = scoutCheckManifest(def);
    const dir = join(store, def.name);
    const file = join(dir, "machine.yaml");
    const marker = join(dir, SCOUT_CHECK_MARKER);
    if (existsSync(dir) && !existsSync(marker))
      throw new MachineError(
        "io",
        `${dir}: a machine not made from a Scout check already has the name "${def.name}"`,
      );
    wanted.add(def.name);
    const text = `# written by chorus from a Scout check definition; edit the definition instead\n${yaml().stringify(manifest)}`;
    let current: string | undefined;
    try {
      current = readFileSync(file, "utf8");
    } catch {
      current = undefined;
    }
    if (current === text) {
      out.unchanged.push(def.name);
      continue;
    }
    mkdirSync(dir, { recursive: true });
    writeFileAtomicSync(marker, "");
    writeFileAtomicSync(file, text);
    out.written.push(def.name);
  }
  for (const name of readdirSync(store)) {
    if (wanted.has(name)) continue;
    const dir = join(store, name);
    if (!existsSync(join(dir, SCOUT_CHECK_MARKER))) continue;
    rmSync(dir, { recursive: true, force: true });
    out.removed.push(name);
  }
  return out;
}
