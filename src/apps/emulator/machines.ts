import { existsSync, readdirSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Logger } from "pino";
import type { NatsConnection } from "../../core/connector/index.js";
import {
  MACHINE_TRANSITION_SUBJECT,
  MachineError,
  MachineManager,
  loadManifestFile,
  parseManifest,
  scoutCheckManifest,
  transitionCloudEvent,
  watcherStateCloudEvent,
  watcherStateSubject,
  type MachineEventSink,
  type MachineManifest,
  type WatcherDef,
} from "../../services/machines/index.js";
import {
  MachineEventQueue,
  machineState,
  type MachineProblem,
  type MachineQuery,
  type MachineSource,
  type MachineStateInfo,
  type NodeRuntime,
} from "../../server/index.js";
import { EmulatorError } from "./errors.js";

/**
 * Machines every emulated node runs (plain data: it crosses into worker threads).
 * Each node gets its own instance of each machine, with the node's identity and facts.
 */
export interface EmulatorMachinesSpec {
  /** a machine's directory, or a store of them (one sub-directory each, with machine.yaml) */
  directory?: string;
  /** built-in Scout checks per node, named check_1 .. check_N */
  scoutChecks?: number;
  /**
   * nodes whose Scout checks go CRITICAL: those whose index is a multiple of this
   * (they get the fact `scout_fault: true`); 0 or absent: none fail
   */
  failEvery?: number;
  /** how often the built-in checks run (Go duration, default "1m") */
  checkInterval?: string;
}

/** Machine figures summed over a shard's nodes. */
export interface EmulatedMachinesStats {
  /** machines running */
  machines: number;
  watchers: number;
  transitions: number;
  /** machine events waiting for the broker, sent, and dropped */
  events: { queued: number; sent: number; dropped: number };
}

/**
 * One built-in Scout check: Scout's check machine (scoutCheckManifest) running the
 * `heartbeat` builtin, plus a `fault` expression watcher over the `scout_fault` fact
 * that moves a faulty node's check from OK to CRITICAL. The heartbeat does not run in
 * CRITICAL (it would flap back to OK each interval), so a faulty node stays CRITICAL;
 * `scout trigger` and `resume` force a check (OK), and the fault takes it back.
 */
export function emulatedScoutCheck(name: string, interval: string): MachineManifest {
  const base = scoutCheckManifest({ name, builtin: "heartbeat", check_interval: interval });
  const watchers: WatcherDef[] = base.watchers.map((w) =>
    w.type === "nagios" ? { ...w, state_match: ["UNKNOWN", "OK", "WARNING"] } : w,
  );
  watchers.push({
    name: "fault",
    type: "expression",
    state_match: ["OK"],
    interval,
    fail_transition: "CRITICAL",
    properties: { fail_when: "facts.scout_fault == true" },
  });
  return parseManifest(JSON.stringify({ ...base, watchers }), `emulated scout check ${name}`);
}

