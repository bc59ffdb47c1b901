/**
 * The `machines` watcher (go-choria's plugins watcher, registered as `plugins` too): keeps
 * the machines a signed specification lists installed and running.
 *
 * The spec comes from machine data (`data_item`, written by a kv watcher, as in
 * go-choria) or straight from KV (`bucket` and `key`). It must be signed with the host's
 * machine signing key or the watcher's `public_key`; anything else is refused, nothing is
 * installed and the watcher fails saying why. For every entry whose `match` selects this
 * node, the archive (checksum verified before extraction, SHA256SUMS after) is kept in
 * `<store>/<manager_machine_prefix>/<name>` and its machine added to the manager as a
 * "spec" machine; every run re-verifies the tree, so a tampered machine is fetched again
 * and restarted. With `purge_unknown`, spec machines no longer listed (or no longer
 * matching) are stopped and their directories removed.
 *
 * go-choria instead writes a small "manager machine" per entry, whose archive watcher
 * does the download; here the watcher maintains the archives itself, so the prefix names
 * the directory spec machines live in rather than manager machines.
 */
import { existsSync, readFileSync } from "node:fs";
import { readdir, rm } from "node:fs/promises";
import { dirname, join, resolve, sep } from "node:path";
import { MachineError } from "../errors.js";
import { parseManifest } from "../manifest.js";
import { machineMatches, verifyMachineSpec, type ManagedMachine } from "../spec.js";
import type { MachineSpecManager, Watcher, WatcherDef, WatcherFactory, WatcherHost } from "../types.js";
import { ensureArchive } from "./archive.js";
import { WatcherProps } from "./properties.js";

type Outcome = "unknown" | "skipped" | "error" | "updated" | "unchanged";

const KNOWN = [
  "data_item",
  "bucket",
  "key",
  "purge_unknown",
  "public_key",
  "manager_machine_prefix",
  "plugins_directory",
  "plugin_manage_interval",
  "machine_manage_interval",
  "timeout",
] as const;

const MANIFEST_NAMES = ["machine.yaml", "machine.yml", "machine.json"];

interface MachinesProperties {
  dataItem?: string;
  bucket?: string;
  key?: string;
  purgeUnknown: boolean;
  publicKey?: string;
  prefix: string;
  directory?: string;
  timeoutMs: number;
}

function machinesProperties(def: WatcherDef, path: string): MachinesProperties {
  const p = new WatcherProps(def, path, KNOWN);
  const dataItem = p.string("data_item") || undefined;
  const bucket = p.string("bucket") || undefined;
  const key = p.string("key") || undefined;
  if (!dataItem && !(bucket && key)) throw p.error("data_item", "is required (or bucket and key)");
  if (dataItem && (bucket || key)) throw p.error("bucket", "use data_item or bucket and key, not both");
  if (bucket && !key) throw p.error("key", "is required with bucket");
  const publicKey = p.string("public_key") || undefined;
  if (publicKey && !/^[a-fA-F0-9]{64}$/.test(publicKey)) {
    throw p.error("public_key", "must be a hex ed25519 public key (64 hex digits)");
  }
  const prefix = p.string("manager_machine_prefix") || "mm";
  if (!/^[a-zA-Z0-9-]+$/.test(prefix)) {
    throw p.error("manager_machine_prefix", "must be letters, digits and - (no underscore, as go-choria)");
  }
  // accepted for go-choria manifests; each run re-verifies whatever the interval
  p.duration("plugin_manage_interval", 0);
  p.duration("machine_manage_interval", 0);
  const directory = p.string("plugins_directory") || undefined;
  return {
    ...(dataItem && { dataItem }),
    ...(bucket && { bucket }),
    ...(key && { key }),
    purgeUnknown: p.bool("purge_unknown"),
    ...(publicKey && { publicKey }),
    prefix,
    ...(directory && { directory }),
    timeoutMs: p.duration("timeout", 60_000),
  };
}

function inside(dir: string, path: string): boolean {
  const d = resolve(dir);
  const p = resolve(path);
  return p.startsWith(d.endsWith(sep) ? d : d + sep);
}

class MachinesWatcher implements Watcher {
  readonly type: string;
  private readonly p: MachinesProperties;
  private previous: Outcome = "unknown";
  private managed: string[] = [];
  private runTimeNs = 0;
  private lastError: string | undefined;
  private busy = false;

  constructor(
    readonly def: WatcherDef,
    private readonly host: WatcherHost,
    path: string,
  ) {
    this.type = def.type;
    this.p = machinesProperties(def, path);
  }

  /** spec machines live here, one directory per entry */
  private installDir(manager: MachineSpecManager): string {
    if (this.p.directory) return resolve(this.host.directory, this.p.directory);
    const store = manager.store ?? dirname(resolve(this.host.directory));
    return join(store, this.p.prefix);
  }

  private async specText(): Promise<string> {
    if (this.p.dataItem) {
      const v = this.host.data()[this.p.dataItem];
      if (v === undefined || v === null)
        throw new MachineError("bad_spec", `data item ${this.p.dataItem} is not present`);
      return typeof v === "string" ? v : JSON.stringify(v);
    }
    const kv = this.host.services.kv;
    if (!kv) throw new MachineError("io", "no Key-Value store is available to read the machine spec");
    const e = await kv.get(this.p.bucket!, this.p.key!);
    if (!e) throw new MachineError("bad_spec", `${this.p.bucket}.${this.p.key} holds no machine spec`);
    return Buffer.from(e.value).toString("utf8");
  }

