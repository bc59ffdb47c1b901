import { randomUUID } from "node:crypto";
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { silentLogger, type LogFields, type Logger } from "../../core/util/index.js";
import { parseGoDuration } from "./duration.js";
import { MachineError } from "./errors.js";
import { watcherStateProtocol } from "./events.js";
import { validateManifest } from "./manifest.js";
import type {
  MachineHostServices,
  MachineManifest,
  TransitionDef,
  TransitionEventData,
  Watcher,
  WatcherDef,
  WatcherFactory,
  WatcherHost,
} from "./types.js";
import { WATCHER_TYPES } from "./watchers/index.js";

/** Machine data is kept next to machine.yaml under this name, as go-choria does. */
export const MACHINE_DATA_FILE = "machine_data.json";

export interface MachineOptions {
  manifest: MachineManifest;
  directory: string;
  services: MachineHostServices;
  watcherTypes?: Record<string, WatcherFactory>;
  source?: "file" | "spec";
  /** tests: the delay before watchers start, instead of a random one up to splay_start */
  splayMs?: number;
  /** another machine's current state, for foreign_state_required (the manager provides it) */
  foreignState?: (machine: string) => string | undefined;
}

const nowSeconds = (): number => Math.floor(Date.now() / 1000);

function fieldLogger(log: Logger, fields: LogFields): Logger {
  const wrap =
    (level: keyof Logger) =>
    (f: LogFields | string, msg?: string): void => {
      if (typeof f === "string") log[level]({ ...fields }, f);
      else log[level]({ ...fields, ...f }, msg);
    };
  return { debug: wrap("debug"), info: wrap("info"), warn: wrap("warn"), error: wrap("error") };
}

/** The engine's side of one watcher: activity, interval ticks, runs that never overlap, announces. */
class WatcherRunner {
  active = false;
  seenSeq = -1;
  private tick: NodeJS.Timeout | undefined;
  private announceTick: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private ctrl: AbortController | undefined;
  private pending = false;
  watcher!: Watcher;

  constructor(
    private readonly machine: Machine,
    readonly def: WatcherDef,
    private readonly intervalMs: number | undefined,
    private readonly announceMs: number,
    private readonly log: Logger,
  ) {}

  private get interval(): number | undefined {
    return this.intervalMs ?? this.watcher.defaultIntervalMs;
  }

  private wantsActive(state: string): boolean {
    const sm = this.def.state_match ?? [];
    if (sm.length > 0 && !sm.includes(state)) return false;
    const fr = this.def.foreign_state_required;
    if (fr !== undefined) return this.machine.lookupForeignState(fr.machine_name) === fr.state;
    return true;
  }

  /** the machine is in `state` (a transition, the start, or a foreign machine changed) */
  update(state: string, seq: number, onlyIfActivityChanged = false): void {
    const active = this.wantsActive(state);
    if (onlyIfActivityChanged && active === this.active) return;
    this.seenSeq = seq;
    this.active = active;
    try {
      this.watcher.stateChanged?.(state, active);
    } catch (err) {
      this.log.error({ err }, "watcher failed handling a state change");
    }
    if (!this.watcher.run) return;
    clearInterval(this.tick);
    this.tick = undefined;
    if (active) {
      // go-choria's interval watchers check at once on every state change they are active in
      this.runNow(false);
      const every = this.interval;
      if (every !== undefined && every > 0) this.tick = setInterval(() => this.runNow(true), every);
    } else {
      this.pending = false;
      this.ctrl?.abort();
    }
  }

  private runNow(fromTick: boolean): void {
    if (!this.active || !this.machine.isRunning()) return;
    if (this.running) {
      // an interval tick is skipped while a run is under way; a state change is not lost
      if (!fromTick) this.pending = true;
      return;
    }
    this.startRun();
  }

  private startRun(): Promise<void> {
    const ctrl = new AbortController();
    this.ctrl = ctrl;
    const p = (async () => {
      try {
        await this.watcher.run!(ctrl.signal);
      } catch (err) {
        if (!ctrl.signal.aborted) this.log.error({ err }, "watcher run failed");
      }
    })().finally(() => {
      if (this.ctrl === ctrl) this.ctrl = undefined;
      if (this.running === p) this.running = undefined;
      if (this.pending) {
        this.pending = false;
        this.runNow(false);
      }
    });
    this.running = p;
    return p;
  }

  /** run now even when not active (an operator asked); waits for a run under way first */
  async trigger(): Promise<void> {
    if (!this.watcher.run) return;
    while (this.running) await this.running;
    await this.startRun();
  }

  startAnnouncing(): void {
    if (this.announceMs > 0)
      this.announceTick = setInterval(() => this.machine.announce(this), this.announceMs);
  }

  async stop(): Promise<void> {
    clearInterval(this.tick);
    clearInterval(this.announceTick);
    this.tick = this.announceTick = undefined;
    this.pending = false;
    this.active = false;
    this.ctrl?.abort();
    if (this.running) await this.running;
    try {
      await this.watcher.close?.();
    } catch (err) {
      this.log.error({ err }, "watcher failed to close");
    }
  }
}

