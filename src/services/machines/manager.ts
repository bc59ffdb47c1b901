import { createHash } from "node:crypto";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { silentLogger, type Logger } from "../../core/util/index.js";
import { MachineError } from "./errors.js";
import { Machine } from "./machine.js";
import { parseManifest } from "./manifest.js";
import type { MachineHostServices, MachineManifest, TransitionEventData, WatcherFactory } from "./types.js";
import { WATCHER_TYPES } from "./watchers/index.js";

export interface MachineManagerOptions {
  /** holds one sub-directory per machine, each with a machine.yaml (or machine.json) */
  directory?: string;
  services: MachineHostServices;
  watcherTypes?: Record<string, WatcherFactory>;
  /** how often the directory is checked for new, changed and removed machines (default 5000) */
  pollMs?: number;
}

interface Loaded {
  file: string;
  hash: string;
  machine?: Machine;
}

const MANIFEST_NAMES = ["machine.yaml", "machine.yml", "machine.json"];

/**
 * Runs machines: those in a directory (re-read every pollMs) and those added by
 * specs. A broken manifest is reported, never fatal; a machine sees the others' states
 * (foreign_state_required) and their transitions (subscribe).
 */
export class MachineManager {
  private readonly byName = new Map<string, Machine>();
  /** directory machines by manifest file */
  private readonly files = new Map<string, Loaded>();
  private readonly problemList = new Map<string, string>();
  private readonly unsubscribe = new Map<Machine, () => void>();
  private readonly log: Logger;
  private readonly types: Record<string, WatcherFactory>;
  private poll: NodeJS.Timeout | undefined;
  private started = false;
  private scanning = false;
  /** manifests refused since start (each distinct broken content counts once) */
  loadErrors = 0;

  constructor(private readonly o: MachineManagerOptions) {
    this.log = o.services.log ?? silentLogger;
    this.types = o.watcherTypes ?? WATCHER_TYPES;
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    for (const m of this.byName.values()) m.start();
    if (this.o.directory === undefined) return;
    await this.scan();
    this.poll = setInterval(() => void this.scan(), this.o.pollMs ?? 5000);
  }

  async stop(): Promise<void> {
    this.started = false;
    clearInterval(this.poll);
    this.poll = undefined;
    const all = [...this.byName.values()];
    this.byName.clear();
    this.files.clear();
    await Promise.allSettled(all.map((m) => this.retire(m)));
  }

  machines(): Machine[] {
    return [...this.byName.values()];
  }

  find(q: { name?: string; instance?: string; path?: string }): Machine[] {
    const path = q.path !== undefined ? resolve(q.path) : undefined;
    return this.machines().filter(
      (m) =>
        (q.name === undefined || m.name === q.name) &&
        (q.instance === undefined || m.id === q.instance) &&
        (path === undefined || resolve(m.directory) === path),
    );
  }

  problems(): { path: string; error: string }[] {
    return [...this.problemList]
      .map(([path, error]) => ({ path, error }))
      .sort((a, b) => a.path.localeCompare(b.path));
  }

  /** Runs a machine (started when the manager is); one of the same name is stopped and replaced. */
  add(manifest: MachineManifest, directory: string, source: "file" | "spec"): Machine {
    const m = new Machine({
      manifest,
      directory,
      services: this.o.services,
      watcherTypes: this.types,
      source,
      foreignState: (name) => this.byName.get(name)?.state(),
    });
    const old = this.byName.get(m.name);
    if (old) void this.retire(old);
    this.byName.set(m.name, m);
    this.unsubscribe.set(
      m,
      m.onTransition((ev) => this.route(m, ev)),
    );
    if (this.started) m.start();
    return m;
  }

  async remove(name: string): Promise<boolean> {
    const m = this.byName.get(name);
    if (!m) return false;
    this.byName.delete(name);
    for (const [f, l] of this.files) if (l.machine === m) this.files.delete(f);
    await this.retire(m);
    return true;
  }

