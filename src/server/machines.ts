/**
 * The server's machine host: runs the autonomous agents in plugin.choria.machine.store
 * (and Scout checks), answers choria_util, the scout agent and the scout/machine_state
 * data plugins, and publishes the machines' CloudEvents. Events are queued while the
 * broker is away and sent, in order, when it returns; the machines never wait for it.
 */
import { join } from "node:path";
import type { Registry } from "prom-client";
import type { NatsConnection } from "../core/connector/index.js";
import { flushNats } from "../core/connector/index.js";
import { Backoff, type Logger } from "../core/util/index.js";
import {
  MACHINE_TRANSITION_SUBJECT,
  MachineError,
  MachineManager,
  isScoutMachine,
  scoutCheckState,
  streamsMachineGovernor,
  streamsMachineKv,
  transitionCloudEvent,
  watcherStateCloudEvent,
  watcherStateSubject,
  type Machine,
  type MachineGovernor,
  type MachineHostServices,
  type MachineKv,
  type MachineManifest,
  type TransitionEventData,
  type WatcherFactory,
} from "../services/machines/index.js";

/** One running machine as go-choria reports it (aagent.MachineState). */
export interface MachineStateInfo {
  name: string;
  version: string;
  state: string;
  /** the directory the machine's manifest is in */
  path: string;
  /** the instance id (a UUID) */
  id: string;
  /** unix seconds */
  start_time: number;
  available_transitions: string[];
  /** true when the machine has a nagios watcher (a Scout check) */
  scout: boolean;
  /** Scout checks: the nagios watcher's state (status, history, perfdata...) */
  current_state?: Record<string, unknown>;
}

/** Which machine: any of name, version, path and instance id; all given must match. */
export interface MachineQuery {
  name?: string;
  version?: string;
  path?: string;
  instance?: string;
}

/** A machine the host could not load, and why. */
export interface MachineProblem {
  path: string;
  reason: string;
}

/** What agents and data plugins see of a node's machines. */
export interface MachineSource {
  states(): MachineStateInfo[];
  /** fires `transition` on the one machine matching `q`; throws MachineError when none or it is not valid */
  transition(q: MachineQuery, transition: string, info?: string): void;
  problems(): MachineProblem[];
}

/** Counters of the machine host, read by the server's Prometheus endpoint. */
export interface MachineHostStats {
  running: number;
  problems: number;
  /** transitions by machine name */
  transitions: Map<string, number>;
  events: EventQueueStats;
}

export interface EventQueueStats {
  /** waiting for the broker */
  queued: number;
  /** confirmed by the broker (a flush answered after the publish) */
  sent: number;
  /** dropped because the queue was full (the oldest go first) */
  dropped: number;
}

interface QueuedEvent {
  subject: string;
  data: Uint8Array;
}

/**
 * Machine events on their way to the broker. nats.js discards what was published
 * while it reconnects, so an event leaves this queue only once a flush after it has
 * been answered: nothing is lost while the broker is away (at worst an event is sent
 * twice when the connection dies between the broker taking it and answering the
 * flush). Bounded: when full the oldest event is dropped and counted.
 */
export class MachineEventQueue {
  private readonly items: QueuedEvent[] = [];
  private readonly max: number;
  private readonly log: Logger;
  private nc: NatsConnection | undefined;
  private online = false;
  private pumping = false;
  private wake: (() => void) | undefined;
  private readonly backoff = new Backoff({ initialMs: 100, maxMs: 2000 });
  private sentCount = 0;
  private droppedCount = 0;
  private readonly batch: number;

  constructor(o: { max: number; log: Logger; batch?: number }) {
    this.max = o.max;
    this.log = o.log;
    this.batch = o.batch ?? 256;
  }

  get stats(): EventQueueStats {
    return { queued: this.items.length, sent: this.sentCount, dropped: this.droppedCount };
  }

  push(subject: string, data: Uint8Array): void {
    if (this.items.length >= this.max) {
      this.items.shift();
      this.droppedCount++;
      if (this.droppedCount === 1 || this.droppedCount % 1000 === 0) {
        this.log.warn(
          { dropped: this.droppedCount, max: this.max },
          "machine event queue is full while the broker is away: dropping the oldest events",
        );
      }
    }
    this.items.push({ subject, data });
    this.kick();
  }

  /** Starts sending over `nc`, following its disconnects and reconnects. */
  attach(nc: NatsConnection): void {
    this.nc = nc;
    this.online = !nc.isClosed();
    void (async () => {
      for await (const s of nc.status()) {
        if (this.nc !== nc) break;
        if (s.type === "disconnect") this.online = false;
        else if (s.type === "reconnect") {
          this.online = true;
          this.backoff.reset();
          this.kick();
        }
      }
    })().catch(() => undefined);
    this.kick();
  }