/**
 * One autonomous agent: a finite-state machine whose watchers fire its transitions.
 * Transitions are synchronous; watchers hear of each state they are active in.
 */
export class Machine {
  readonly id: string = randomUUID();
  readonly name: string;
  readonly version: string;
  readonly directory: string;
  readonly source: "file" | "spec";
  readonly manifest: MachineManifest;

  private current: string;
  private seq = 0;
  private started = false;
  private running = false;
  private stopped = false;
  private notifying = false;
  private renotify = false;
  private startedAt = 0;
  private splayTimer: NodeJS.Timeout | undefined;
  private readonly transitions = new Map<string, TransitionDef>();
  private readonly runners: WatcherRunner[] = [];
  private readonly listeners = new Set<(ev: TransitionEventData) => void>();
  private readonly store: Record<string, unknown> = {};
  private readonly services: MachineHostServices;
  private readonly log: Logger;
  private readonly splayMs: number | undefined;
  private readonly foreignState: ((machine: string) => string | undefined) | undefined;

  constructor(o: MachineOptions) {
    const source = o.source ?? "file";
    const label = source === "file" ? join(o.directory, "machine.yaml") : `machine spec ${o.manifest.name}`;
    const types = o.watcherTypes ?? WATCHER_TYPES;
    // the schema and cross-references; the watchers are built for real just below
    this.manifest = validateManifest(o.manifest, label, types, false);
    this.name = o.manifest.name;
    this.version = o.manifest.version;
    this.directory = o.directory;
    this.source = source;
    this.services = o.services;
    this.splayMs = o.splayMs;
    this.foreignState = o.foreignState;
    this.current = o.manifest.initial_state;
    this.log = fieldLogger(o.services.log ?? silentLogger, { machine: this.name });
    for (const t of o.manifest.transitions) this.transitions.set(t.name, t);
    if (source === "file") this.loadData();

    o.manifest.watchers.forEach((def, i) => {
      const at = `watchers[${i}]`;
      const intervalMs =
        def.interval !== undefined ? parseGoDuration(def.interval, `${at}.interval`) : undefined;
      const announceMs =
        def.announce_interval !== undefined
          ? parseGoDuration(def.announce_interval, `${at}.announce_interval`)
          : 0;
      const log = fieldLogger(this.log, { watcher: def.name });
      const runner = new WatcherRunner(this, def, intervalMs, announceMs, log);
      try {
        runner.watcher = types[def.type]!(def, this.hostFor(def, runner, log), at);
      } catch (err) {
        const why = err instanceof Error ? err.message : String(err);
        throw new MachineError("bad_watcher", `${label}: ${why.startsWith(at) ? why : `${at}: ${why}`}`, {
          cause: err,
        });
      }
      this.runners.push(runner);
    });
  }

  private hostFor(def: WatcherDef, runner: WatcherRunner, log: Logger): WatcherHost {
    const info = (i?: string): string => i ?? def.name;
    return {
      machineName: this.name,
      machineVersion: this.version,
      directory: this.directory,
      services: this.services,
      state: () => this.current,
      data: () => this.data(),
      dataPut: (k, v) => this.dataPut(k, v),
      dataDelete: (k) => this.dataDelete(k),
      success: (i) => {
        if (def.success_transition) this.transition(def.success_transition, info(i));
      },
      fail: (i) => {
        if (def.fail_transition) this.transition(def.fail_transition, info(i));
      },
      fire: (t, i) => {
        this.transition(t, info(i));
      },
      announce: () => this.announce(runner),
      log,
    };
  }

  /** unix seconds when start() was called; 0 before */
  get startTime(): number {
    return this.startedAt;
  }

  state(): string {
    return this.current;
  }

  /** names of the transitions valid from the current state */
  availableTransitions(): string[] {
    return [...this.transitions.values()].filter((t) => t.from.includes(this.current)).map((t) => t.name);
  }

  /** Fires a transition; false (and no event) when it does not exist or is not valid now. */
  transition(name: string, info?: string): boolean {
    if (this.stopped) return false;
    const t = this.transitions.get(name);
    if (!t || !t.from.includes(this.current)) {
      this.log.debug({ transition: name, state: this.current }, "transition not valid in the current state");
      return false;
    }
    // go-choria's FSM treats a transition into the state it is in as no transition: no
    // event, and watchers are not restarted (a remediation would re-run on every check)
    if (t.destination === this.current) return true;
    const from = this.current;
    this.current = t.destination;
    this.seq++;
    const ev: TransitionEventData = {
      identity: this.services.identity,
      id: this.id,
      version: this.version,
      timestamp: nowSeconds(),
      machine: this.name,
      transition: name,
      from_state: from,
      to_state: t.destination,
      ...(info !== undefined ? { info } : {}),
    };
    this.log.info({ transition: name, from, to: t.destination, info }, "transition");
    try {
      this.services.events?.transition(ev);
    } catch (err) {
      this.log.error({ err }, "could not report a transition");
    }
    for (const cb of [...this.listeners]) {
      try {
        cb(ev);
      } catch (err) {
        this.log.error({ err }, "a transition listener failed");
      }
    }
    this.notifyWatchers();
    return true;
  }

