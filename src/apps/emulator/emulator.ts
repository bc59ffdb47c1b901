import { existsSync, readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { pino, type Logger } from "pino";
import { loadConfig, serverSettings, type X509Settings } from "../../core/config/index.js";
import {
  ChoriaSecurity,
  FileSecurity,
  loadSeedFile,
  orgIssuer,
  provisioningTokenIssuer,
  securityOptionsFromSettings,
  verifyProvisioningToken,
  verifyStats,
  type ChoriaSecurityOptions,
  type FileSecurityOptions,
  type Issuer,
} from "../../core/security/index.js";
import {
  AgentRegistry,
  NodeRuntime,
  RequestDecoder,
  provisioningBrokers,
  type DecoderStats,
  type ProvisionTuning,
  type ServerStats,
  registerBuiltinAgents,
} from "../../server/index.js";
import { EmulatorError } from "./errors.js";
import { emulatedFacts, emulatedIdentity } from "./facts.js";
import { sumProvisioningStats, type ProvisioningSpec, type ProvisioningStats } from "./provisioning.js";
import type { EmulatedJobsStats } from "./jobs.js";
import type { EmulatedMachinesStats, EmulatorMachinesSpec } from "./machines.js";
import { FleetShard, sumStats, type ShardSpec } from "./shard.js";
import type { MemoryStore } from "./store.js";
import type { FromWorker, ShardStats, ToWorker, WorkerSpec } from "./worker.js";

export { EmulatorError };

/** Nodes that start unprovisioned and wait for a provisioner (`chorus emulate --provisioning`). */
export interface EmulatorProvisioningOptions {
  /** the provisioning.jwt every node holds (`chorus setup dev --provisioning` writes one) */
  tokenFile: string;
  /**
   * Org issuers the token and the provisioner's requests are trusted from (default: the
   * emulator's own issuers, else the token's issuer, as a real node without issuers does).
   */
  issuers?: string[];
  /** virtual folder the nodes' files live under, in memory (default /var/lib/chorus-emulator) */
  root?: string;
  /** the choria_provision agent's waits (default Choria's: a restart 2 s after it is asked) */
  tuning?: ProvisionTuning;
  /** once enrolled, each node publishes an inventory registration at start and then every this many seconds (0: at start only; default: never) */
  registrationIntervalS?: number;
}

export interface EmulatorOptions {
  /** How many virtual nodes. */
  nodes: number;
  collective: string;
  servers: string[];
  caFile?: string;
  /** The emulator's own credential: its NATS user may subscribe to every node subject. */
  security?: ChoriaSecurity | undefined;
  /**
   * Protocol v1 (x509) nodes instead: requests are verified with these files' CA and
   * rules and the emulator connects with this certificate (mTLS). No issuer is needed.
   */
  x509?: FileSecurityOptions | undefined;
  /**
   * The files `security` was built from. Worker shards build their own provider from
   * them (a ChoriaSecurity cannot cross threads); without them the emulator runs in-process.
   */
  securityFiles?: ChoriaSecurityOptions;
  /** Mints each virtual node's own server token, so every node signs with its own key (v2 only). */
  issuer?: Issuer | undefined;
  /**
   * Worker threads to spread the nodes over (0 = all nodes in this thread). Default:
   * one per core for 2 000+ nodes when running from the built JS, else 0. Workers need
   * `securityFiles` and the default identity/facts functions (functions cannot cross threads).
   */
  workers?: number;
  /** Connections to spread replies over, per shard (default: 1 per 5 000 nodes, 1..10). */
  connections?: number;
  /** Identity of node i (default node-00001.emulated.chorus). */
  identity?: (i: number) => string;
  /**
   * Index of the first node (default 1): node-00001... A second emulator on the same
   * broker, or a rerun a provisioner would take for a node it has just enrolled, gets
   * other names this way, also in worker threads.
   */
  firstIndex?: number;
  /** Facts of node i (default: varied os, role, location, sizes). */
  facts?: (i: number) => Record<string, unknown>;
  signReplies?: boolean;
  tokenValidityS?: number;
  logger?: Logger;
  /** Called while nodes are created (long for big fleets). */
  onProgress?: (done: number, total: number) => void;
  /**
   * A worker shard that reports nothing (no progress, not ready) for this long while
   * starting fails start() instead of leaving it waiting forever (default 60 000 ms).
   */
  startTimeoutMs?: number;
  /**
   * Provisioning mode: nodes start in the `provisioning` collective with the token's
   * broker credential, announce themselves (lifecycle startup, component
   * provision_mode_server), are enrolled by a provisioner through choria_provision, and
   * then answer in `collective` with the key and server token they were given.
   */
  provisioning?: EmulatorProvisioningOptions;
  /**
   * The job agent (default on): workflows run inside the emulator and their events go
   * to `<collective>.submission.in.chorus.jobs.>`, which the emulator's credential must
   * be allowed to publish (a server token with the submission permission).
   */
  jobs?: boolean;
  /**
   * Machines every node runs: the machines of a directory and/or built-in Scout checks
   * (`chorus emulate --machines DIR --scout-checks N --scout-fail-every K`). The scout
   * agent is then installed, and `scout("check_1").state` discovery works on the nodes.
   */
  machines?: EmulatorMachinesSpec;
}

/** Per-thread figures: one entry per shard (a single entry when in-process). */
export interface EmulatorShardStats {
  nodes: number;
  decoder: DecoderStats;
  /** ed25519 verifications performed by that thread so far */
  verifies: number;
  server?: ServerStats;
  provisioning?: ProvisioningStats;
  jobs?: EmulatedJobsStats;
  machines?: EmulatedMachinesStats;
}

// Under vitest the sources are TypeScript, which a worker thread cannot load; the
// built worker beside the dist counterpart is used then (present after `npm run build`).
function workerUrl(): URL {
  const here = import.meta.url;
  if (here.endsWith(".js")) return new URL("./worker.js", here);
  return new URL("../../../dist/apps/emulator/worker.js", here);
}

function builtWorkerAvailable(): boolean {
  return import.meta.url.endsWith(".js") && existsSync(fileURLToPath(workerUrl()));
}

interface WorkerShard {
  worker: Worker;
  spec: WorkerSpec;
  nodes: number;
  done: number;
}

/** The broker connection's client certificate: x509's, else the v2 provider's TLS pair. */
function tlsPair(o: EmulatorOptions): { certFile?: string; keyFile?: string } {
  const certFile = o.x509?.certFile ?? o.security?.certFile;
  const keyFile = o.x509?.keyFile ?? o.security?.keyFile;
  return certFile && keyFile ? { certFile, keyFile } : {};
}

/**
 * A virtual fleet: N real NodeRuntimes (the same pipeline `chorus server run`
 * uses, each with its own identity, facts, key and token) answering over a few
 * shared connections. Each thread has one RequestDecoder, so a request's bytes
 * are parsed and its signature verified once per thread, however many nodes
 * receive it. With workers, the signing of replies (the dominant cost) runs on
 * every core; the main thread only coordinates.
 */
export class Emulator {
  readonly registry = new AgentRegistry();
  /** The in-process decoder (worker shards have their own; see shardStats()). */
  readonly decoder: RequestDecoder;
  readonly log: Logger;
  readonly workers: number;
  private readonly opts: EmulatorOptions;
  private local?: FleetShard;
  private readonly remote: WorkerShard[] = [];
  private statsId = 0;
  private provisioningSpec: ProvisioningSpec | undefined;

  constructor(opts: EmulatorOptions) {
    if (!Number.isInteger(opts.nodes) || opts.nodes < 1) {
      throw new EmulatorError("usage", `nodes must be a positive integer, got ${opts.nodes}`);
    }
    if (opts.firstIndex !== undefined && !(Number.isInteger(opts.firstIndex) && opts.firstIndex >= 0)) {
      throw new EmulatorError("usage", `firstIndex must be a non-negative integer, got ${opts.firstIndex}`);
    }
    this.opts = opts;
    this.log = opts.logger ?? pino({ name: "chorus-emulator", level: "info" }, pino.destination(2));
    if (!opts.x509 && !(opts.security && opts.issuer))
      throw new EmulatorError(
        "usage",
        "an emulator needs x509 files (v1) or a security provider and an issuer (v2)",
      );
    this.decoder = new RequestDecoder({
      ...(opts.x509 ? { x509: new FileSecurity(opts.x509) } : { security: opts.security }),
      cacheSize: 1_000,
    });
    registerBuiltinAgents(this.registry);
    this.workers = this.resolveWorkers();
  }

  private get firstIndex(): number {
    return this.opts.firstIndex ?? 1;
  }

  private resolveWorkers(): number {
    const o = this.opts;
    const shareable = !o.identity && !o.facts && (!!o.securityFiles || !!o.x509);
    if (o.workers !== undefined) {
      if (!Number.isInteger(o.workers) || o.workers < 0)
        throw new EmulatorError("usage", `workers must be a non-negative integer, got ${o.workers}`);
      if (o.workers > 0 && !shareable) {
        throw new EmulatorError(
          "usage",
          "worker shards need securityFiles and the default identity/facts functions",
        );
      }
      return Math.min(o.workers, o.nodes);
    }
    if (!shareable || o.nodes < 2_000 || !builtWorkerAvailable()) return 0;
    return Math.min(availableParallelism(), o.nodes);
  }

  /** Builds an emulator from an emulator config written by `chorus setup dev`. */
  static fromConfigFile(path: string, overrides: Partial<EmulatorOptions> & { nodes: number }): Emulator {
    const cfg = loadConfig(path);
    const s = serverSettings(cfg);
    if (s.securityProvider === "file") {
      const x = s.x509 as X509Settings;
      return new Emulator({
        collective: s.mainCollective,
        servers: s.middlewareHosts,
        caFile: x.caFile,
        // the connection's certificate; the nodes' identities are their own names, not its CN
        x509: { ...x, identity: undefined },
        ...overrides,
      });
    }
    const issuerSeed = cfg.get("plugin.chorus.emulator.issuer_seed_file");
    if (!issuerSeed) {
      throw cfg.error(
        "plugin.chorus.emulator.issuer_seed_file",
        "plugin.chorus.emulator.issuer_seed_file is required: the emulator mints a token per virtual node",
      );
    }
    const issuerPath = new URL(issuerSeed, `file://${s.configDir}/`).pathname;
    const securityFiles = securityOptionsFromSettings(s);
    return new Emulator({
      collective: s.mainCollective,
      servers: s.middlewareHosts,
      ...(s.caFile && { caFile: s.caFile }),
      security: new ChoriaSecurity(securityFiles),
      securityFiles,
      issuer: orgIssuer(loadSeedFile(issuerPath)),
      ...overrides,
    });
  }

  /** In-process mode only: the nodes answering now (empty when the nodes live in worker threads). */
  get nodes(): NodeRuntime[] {
    return this.local ? this.local.nodes : [];
  }

  get size(): number {
    return this.local ? this.local.nodes.length : this.remote.reduce((n, w) => n + w.nodes, 0);
  }

  private spec(first: number, count: number, name: string, startTime: number): ShardSpec {
    const o = this.opts;
    return {
      first,
      count,
      collective: o.collective,
      servers: [...o.servers],
      ...(o.caFile && { caFile: o.caFile }),
      natsSeedHex: o.security?.seedHex ?? "",
      ...(o.security?.natsJwt && { natsJwt: o.security.natsJwt }),
      ...(o.x509 && { x509: { ...o.x509 } }),
      ...tlsPair(o),
      // Issuer is plain data; spread so no prototype or extra fields travel.
      issuer: { ...(o.issuer as Issuer) },
      tokenValidityS: o.tokenValidityS ?? 86_400,
      signReplies: o.signReplies ?? true,
      connections: o.connections ?? Math.min(10, Math.max(1, Math.ceil(count / 5_000))),
      name,
      startTime,
      ...(this.provisioningSpec && { provisioning: this.provisioningSpec }),
      ...(o.security?.identity !== undefined && { identity: o.security.identity }),
      ...(o.jobs !== undefined && { jobs: o.jobs }),
      ...(o.machines && { machines: { ...o.machines } }),
    };
  }

  /** The provisioning token read and checked once, here, so every shard starts from the same. */
  private async resolveProvisioning(p: EmulatorProvisioningOptions): Promise<ProvisioningSpec> {
    let jwt: string;
    try {
      jwt = readFileSync(p.tokenFile, "utf8").trim();
    } catch (err) {
      throw new EmulatorError(
        "provisioning",
        `cannot read the provisioning token: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    let issuers = p.issuers ?? [...(this.opts.security?.issuers ?? [])];
    let claims;
    try {
      if (issuers.length === 0) issuers = [provisioningTokenIssuer(jwt)];
      claims = verifyProvisioningToken(jwt, issuers);
    } catch (err) {
      throw new EmulatorError("provisioning", `${p.tokenFile}: ${(err as Error).message}`, { cause: err });
    }
    return {
      jwt,
      issuers,
      servers: await provisioningBrokers(claims),
      root: p.root ?? "/var/lib/chorus-emulator",
      ...(p.tuning && { tuning: { ...p.tuning } }),
      ...(p.registrationIntervalS !== undefined && { registrationIntervalS: p.registrationIntervalS }),
    };
  }

  async start(): Promise<void> {
    const o = this.opts;
    const startTime = Date.now();
    if (o.provisioning) this.provisioningSpec = await this.resolveProvisioning(o.provisioning);
    if (this.workers === 0) {
      const shard = new FleetShard(this.spec(this.firstIndex, o.nodes, "chorus-emulator", startTime), {
        decoder: this.decoder,
        registry: this.registry,
        log: this.log,
        identity: o.identity ?? emulatedIdentity,
        facts: o.facts ?? emulatedFacts,
        onProgress: (done) => o.onProgress?.(done, o.nodes),
      });
      await shard.createNodes();
      try {
        await shard.connect();
      } catch (err) {
        // connections made before the failure must not keep the process alive
        await shard.stop();
        throw err;
      }
      this.local = shard;
      this.log.info({ nodes: this.size, workers: 0 }, "emulator ready");
      return;
    }
    await this.startWorkers(startTime);
    this.log.info({ nodes: this.size, workers: this.workers }, "emulator ready");
  }

  private async startWorkers(startTime: number): Promise<void> {
    const o = this.opts;
    const n = this.workers;
    const files = o.securityFiles;
    const level = this.log.level;
    let first = this.firstIndex;
    for (let k = 0; k < n; k++) {
      const count = Math.floor(o.nodes / n) + (k < o.nodes % n ? 1 : 0);
      const spec: WorkerSpec = {
        ...this.spec(first, count, `chorus-emulator-w${k}`, startTime),
        ...(files && { security: { ...files, issuers: [...files.issuers] } }),
        logLevel: level,
      };
      first += count;
      this.remote.push({ worker: new Worker(workerUrl(), { workerData: spec }), spec, nodes: 0, done: 0 });
    }
    const progress = (): void =>
      o.onProgress?.(
        this.remote.reduce((s, w) => s + w.done, 0),
        o.nodes,
      );
    const silentMs = o.startTimeoutMs ?? 60_000;
    const timers: NodeJS.Timeout[] = [];
    const ready = this.remote.map(
      (w, k) =>
        new Promise<void>((resolve, reject) => {
          const watch = (): void => {
            clearTimeout(timers[k]);
            timers[k] = setTimeout(
              () =>
                reject(
                  new EmulatorError(
                    "worker",
                    `${w.spec.name} reported nothing for ${silentMs} ms while starting (is the broker at ${w.spec.servers.join(", ")} answering?)`,
                  ),
                ),
              silentMs,
            );
          };
          watch();
          const onMessage = (m: FromWorker): void => {
            watch();
            if (m.type === "progress") {
              w.done = m.done;
              progress();
            } else if (m.type === "ready") {
              w.nodes = m.nodes;
              w.worker.off("message", onMessage);
              resolve();
            } else if (m.type === "error") {
              reject(new EmulatorError("worker", `${w.spec.name}: ${m.message}`));
            }
          };
          w.worker.on("message", onMessage);
          w.worker.once("error", (err) =>
            reject(new EmulatorError("worker", `${w.spec.name}: ${err.message}`)),
          );
          w.worker.once("exit", (code) =>
            reject(new EmulatorError("worker", `${w.spec.name} exited (${code})`)),
          );
        }),
    );
    try {
      await Promise.all(ready);
    } catch (err) {
      await Promise.allSettled(this.remote.map((w) => w.worker.terminate()));
      this.remote.length = 0;
      throw err;
    } finally {
      for (const t of timers) clearTimeout(t);
    }
  }

  /** Per-thread decoder and verification counts (what the regression tests look at). */
  async shardStats(): Promise<EmulatorShardStats[]> {
    if (this.local) {
      const server = this.local.stats();
      const provisioning = this.local.provisioningStats();
      const jobs = this.local.jobsStats();
      const machines = this.local.machinesStats();
      return [
        {
          nodes: this.local.nodes.length,
          decoder: this.decoder.stats,
          verifies: verifyStats.count,
          ...(server && { server }),
          ...(provisioning && { provisioning }),
          ...(jobs && { jobs }),
          ...(machines && { machines }),
        },
      ];
    }
    return Promise.all(
      this.remote.map(
        (w) =>
          new Promise<EmulatorShardStats>((resolve) => {
            const id = ++this.statsId;
            const onMessage = (m: FromWorker): void => {
              if (m.type !== "stats" || m.id !== id) return;
              w.worker.off("message", onMessage);
              const s: ShardStats = m.stats;
              resolve({
                nodes: s.nodes,
                decoder: s.decoder,
                verifies: s.verifies,
                ...(s.server && { server: s.server }),
                ...(s.provisioning && { provisioning: s.provisioning }),
                ...(s.jobs && { jobs: s.jobs }),
                ...(s.machines && { machines: s.machines }),
              });
            };
            w.worker.on("message", onMessage);
            w.worker.postMessage({ type: "stats", id } satisfies ToWorker);
          }),
      ),
    );
  }

  /** Provisioning mode: where the nodes stand, summed over every shard (undefined otherwise). */
  async provisioningStats(): Promise<ProvisioningStats | undefined> {
    if (!this.provisioningSpec) return undefined;
    if (this.local) return this.local.provisioningStats();
    const parts = await Promise.all(this.remote.map((w) => this.ask(w, "provisioning")));
    return sumProvisioningStats(parts.flatMap((p) => (p ? [p] : [])));
  }

  /**
   * Provisioning mode: every enrolled node publishes its inventory registration now (as
   * on its registration interval); how many did.
   */
  async registerNow(): Promise<number> {
    if (this.local) return this.local.registerNow();
    const counts = await Promise.all(this.remote.map((w) => this.ask(w, "register")));
    return counts.reduce((a, b) => a + b, 0);
  }

  /** One worker's provisioning figures, or its count of registrations sent. */
  private ask(w: WorkerShard, type: "provisioning"): Promise<ProvisioningStats | undefined>;
  private ask(w: WorkerShard, type: "register"): Promise<number>;
  private ask(
    w: WorkerShard,
    type: "provisioning" | "register",
  ): Promise<ProvisioningStats | number | undefined> {
    return new Promise((resolve) => {
      const id = ++this.statsId;
      const onMessage = (m: FromWorker): void => {
        if (m.type !== type || m.id !== id) return;
        w.worker.off("message", onMessage);
        resolve(m.type === "register" ? m.count : m.type === "provisioning" ? m.stats : undefined);
      };
      w.worker.on("message", onMessage);
      w.worker.postMessage({ type, id } satisfies ToWorker);
    });
  }

  /**
   * How busy each worker thread's event loop has been since it started (0..1; empty
   * when in-process): whether the emulator or whatever it runs against is the bottleneck.
   */
  workerUtilization(): number[] {
    return this.remote.map((w) => w.worker.performance.eventLoopUtilization().utilization);
  }

  /** In-process provisioning mode only: a node's files as choria_provision wrote them. */
  nodeFiles(identity: string): MemoryStore | undefined {
    return this.local?.provisioning?.files(identity);
  }

  /** Runs the garbage collector in every thread when started with --expose-gc (for RSS figures). */
  async collectGarbage(): Promise<void> {
    (globalThis as { gc?: () => void }).gc?.();
    await Promise.all(
      this.remote.map(
        (w) =>
          new Promise<void>((resolve) => {
            const id = ++this.statsId;
            const onMessage = (m: FromWorker): void => {
              if (m.type !== "gc" || m.id !== id) return;
              w.worker.off("message", onMessage);
              resolve();
            };
            w.worker.on("message", onMessage);
            w.worker.postMessage({ type: "gc", id } satisfies ToWorker);
          }),
      ),
    );
  }

  /** Machine figures summed over every shard (undefined when the nodes run none). */
  async machinesStats(): Promise<EmulatedMachinesStats | undefined> {
    const parts = (await this.shardStats()).flatMap((p) => (p.machines ? [p.machines] : []));
    if (parts.length === 0) return undefined;
    const sum = (f: (m: EmulatedMachinesStats) => number) => parts.reduce((n, m) => n + f(m), 0);
    return {
      machines: sum((m) => m.machines),
      watchers: sum((m) => m.watchers),
      transitions: sum((m) => m.transitions),
      events: {
        queued: sum((m) => m.events.queued),
        sent: sum((m) => m.events.sent),
        dropped: sum((m) => m.events.dropped),
      },
    };
  }

  /** Every node's counters summed over all shards. */
  async totalStats(): Promise<ServerStats | undefined> {
    const parts = await this.shardStats();
    return sumStats(parts.flatMap((p) => (p.server ? [p.server] : [])));
  }

  async stop(): Promise<void> {
    if (this.local) {
      await this.local.stop();
      return;
    }
    await Promise.allSettled(
      this.remote.map(
        (w) =>
          new Promise<void>((resolve) => {
            w.worker.once("exit", () => resolve());
            w.worker.on("message", (m: FromWorker) => {
              if (m.type === "stopped") void w.worker.terminate();
            });
            w.worker.postMessage({ type: "stop" } satisfies ToWorker);
          }),
      ),
    );
    this.remote.length = 0;
  }
}
