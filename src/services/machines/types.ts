/**
 * Autonomous agents (Choria's "machines"): finite-state machines driven by watchers.
 * These are the shapes shared by the engine (machine.ts, manager.ts), the watchers
 * (watchers/*.ts) and the hosts that run them (server, emulator, `chorus machine run`).
 */

/** Another machine's transition that fires one of ours. */
export interface MachineSubscription {
  machine_name: string;
  event: string;
}

/** A transition of the machine (schemas/choria/machine/v1/manifest.json). */
export interface TransitionDef {
  name: string;
  from: string[];
  destination: string;
  description?: string;
  /**
   * fire this transition when a foreign machine fires its `event`; go-choria's manifests
   * give a list (its Go type), the published schema a single one: both are accepted
   */
  subscribe?: MachineSubscription | MachineSubscription[];
}

/** A watcher as written in machine.yaml; `properties` are checked by the watcher's type. */
export interface WatcherDef {
  name: string;
  type: string;
  /** states in which the watcher runs; empty or absent: every state */
  state_match?: string[];
  foreign_state_required?: { machine_name: string; state: string };
  fail_transition?: string;
  success_transition?: string;
  /** Go duration ("10s", "5m", "1h"); how often an interval watcher runs while active */
  interval?: string;
  /** Go duration; how often the watcher's state is announced even when nothing changed */
  announce_interval?: string;
  properties?: Record<string, unknown>;
}

/** machine.yaml, validated. */
export interface MachineManifest {
  name: string;
  /** SemVer */
  version: string;
  initial_state: string;
  /** seconds: a random delay of up to this before the first watcher runs */
  splay_start?: number;
  transitions: TransitionDef[];
  watchers: WatcherDef[];
}

/** io.choria.machine.v1.transition's data (go-choria aagent/machine/notifications.go). */
export interface TransitionEventData {
  identity: string;
  id: string;
  version: string;
  timestamp: number;
  machine: string;
  transition: string;
  from_state: string;
  to_state: string;
  /** Chorus extra: why (the watcher that fired it, or "rpc", "subscribe") */
  info?: string;
}

/**
 * What a machine reports. The host turns these into CloudEvents on
 * `choria.machine.transition` and `choria.machine.watcher.<type>.state`, keeps them
 * while the broker is away and sends them when it returns.
 */
export interface MachineEventSink {
  transition(ev: TransitionEventData): void;
  /** a watcher's state (its `snapshot()` plus identity, id, version, timestamp, machine, name, type) */
  watcherState(type: string, data: Record<string, unknown>): void;
}

/** Key-value access a watcher may use (Choria Streams KV through services/streams). */
export interface MachineKv {
  get(bucket: string, key: string): Promise<{ value: Uint8Array; revision: number } | undefined>;
  /** calls onChange for every update of the key until the returned function is called */
  watch(bucket: string, key: string, onChange: (value: Uint8Array | undefined) => void): Promise<() => void>;
}

/** Counted capacity a watcher may take before running (Choria Streams governors). */
export interface MachineGovernor {
  /** runs fn holding one slot of the named governor; throws when none frees within timeoutMs */
  run<T>(name: string, timeoutMs: number, fn: () => Promise<T>): Promise<T>;
}

/** What the host provides to every machine it runs. Every field but identity is optional. */
export interface MachineHostServices {
  identity: string;
  /** the node's facts (WATCHER_FACTS, expressions, templates) */
  facts?: () => Record<string, unknown>;
  kv?: MachineKv;
  governor?: MachineGovernor;
  /** Prometheus registry (prom-client) for metric and nagios watchers */
  metrics?: import("prom-client").Registry;
  /** where nagios/metric watchers may write Prometheus textfiles, if wanted */
  textfileDirectory?: string;
  events?: MachineEventSink;
  /** the server's status file (the nagios builtin `choria_status` reads it) */
  statusFile?: string;
  /** the node's token, whose expiry `choria_status` checks (token_expire) */
  tokenFile?: string;
  log?: import("../../core/util/index.js").Logger;
  /**
   * The machine manager, for the `machines` (plugins) watcher that installs machines from
   * signed specs: it adds them with source "spec" and removes them when purged.
   */
  manager?: MachineSpecManager;
  /**
   * hex ed25519 public key that signs machine specs (go-choria's
   * plugin.choria.machine.signing_key); when set it overrides a watcher's `public_key`
   */
  machineSigningKey?: string;
}

/** What the `machines` watcher needs of the manager (MachineManager fits). */
export interface MachineSpecManager {
  add(manifest: MachineManifest, directory: string, source: "spec"): unknown;
  remove(name: string): Promise<boolean>;
  machines(): { name: string; source: string; directory: string }[];
  /** the machines directory; spec machines go under it (default: beside the watcher's machine) */
  readonly store?: string;
}

/** What a watcher sees of the machine that owns it. */
export interface WatcherHost {
  readonly machineName: string;
  readonly machineVersion: string;
  /** the directory machine.yaml is in (relative paths in properties resolve here) */
  readonly directory: string;
  readonly services: MachineHostServices;
  /** the machine's current state */
  state(): string;
  /** machine data: a small key-value store kept with the machine (kv watcher writes it) */
  data(): Record<string, unknown>;
  dataPut(key: string, value: unknown): void;
  dataDelete(key: string): void;
  /** the watcher succeeded: fires its success_transition if it has one */
  success(info?: string): void;
  /** the watcher failed: fires its fail_transition if it has one */
  fail(info?: string): void;
  /** fire a named transition (nagios watchers fire OK/WARNING/CRITICAL/UNKNOWN) */
  fire(transition: string, info?: string): void;
  /** publish this watcher's state now (also done every announce_interval) */
  announce(): void;
  log: import("../../core/util/index.js").Logger;
}

/**
 * One watcher. The machine calls `stateChanged` on every transition (and once at start),
 * runs `run()` every `interval` while active (immediately on becoming active), and calls
 * `close()` when the machine stops. Event-driven watchers (timer, schedule, kv watch)
 * use stateChanged and do not need run.
 */
export interface Watcher {
  readonly def: WatcherDef;
  readonly type: string;
  /**
   * Added by the engine: how often run() is called (ms) when `def.interval` is absent, the
   * type's default (file 5s, expression 10s). Absent too: run() only when the machine enters
   * an active state.
   */
  readonly defaultIntervalMs?: number;
  /** the machine entered `state`; `active` is whether state_match (and foreign state) allow running */
  stateChanged?(state: string, active: boolean): void;
  /** one check now; resolves when done (interval ticks and `trigger` call this) */
  run?(signal: AbortSignal): Promise<void>;
  /** the watcher's state for events, status and `chorus machine watch` */
  snapshot(): Record<string, unknown>;
  close?(): void | Promise<void>;
}

/** Makes a watcher of one type; throws MachineError("bad_watcher", "<path>: why") on bad properties. */
export type WatcherFactory = (def: WatcherDef, host: WatcherHost, path: string) => Watcher;