  /**
   * Tells every watcher the current state. A watcher may fire a transition while being
   * told; then the pass repeats so every watcher ends up told the final state once.
   */
  private notifyWatchers(): void {
    if (!this.running) return;
    if (this.notifying) {
      this.renotify = true;
      return;
    }
    this.notifying = true;
    try {
      do {
        this.renotify = false;
        for (const r of this.runners) {
          if (!this.running) return;
          if (r.seenSeq !== this.seq) r.update(this.current, this.seq);
        }
      } while (this.renotify);
    } finally {
      this.notifying = false;
    }
  }

  watcherSnapshots(): { name: string; type: string; state: Record<string, unknown> }[] {
    return this.runners.map((r) => ({ name: r.def.name, type: r.def.type, state: this.safeSnapshot(r) }));
  }

  private safeSnapshot(r: WatcherRunner): Record<string, unknown> {
    try {
      return r.watcher.snapshot();
    } catch (err) {
      return { error: err instanceof Error ? err.message : String(err) };
    }
  }

  /** Runs a watcher now (its run() if it has one). */
  async triggerWatcher(name: string): Promise<void> {
    const r = this.runners.find((x) => x.def.name === name);
    if (!r) throw new MachineError("not_found", `machine ${this.name} has no watcher named "${name}"`);
    await r.trigger();
  }

  /** Publishes a watcher's state through services.events. */
  announce(r: WatcherRunner): void {
    const type = r.def.type;
    try {
      this.services.events?.watcherState(type, {
        ...this.safeSnapshot(r),
        protocol: watcherStateProtocol(type),
        identity: this.services.identity,
        id: this.id,
        version: this.version,
        timestamp: nowSeconds(),
        machine: this.name,
        name: r.def.name,
        type,
      });
    } catch (err) {
      this.log.error({ err }, "could not announce a watcher state");
    }
  }

  data(): Record<string, unknown> {
    return structuredClone(this.store);
  }

  dataPut(key: string, value: unknown): void {
    this.store[key] = value;
    this.saveData();
  }

  dataDelete(key: string): void {
    if (!(key in this.store)) return;
    delete this.store[key];
    this.saveData();
  }

  private loadData(): void {
    const f = join(this.directory, MACHINE_DATA_FILE);
    if (!existsSync(f)) return;
    try {
      const d: unknown = JSON.parse(readFileSync(f, "utf8"));
      if (d && typeof d === "object" && !Array.isArray(d)) Object.assign(this.store, d);
    } catch (err) {
      this.log.warn({ err, file: f }, "could not read machine data");
    }
  }

  private saveData(): void {
    if (this.source !== "file") return;
    const f = join(this.directory, MACHINE_DATA_FILE);
    try {
      const tmp = `${f}.${process.pid}.tmp`;
      writeFileSync(tmp, JSON.stringify(this.store));
      renameSync(tmp, f);
    } catch (err) {
      this.log.warn({ err, file: f }, "could not save machine data");
    }
  }

  onTransition(cb: (ev: TransitionEventData) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  /** @internal whether watchers are running (after the splay, before stop) */
  isRunning(): boolean {
    return this.running;
  }

  /** @internal */
  lookupForeignState(machine: string): string | undefined {
    if (machine === this.name) return this.current;
    return this.foreignState?.(machine);
  }

  /**
   * Another machine fired a transition (the manager routes them): fires this machine's
   * transitions that subscribe to it and re-checks watchers that require that machine's state.
   */
  foreignTransition(ev: TransitionEventData): void {
    if (ev.machine === this.name && ev.id === this.id) return;
    for (const t of this.transitions.values()) {
      const subs = t.subscribe === undefined ? [] : Array.isArray(t.subscribe) ? t.subscribe : [t.subscribe];
      if (subs.some((s) => s.machine_name === ev.machine && s.event === ev.transition)) {
        this.transition(t.name, `subscribe ${ev.machine}#${ev.transition}`);
      }
    }
    if (!this.running) return;
    for (const r of this.runners) {
      if (r.def.foreign_state_required?.machine_name === ev.machine) r.update(this.current, this.seq, true);
    }
  }

  start(): void {
    if (this.started || this.stopped) return;
    this.started = true;
    this.startedAt = nowSeconds();
    const splay =
      this.splayMs ??
      ((this.manifest.splay_start ?? 0) > 0 ? Math.random() * this.manifest.splay_start! * 1000 : 0);
    const begin = (): void => {
      this.splayTimer = undefined;
      if (this.stopped) return;
      this.log.info({ state: this.current, directory: this.directory }, "starting machine");
      this.running = true;
      for (const r of this.runners) r.startAnnouncing();
      this.notifyWatchers();
    };
    if (splay > 0) {
      this.log.info({ splayMs: Math.round(splay) }, "sleeping before starting watchers");
      this.splayTimer = setTimeout(begin, splay);
    } else begin();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.running = false;
    clearTimeout(this.splayTimer);
    await Promise.allSettled(this.runners.map((r) => r.stop()));
    this.log.info("machine stopped");
  }
}