  private async retire(m: Machine): Promise<void> {
    this.unsubscribe.get(m)?.();
    this.unsubscribe.delete(m);
    await m.stop();
  }

  private route(from: Machine, ev: TransitionEventData): void {
    for (const m of this.byName.values()) {
      if (m === from) continue;
      try {
        m.foreignTransition(ev);
      } catch (err) {
        this.log.error({ err, machine: m.name }, "could not deliver a foreign transition");
      }
    }
  }

  /** The manifest file of each machine directory. */
  private manifestFiles(dir: string): string[] {
    let entries: string[];
    try {
      entries = readdirSync(dir).sort();
    } catch (err) {
      this.problemList.set(dir, `cannot read the machines directory: ${(err as Error).message}`);
      return [];
    }
    this.problemList.delete(dir);
    const out: string[] = [];
    for (const e of entries) {
      const sub = join(dir, e);
      try {
        if (!statSync(sub).isDirectory()) continue;
      } catch {
        continue;
      }
      const f = MANIFEST_NAMES.map((n) => join(sub, n)).find((p) => existsSync(p));
      if (f) out.push(f);
    }
    return out;
  }

  /** Starts new machines, restarts changed ones and stops removed ones. */
  private async scan(): Promise<void> {
    if (this.scanning || !this.started || this.o.directory === undefined) return;
    this.scanning = true;
    try {
      const seen = new Set<string>();
      for (const file of this.manifestFiles(this.o.directory)) {
        seen.add(file);
        let text: string;
        try {
          text = readFileSync(file, "utf8");
        } catch (err) {
          this.problem(file, `cannot read: ${(err as Error).message}`);
          continue;
        }
        const hash = createHash("sha256").update(text).digest("hex");
        const prev = this.files.get(file);
        if (prev && prev.hash === hash) continue;
        await this.load(file, text, hash, prev);
      }
      for (const [file, l] of [...this.files]) {
        if (seen.has(file)) continue;
        this.files.delete(file);
        this.problemList.delete(file);
        if (l.machine && this.byName.get(l.machine.name) === l.machine) {
          this.byName.delete(l.machine.name);
          this.log.info({ machine: l.machine.name, file }, "machine removed");
          await this.retire(l.machine);
        }
      }
      for (const f of [...this.problemList.keys()]) {
        if (f !== this.o.directory && !seen.has(f)) this.problemList.delete(f);
      }
    } finally {
      this.scanning = false;
    }
  }

  private async load(file: string, text: string, hash: string, prev: Loaded | undefined): Promise<void> {
    const dir = join(file, "..");
    let machine: Machine;
    try {
      const manifest = parseManifest(text, file, this.types);
      const clash = this.byName.get(manifest.name);
      if (
        clash &&
        clash !== prev?.machine &&
        (clash.source === "spec" || resolve(clash.directory) !== resolve(dir))
      ) {
        throw new MachineError(
          "bad_manifest",
          `${file}: name: a machine named "${manifest.name}" already runs from ${clash.directory}`,
        );
      }
      if (prev?.machine && this.byName.get(prev.machine.name) === prev.machine) {
        // stopped before the new one starts so their commands never overlap; and the name
        // may have changed, while add() only replaces a machine of the new name
        this.byName.delete(prev.machine.name);
        await this.retire(prev.machine);
      }
      machine = this.add(manifest, dir, "file");
    } catch (err) {
      // a changed manifest that no longer loads leaves the running machine as it was
      this.files.set(file, { file, hash, ...(prev?.machine ? { machine: prev.machine } : {}) });
      this.problem(file, err instanceof Error ? err.message : String(err));
      return;
    }
    this.problemList.delete(file);
    this.files.set(file, { file, hash, machine });
    this.log.info(
      { machine: machine.name, file, version: machine.version },
      prev ? "machine reloaded" : "machine loaded",
    );
  }

  private problem(file: string, error: string): void {
    this.loadErrors++;
    this.problemList.set(file, error);
    this.log.error({ file, error }, "machine not loaded");
  }
}