  /** Stops sending (what is queued stays queued). */
  detach(): void {
    this.nc = undefined;
    this.online = false;
    this.kick();
  }

  /** Tries to send what is queued within `timeoutMs` (used before the connection closes). */
  async drain(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.items.length > 0 && this.nc && this.online && Date.now() < deadline) {
      if (!(await this.sendBatch(Math.max(100, deadline - Date.now())))) break;
    }
  }

  private kick(): void {
    if (this.wake) {
      const w = this.wake;
      this.wake = undefined;
      w();
    }
    if (!this.pumping && this.nc && this.online && this.items.length > 0) {
      this.pumping = true;
      void this.pump().finally(() => (this.pumping = false));
    }
  }

  private async pump(): Promise<void> {
    while (this.nc && this.items.length > 0) {
      if (!this.online) return; // the reconnect status kicks it again
      if (await this.sendBatch(5000)) {
        this.backoff.reset();
        continue;
      }
      await new Promise<void>((r) => {
        const t = setTimeout(r, this.backoff.next());
        this.wake = () => {
          clearTimeout(t);
          r();
        };
      });
    }
  }

  /** Publishes the head of the queue and removes it once the broker confirmed it. */
  private async sendBatch(timeoutMs: number): Promise<boolean> {
    const nc = this.nc;
    if (!nc || nc.isClosed()) return false;
    const n = Math.min(this.batch, this.items.length);
    const head = this.items.slice(0, n);
    try {
      for (const e of head) nc.publish(e.subject, e.data);
      await flushNats(nc, timeoutMs);
    } catch {
      return false;
    }
    // entries may have been dropped from the front while we waited: remove only ours
    let removed = 0;
    while (removed < n && this.items[0] === head[removed]) {
      this.items.shift();
      removed++;
    }
    this.sentCount += n;
    return true;
  }
}

export interface ServerMachineHostOptions {
  identity: string;
  /** the collective governors live in */
  collective: string;
  /** plugin.choria.machine.store; created when missing */
  directory: string;
  log: Logger;
  facts: () => Record<string, unknown>;
  statusFile?: string;
  tokenFile?: string;
  textfileDirectory?: string;
  /** the server's Prometheus registry (nagios and metric watchers export to it) */
  metrics?: Registry;
  /** events kept while the broker is away (default 10000) */
  maxQueuedEvents?: number;
  /** watcher types (default: all of them) */
  watcherTypes?: Record<string, WatcherFactory>;
  /** how often the store is re-read, ms (default: the manager's) */
  pollMs?: number;
  /** plugin.choria.machine.signing_key: overrides the public_key of machines watchers */
  machineSigningKey?: string;
  /** plugin.machines.download: run a manager machine installing signed specs from KV */
  download?: { bucket: string; key: string; pollIntervalMs: number; purge: boolean; publicKey?: string };
}

/**
 * go-choria's built-in machines manager (plugin.machines.download): one `machines`
 * watcher polling the signed spec in KV and keeping its machines installed.
 */
export function machinesManagerManifest(
  d: NonNullable<ServerMachineHostOptions["download"]>,
): MachineManifest {
  return {
    name: "machines_manager",
    version: "1.0.0",
    initial_state: "MANAGE",
    transitions: [
      { name: "enter_maintenance", from: ["MANAGE"], destination: "MAINTENANCE" },
      { name: "resume", from: ["MAINTENANCE"], destination: "MANAGE" },
    ],
    watchers: [
      {
        name: "manage_machines",
        type: "machines",
        state_match: ["MANAGE"],
        interval: `${Math.max(1, Math.round(d.pollIntervalMs / 1000))}s`,
        properties: {
          bucket: d.bucket,
          key: d.key,
          purge_unknown: d.purge,
          ...(d.publicKey !== undefined && { public_key: d.publicKey }),
        },
      },
    ],
  };
}

/** The machines of one server. Runs without a broker; attach() a connection to publish. */
export class ServerMachineHost implements MachineSource {
  readonly directory: string;
  readonly events: MachineEventQueue;
  private readonly o: ServerMachineHostOptions;
  private readonly manager: MachineManager;
  private readonly transitions = new Map<string, number>();
  private nc: NatsConnection | undefined;
  private kv: MachineKv | undefined;
  private governor: MachineGovernor | undefined;