  private desired(all: ManagedMachine[]): ManagedMachine[] {
    const node = { identity: this.host.services.identity, facts: this.host.services.facts?.() ?? {} };
    return all.filter((m) => {
      try {
        return machineMatches(m, node);
      } catch (err) {
        this.host.log.debug({ machine: m.name, err }, "machine spec match failed; not installing it here");
        return false;
      }
    });
  }

  async run(signal: AbortSignal): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    const start = process.hrtime.bigint();
    try {
      const [outcome, info] = await this.manage(signal);
      if (signal.aborted) return;
      this.previous = outcome;
      this.runTimeNs = Number(process.hrtime.bigint() - start);
      if (outcome === "error") {
        this.lastError = info;
        this.host.log.error({ watcher: this.def.name }, `managing machines failed: ${info}`);
        this.host.announce();
        this.host.fail(info);
      } else {
        this.lastError = undefined;
        if (outcome === "updated") {
          this.host.announce();
          this.host.success(info);
        }
      }
    } finally {
      this.busy = false;
    }
  }

  private async manage(signal: AbortSignal): Promise<[Outcome, string?]> {
    const manager = this.host.services.manager;
    if (!manager) return ["error", "this host has no machine manager to install machines into"];
    const key = this.host.services.machineSigningKey ?? this.p.publicKey;
    if (!key) return ["error", "no public key: set public_key or the host's machine signing key"];

    let text: string;
    try {
      text = await this.specText();
    } catch (err) {
      return ["error", (err as Error).message];
    }
    let entries: ManagedMachine[];
    try {
      entries = verifyMachineSpec(text, [key]);
    } catch (err) {
      // go-choria also deletes the data item; it is kept here so every run re-checks and the
      // snapshot keeps saying why (the kv watcher would not write the same value again anyway)
      return ["error", `refusing the machine spec: ${(err as Error).message}`];
    }
    const desired = this.desired(entries);
    this.managed = desired.map((m) => m.name);
    const dir = this.installDir(manager);
    const names = new Set(desired.map((m) => m.name));
    let changed = false;
    const problems: string[] = [];

    if (this.p.purgeUnknown) {
      for (const m of manager.machines()) {
        if (m.source !== "spec" || names.has(m.name) || !inside(dir, m.directory)) continue;
        this.host.log.warn({ machine: m.name }, "removing a spec machine that is no longer in the spec");
        await manager.remove(m.name);
        changed = true;
      }
      let present: string[] = [];
      try {
        present = (await readdir(dir, { withFileTypes: true }))
          .filter((e) => e.isDirectory() && !e.name.startsWith("."))
          .map((e) => e.name);
      } catch {
        // nothing installed yet
      }
      for (const name of present) {
        if (names.has(name)) continue;
        await rm(join(dir, name), { recursive: true, force: true });
        changed = true;
      }
    }

    for (const m of desired) {
      if (signal.aborted) break;
      try {
        if (await this.install(manager, dir, m, signal)) changed = true;
      } catch (err) {
        problems.push(`${m.name}: ${(err as Error).message}`);
      }
    }
    if (problems.length > 0) return ["error", problems.join("; ")];
    return changed ? ["updated", `machines: ${this.managed.join(", ") || "none"}`] : ["unchanged"];
  }

  /** Ensures one machine is in place and running; true when something changed. */
  private async install(
    manager: MachineSpecManager,
    dir: string,
    m: ManagedMachine,
    signal: AbortSignal,
  ): Promise<boolean> {
    const log = this.host.log;
    const res = await ensureArchive(
      {
        source: m.source,
        checksum: m.checksum,
        target: dir,
        creates: m.name,
        verify: m.verify ?? "SHA256SUMS",
        verifyChecksum: m.verify_checksum,
        ...(m.username && { username: m.username }),
        ...(m.password && { password: m.password }),
        ...(m.governor && { governor: m.governor }),
        timeoutMs: this.p.timeoutMs,
      },
      {
        ...(this.host.services.governor && { governor: this.host.services.governor }),
        log: { info: (s) => log.info({ machine: m.name }, s), warn: (s) => log.warn({ machine: m.name }, s) },
        signal,
      },
    );
    const running = manager.machines().find((x) => x.name === m.name);
    if (running && running.source !== "spec") {
      throw new Error(`a machine named ${m.name} already runs from ${running.directory}`);
    }
    if (res.state === "verified" && running && resolve(running.directory) === resolve(res.path)) return false;
    const file = MANIFEST_NAMES.map((n) => join(res.path, n)).find((f) => existsSync(f));
    if (!file) throw new Error(`the archive has no machine.yaml in ${m.name}/`);
    const manifest = parseManifest(readFileSync(file, "utf8"), file);
    if (manifest.name !== m.name) {
      throw new Error(`${file}: the machine is named "${manifest.name}", the spec says "${m.name}"`);
    }
    // add() stops a machine of the same name before the new one starts
    manager.add(manifest, res.path, "spec");
    log.warn(
      { machine: m.name, version: manifest.version },
      `machine ${m.name} ${running ? "updated" : "installed"} from ${m.source}`,
    );
    return true;
  }

  snapshot(): Record<string, unknown> {
    return {
      // go-choria's machines watcher says "machines", its plugins watcher "plugins"
      [this.type === "plugins" ? "plugins" : "machines"]: this.managed,
      previous_outcome: this.previous,
      previous_run_time: this.runTimeNs,
      ...(this.lastError && { error: this.lastError }),
    };
  }
}

export const machinesWatcher: WatcherFactory = (def, host, path) => new MachinesWatcher(def, host, path);