/** The machine.yaml files of a machine's directory or of a store of machines. */
function manifestFiles(path: string): string[] {
  const own = ["machine.yaml", "machine.yml", "machine.json"].map((n) => join(path, n)).find(existsSync);
  if (own) return [own];
  return readdirSync(path, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .flatMap((e) => {
      const f = ["machine.yaml", "machine.yml", "machine.json"]
        .map((n) => join(path, e.name, n))
        .find(existsSync);
      return f ? [f] : [];
    })
    .sort();
}

/** The fact that marks a node whose built-in Scout checks fail. */
export function scoutFault(spec: EmulatorMachinesSpec | undefined, index: number): boolean {
  const every = spec?.failEvery ?? 0;
  return every > 0 && (spec?.scoutChecks ?? 0) > 0 && index % every === 0;
}

/**
 * The machines of one shard: the manifests are read and checked once, then each node
 * runs its own instances of them. Events from every node leave through one queue on the
 * shard's connection (kept while the broker is away, as a server's are).
 */
export class EmulatedMachines {
  readonly manifests: { manifest: MachineManifest; directory: string }[] = [];
  readonly events: MachineEventQueue;
  private readonly hosts: EmulatedMachineHost[] = [];
  private transitionCount = 0;
  private readonly sink: MachineEventSink;

  private readonly log: Logger;

  constructor(spec: EmulatorMachinesSpec, log: Logger) {
    // every node's machines log through this: a fleet's transitions at info would flood
    // the emulator's log (they are published as events); warnings and errors still show
    this.log = log.child(
      { component: "machines" },
      { level: log.isLevelEnabled("warn") ? "warn" : log.level },
    );
    if (spec.directory !== undefined) {
      const dir = resolve(spec.directory);
      if (!existsSync(dir) || !statSync(dir).isDirectory())
        throw new EmulatorError("usage", `machines: ${spec.directory} is not a directory`);
      const files = manifestFiles(dir);
      if (files.length === 0)
        throw new EmulatorError(
          "usage",
          `machines: no machine.yaml in ${spec.directory} or its sub-directories`,
        );
      for (const f of files) {
        try {
          this.manifests.push({ manifest: loadManifestFile(f), directory: join(f, "..") });
        } catch (err) {
          // every node would refuse it the same way: refuse it once, before starting
          throw new EmulatorError("usage", `machines: ${(err as Error).message}`, { cause: err });
        }
      }
    }
    const checks = spec.scoutChecks ?? 0;
    if (!Number.isInteger(checks) || checks < 0)
      throw new EmulatorError("usage", `scoutChecks must be a whole number, got ${checks}`);
    for (let k = 1; k <= checks; k++)
      this.manifests.push({
        manifest: emulatedScoutCheck(`check_${k}`, spec.checkInterval ?? "1m"),
        directory: "/",
      });
    this.events = new MachineEventQueue({ max: 100_000, log });
    this.sink = {
      transition: (ev) => {
        this.transitionCount++;
        this.events.push(MACHINE_TRANSITION_SUBJECT, Buffer.from(JSON.stringify(transitionCloudEvent(ev))));
      },
      watcherState: (type, data) =>
        this.events.push(
          watcherStateSubject(type),
          Buffer.from(JSON.stringify(watcherStateCloudEvent(type, data))),
        ),
    };
  }

  get names(): string[] {
    return this.manifests.map((m) => m.manifest.name);
  }

  /** Gives a node its machines (started by start()). */
  host(node: NodeRuntime): EmulatedMachineHost {
    const h = new EmulatedMachineHost(node, this.manifests, this.sink, this.log);
    node.machines = h;
    this.hosts.push(h);
    return h;
  }

  /** Starts every node's machines and sends their events over `nc`. */
  async start(nc: NatsConnection | undefined): Promise<void> {
    if (nc) this.events.attach(nc);
    for (const h of this.hosts) await h.start();
  }

  stats(): EmulatedMachinesStats {
    const watchers = this.manifests.reduce((n, m) => n + m.manifest.watchers.length, 0);
    return {
      machines: this.hosts.length * this.manifests.length,
      watchers: this.hosts.length * watchers,
      transitions: this.transitionCount,
      events: this.events.stats,
    };
  }

  async stop(): Promise<void> {
    await Promise.allSettled(this.hosts.map((h) => h.stop()));
    await this.events.drain(2000);
    this.events.detach();
  }
}

/** One node's machines, as choria_util, the scout agent and the scout data plugin see them. */
export class EmulatedMachineHost implements MachineSource {
  private readonly manager: MachineManager;

  constructor(
    node: NodeRuntime,
    manifests: readonly { manifest: MachineManifest; directory: string }[],
    events: MachineEventSink,
    log: Logger,
  ) {
    this.manager = new MachineManager({
      services: {
        identity: node.identity,
        facts: () => node.facts,
        events,
        log,
      },
    });
    // "spec": the instances share a directory, so none writes machine data into it
    for (const m of manifests) this.manager.add(m.manifest, m.directory, "spec");
  }

  start(): Promise<void> {
    return this.manager.start();
  }

  stop(): Promise<void> {
    return this.manager.stop();
  }

  states(): MachineStateInfo[] {
    return this.manager
      .machines()
      .map(machineState)
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  transition(q: MachineQuery, transition: string, info = "rpc"): void {
    const found = this.manager
      .find({ ...(q.name && { name: q.name }), ...(q.instance && { instance: q.instance }) })
      .filter((m) => (!q.version || m.version === q.version) && (!q.path || m.directory === q.path));
    if (found.length !== 1)
      throw new MachineError(
        "not_found",
        found.length === 0
          ? "could not find a machine matching the criteria"
          : "more than one machine matches",
      );
    const m = found[0]!;
    if (!m.availableTransitions().includes(transition) || !m.transition(transition, info))
      throw new MachineError(
        "bad_transition",
        `transition ${transition} is not valid while in ${m.state()} state`,
      );
  }

  problems(): MachineProblem[] {
    return [];
  }
}