  constructor(o: ServerMachineHostOptions) {
    this.o = o;
    this.directory = o.directory;
    this.events = new MachineEventQueue({ max: o.maxQueuedEvents ?? 10_000, log: o.log });
    const services: MachineHostServices = {
      identity: o.identity,
      facts: o.facts,
      // kv and governor need the broker: bound late, they fail plainly while it is away
      kv: {
        get: (b, k) => this.need(this.kv, "kv").get(b, k),
        watch: (b, k, cb) => this.need(this.kv, "kv").watch(b, k, cb),
      },
      governor: { run: (name, t, fn) => this.need(this.governor, "governor").run(name, t, fn) },
      ...(o.metrics && { metrics: o.metrics }),
      ...(o.textfileDirectory !== undefined && { textfileDirectory: o.textfileDirectory }),
      ...(o.statusFile !== undefined && { statusFile: o.statusFile }),
      ...(o.tokenFile !== undefined && { tokenFile: o.tokenFile }),
      events: {
        transition: (ev) => this.onTransition(ev),
        watcherState: (type, data) =>
          this.publish(watcherStateSubject(type), watcherStateCloudEvent(type, data)),
      },
      log: o.log,
      ...(o.machineSigningKey !== undefined && { machineSigningKey: o.machineSigningKey }),
    };
    this.manager = new MachineManager({
      directory: o.directory,
      services,
      ...(o.watcherTypes && { watcherTypes: o.watcherTypes }),
      ...(o.pollMs !== undefined && { pollMs: o.pollMs }),
    });
    // the machines watcher adds and removes spec machines through the manager
    services.manager = this.manager;
  }

  private need<T>(v: T | undefined, what: string): T {
    if (v === undefined) throw new MachineError("io", `${what} is not available: not connected to a broker`);
    return v;
  }

  async start(): Promise<void> {
    if (this.o.download) {
      // a directory without machine.yaml: the store scan leaves it alone; spec machines go beside it
      this.manager.add(
        machinesManagerManifest(this.o.download),
        join(this.directory, "machines_manager"),
        "file",
      );
    }
    await this.manager.start();
  }

  /** Publishes events over `nc`; kv and governor watchers use it too. */
  attach(nc: NatsConnection): void {
    this.nc = nc;
    this.kv = streamsMachineKv(nc);
    this.governor = streamsMachineGovernor(nc, { collective: this.o.collective, identity: this.o.identity });
    this.events.attach(nc);
  }

  /** Stops the machines, then gives queued events a moment to reach the broker. */
  async stop(drainMs = 2000): Promise<void> {
    await this.manager.stop();
    if (this.nc) await this.events.drain(drainMs);
    this.events.detach();
    this.nc = undefined;
    this.kv = undefined;
    this.governor = undefined;
  }

  /** The running machines (go-choria sorts them by name). */
  states(): MachineStateInfo[] {
    return this.manager
      .machines()
      .map(machineState)
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  machines(): Machine[] {
    return this.manager.machines();
  }

  transition(q: MachineQuery, transition: string, info = "rpc"): void {
    const found = this.manager
      .find({
        ...(q.name && { name: q.name }),
        ...(q.path && { path: q.path }),
        ...(q.instance && { instance: q.instance }),
      })
      .filter((m) => !q.version || m.version === q.version);
    const what = `name='${q.name ?? ""}', version='${q.version ?? ""}', path='${q.path ?? ""}', id='${q.instance ?? ""}'`;
    if (found.length === 0)
      throw new MachineError("not_found", `could not find machine matching criteria ${what}`);
    if (found.length > 1) throw new MachineError("not_found", `more than one machine matches ${what}`);
    const m = found[0] as Machine;
    if (!m.availableTransitions().includes(transition) || !m.transition(transition, info)) {
      throw new MachineError(
        "bad_transition",
        `transition ${transition} is not valid while in ${m.state()} state`,
      );
    }
  }

  problems(): MachineProblem[] {
    return this.manager.problems().map((p) => ({ path: p.path, reason: p.error }));
  }

  get stats(): MachineHostStats {
    return {
      running: this.manager.machines().length,
      problems: this.manager.problems().length,
      transitions: new Map(this.transitions),
      events: this.events.stats,
    };
  }

  private onTransition(ev: TransitionEventData): void {
    this.transitions.set(ev.machine, (this.transitions.get(ev.machine) ?? 0) + 1);
    this.publish(MACHINE_TRANSITION_SUBJECT, transitionCloudEvent(ev));
  }

  private publish(subject: string, event: unknown): void {
    this.events.push(subject, Buffer.from(JSON.stringify(event)));
  }
}

/**
 * go-choria's aagent.MachineState for one machine: a machine with a nagios watcher is
 * a Scout check, and its current_state is the check's state.
 */
export function machineState(m: Machine): MachineStateInfo {
  const scout = isScoutMachine(m);
  const current = scout ? (scoutCheckState(m) as unknown as Record<string, unknown>) : undefined;
  return {
    name: m.name,
    version: m.version,
    state: m.state(),
    path: m.directory,
    id: m.id,
    start_time: m.startTime,
    available_transitions: m.availableTransitions(),
    scout,
    ...(current !== undefined && { current_state: current }),
  };
}
