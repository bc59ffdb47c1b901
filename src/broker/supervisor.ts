import { spawn, type ChildProcess } from "node:child_process";
import { EventEmitter } from "node:events";
import {
  accessSync,
  chmodSync,
  constants,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:net";
import { constants as osConstants, tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";
import type { BrokerSettings } from "../core/config/index.js";
import { connectNats, type NatsConnection } from "../core/connector/index.js";
import { Backoff, lineLogger, sleep, type Logger } from "../core/util/index.js";
import { replyPrefix } from "../core/protocol/index.js";
import { decodeTokenUnverified, loadSeedFile } from "../core/security/index.js";
import { ensureManagedStreams, type EnsureResult } from "../services/streams/index.js";
import { AdapterManager } from "./adapters.js";
import { clientCertRequired, renderNatsConfig, renderX509EdgeConfig } from "./nats-config.js";
import { NATS_WRAPPER_NAME, writeNatsWrapper } from "./nats-wrapper.js";
import {
  ensurePidFileDir,
  natsMonitorFile,
  natsPidFile,
  removePidFile,
  takeOverOrphan,
  writePidFile,
} from "./orphan.js";
import { BrokerError, loadNatsTrust, renderTrustFragment } from "./trust.js";
import { checkBrokerFiles, edgeLogLine, localHost, x509EdgeSettings } from "./x509-edge.js";

export type BrokerLogLevel = "trace" | "debug" | "info" | "warn" | "error" | "fatal";
/**
 * Not core/util's Logger: the supervisor forwards nats-server's own log lines, each with
 * the level nats-server gave it (trace and fatal included), and the caller decides what
 * to do with nats-server's prefix. Its own messages (and the adapters', the connector's)
 * come the same way, through a Logger made with lineLogger.
 */
export type BrokerLogger = (level: BrokerLogLevel, line: string) => void;

export interface BrokerSupervisorOptions {
  settings: BrokerSettings;
  /**
   * Decentralized-auth fragment (from security/nats.ts). When absent and
   * settings.natsTrustFile is set, the fragment is built from that file.
   */
  trustFragment?: string;
  /** Receives every nats-server log line and the supervisor's own messages. */
  logger?: BrokerLogger;
  /** Explicit binary, ahead of settings, CHORUS_NATS_SERVER and PATH. */
  binary?: string;
  readyTimeoutMs?: number;
  /** Restart delay: starts at initialMs, doubles up to maxMs, resets after resetAfterMs healthy. */
  backoff?: { initialMs?: number; maxMs?: number; resetAfterMs?: number };
  /**
   * How long stop() waits after SIGTERM before SIGKILL. An orphaned nats-server taken over
   * at start gets the same grace, and so does nats-server when the supervisor dies
   * (rounded up to whole seconds by the wrapper).
   */
  stopGraceMs?: number;
  /** Picks the monitoring port when settings.monitorPort is 0 (default: a free loopback port). */
  pickPort?: () => Promise<number>;
  /**
   * Renders this nats-server's whole config instead of the broker's, given the monitoring
   * port: the x509 edge's supervisor uses it (no trust, streams, adapters or edge of its own).
   */
  renderConfig?: (monitorPort: number) => string;
}

export interface BrokerExit {
  /** nats-server's pid (not the wrapper's). */
  pid: number | undefined;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** true when stop() asked for it. */
  expected: boolean;
}

export interface BrokerSupervisorEvents {
  started: [{ pid: number; monitorUrl: string }];
  exited: [BrokerExit];
  restarted: [{ pid: number; restarts: number }];
  /** A restart attempt failed (the supervisor keeps trying). */
  restartFailed: [{ error: Error; delayMs: number }];
  /** The managed streams were checked (at start and after each nats-server restart). */
  streams: [EnsureResult[]];
  /** Managed streams or adapters could not be set up (the broker keeps serving). */
  servicesError: [Error];
}

const LEVELS: Record<string, BrokerLogLevel> = {
  TRC: "trace",
  DBG: "debug",
  INF: "info",
  WRN: "warn",
  ERR: "error",
  FTL: "fatal",
};

function isExecutable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(":")) {
    if (dir && isExecutable(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

/**
 * Finds nats-server: explicit/config value, CHORUS_NATS_SERVER, PATH, /usr/sbin.
 * A configured value that does not exist is an error rather than a silent fallback.
 */
export function findNatsServer(configured?: string): string {
  const candidates: [string, string][] = [];
  if (configured) candidates.push([configured, "plugin.choria.network.nats_server"]);
  if (process.env.CHORUS_NATS_SERVER) candidates.push([process.env.CHORUS_NATS_SERVER, "CHORUS_NATS_SERVER"]);
  for (const [value, source] of candidates) {
    const found = value.includes("/") ? (isExecutable(value) ? value : undefined) : onPath(value);
    if (found) return found;
    throw new BrokerError(
      "no_nats_server",
      `nats-server binary "${value}" from ${source} is not an executable file`,
    );
  }
  const found =
    onPath("nats-server") ?? (isExecutable("/usr/sbin/nats-server") ? "/usr/sbin/nats-server" : undefined);
  if (found) return found;
  throw new BrokerError(
    "no_nats_server",
    "nats-server not found: install the Debian package nats-server (apt-get install nats-server), " +
      "or set plugin.choria.network.nats_server or CHORUS_NATS_SERVER",
  );
}

/** A free loopback port chosen by the OS. */
export async function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Resolves with the pid the wrapper reports on fd 3, or undefined if it closes without one. */
function readPid(stream: Readable | null | undefined): Promise<number | undefined> {
  return new Promise((resolve) => {
    if (!stream) return resolve(undefined);
    let text = "";
    const done = () => {
      const pid = Number(text.trim());
      resolve(Number.isInteger(pid) && pid > 1 ? pid : undefined);
      stream.destroy();
    };
    stream.setEncoding("utf8");
    stream.on("data", (d: string) => {
      text += d;
      if (text.includes("\n")) done();
    });
    stream.once("end", done);
    stream.once("close", done);
    stream.once("error", done);
  });
}

const SIGNAL_NAMES = new Map<number, NodeJS.Signals>();
for (const [name, n] of Object.entries(osConstants.signals) as [NodeJS.Signals, number][]) {
  if (!SIGNAL_NAMES.has(n)) SIGNAL_NAMES.set(n, name);
}

/** nats-server's exit as the wrapper reports it: it exits 128+N when nats-server died of signal N. */
function natsExit(
  code: number | null,
  signal: NodeJS.Signals | null,
): { code: number | null; signal: NodeJS.Signals | null } {
  const byWrapper = code !== null && code > 128 ? SIGNAL_NAMES.get(code - 128) : undefined;
  return byWrapper ? { code: null, signal: byWrapper } : { code, signal };
}

/**
 * Runs nats-server as a child process: writes its config, waits for /healthz, forwards
 * its log, restarts it with exponential backoff when it dies, and stops it cleanly.
 *
 * nats-server runs under a small sh wrapper (nats-wrapper.ts) that stops it when this
 * process dies, even by SIGKILL; `pid` and every signal the supervisor sends are
 * nats-server's own. A pidfile (orphan.ts) lets the next start take over a nats-server
 * that was orphaned anyway.
 */
/**
 * What a reload may change: nats-server re-reads TLS files, auth and accounts, limits,
 * log levels and routes on SIGHUP. Anything else (ports, addresses, JetStream, the
 * cluster's shape, adapters and streams Chorus wires at start) needs a restart.
 */
const RELOADABLE: ReadonlySet<keyof BrokerSettings> = new Set<keyof BrokerSettings>([
  "configFile",
  "configDir",
  "certFile",
  "keyFile",
  "caFile",
  "natsTrustFile",
  "maxConnections",
  "writeDeadlineMs",
  "tlsTimeoutS",
  "authTimeoutS",
  "logLevel",
  "peers",
  "leafnodeRemotes",
]);

/** The settings a reload cannot apply, by name; empty when `next` can be reloaded. */
export function restartOnlyChanges(current: BrokerSettings, next: BrokerSettings): string[] {
  const keys = new Set([...Object.keys(current), ...Object.keys(next)]) as Set<keyof BrokerSettings>;
  return [...keys].filter(
    (k) => !RELOADABLE.has(k) && JSON.stringify(current[k]) !== JSON.stringify(next[k]),
  );
}

export interface BrokerReload {
  /** nats-server took the new configuration */
  reloaded: boolean;
  /** why not, when it did not */
  reason?: string;
}

export class BrokerSupervisor extends EventEmitter<BrokerSupervisorEvents> {
  /** replaced by a successful reload() */
  settings: BrokerSettings;
  private readonly logger: BrokerLogger;
  /** the same sink as a Logger, for the connector, the adapters and the orphan takeover */
  private readonly log: Logger;
  private readonly opts: BrokerSupervisorOptions;
  private readonly backoff: Backoff;
  private readonly resetAfter: number;
  /** The wrapper process; nats-server is its child, natsPid. */
  private child: ChildProcess | undefined;
  private natsPid: number | undefined;
  private childExit: Promise<void> | undefined;
  private stopping = false;
  private running = false;
  private healthy = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private resetTimer: NodeJS.Timeout | undefined;
  private restartCount = 0;
  private restartPending = false;
  private scheduledDelayMs = 0;
  private recentLog: string[] = [];
  private ownRuntimeDir = false;
  private wroteWrapper = false;
  private _runtimeDir = "";
  private _monitorPort = 0;
  private _binary = "";
  private servicesNc: NatsConnection | undefined;
  private _adapters: AdapterManager | undefined;
  private _x509: BrokerSupervisor | undefined;

  constructor(opts: BrokerSupervisorOptions) {
    super();
    this.opts = opts;
    this.settings = opts.settings;
    this.logger = opts.logger ?? (() => undefined);
    this.log = lineLogger((level, line) => this.logger(level, line));
    this.backoff = new Backoff({
      initialMs: opts.backoff?.initialMs ?? 250,
      maxMs: opts.backoff?.maxMs ?? 10_000,
    });
    this.resetAfter = opts.backoff?.resetAfterMs ?? 30_000;
  }

  /** nats-server's pid while it runs. */
  get pid(): number | undefined {
    const c = this.child;
    return c && c.exitCode === null && c.signalCode === null ? this.natsPid : undefined;
  }
  /**
   * The nats-server pidfile: `<runtime_dir>/nats-server.pid`, or with no runtime_dir a file
   * named after the listen address and client port in `$TMPDIR/chorus-broker-<uid>/`.
   */
  get pidFile(): string {
    return natsPidFile(this.settings);
  }
  /** Brokers in the cluster, this one included (1 without peers). */
  get clusterSize(): number {
    return this.settings.peerPort > 0 ? this.settings.peers.length + 1 : 1;
  }
  get restarts(): number {
    return this.restartCount;
  }
  /** True while a nats-server is running and passed its last readiness check. */
  get up(): boolean {
    return this.healthy && this.pid !== undefined;
  }
  get monitorPort(): number {
    return this._monitorPort;
  }
  get monitorUrl(): string {
    return `http://127.0.0.1:${this._monitorPort}`;
  }
  get clientUrl(): string {
    const scheme = this.settings.certFile ? "tls" : "nats";
    return `${scheme}://${localHost(this.settings.listenAddress)}:${this.settings.clientPort}`;
  }
  /**
   * The supervisor of the x509 edge (plugin.chorus.network.x509.port) while it runs: its
   * clientUrl is the x509 client port, `up` and `restarts` are the edge nats-server's.
   */
  get x509(): BrokerSupervisor | undefined {
    return this._x509;
  }
  get configPath(): string {
    return join(this._runtimeDir, "nats-server.conf");
  }
  /** The last lines nats-server logged, for error reports. */
  get lastLogLines(): string[] {
    return [...this.recentLog];
  }

  /** Writes the config, starts nats-server and resolves once /healthz answers. */
  async start(): Promise<void> {
    if (this.running) throw new BrokerError("state", "broker supervisor already started");
    this._binary = findNatsServer(this.opts.binary ?? this.settings.natsServerBinary);
    const render = this.opts.renderConfig ?? (await this.brokerConfig());
    this.prepareRuntimeDir();
    this.stopping = false;
    // Not "running" until the first launch succeeds, so a failed start is not restarted.
    try {
      ensurePidFileDir(this.settings);
      // Before anything is written: a broker that is already running keeps its files.
      await this.takeOverOrphan();
      writeNatsWrapper(this._runtimeDir);
      this.wroteWrapper = true;
      // A monitoring port the supervisor picked itself is free when picked but not bound
      // until nats-server starts; another process can take it in between. Then pick again.
      for (let attempt = 1; ; attempt++) {
        this._monitorPort = this.settings.monitorPort || (await (this.opts.pickPort ?? freeLoopbackPort)());
        const conf = render(this._monitorPort);
        // The config can hold the system password; keep it private to this user.
        writeFileSync(this.configPath, conf, { mode: 0o600 });
        chmodSync(this.configPath, 0o600);
        writeFileSync(natsMonitorFile(this.settings), `${this.monitorUrl}\n`);
        try {
          await this.launch();
          break;
        } catch (err) {
          if (attempt >= 3) throw err;
          if (!this.settings.monitorPort && this.portTaken(err, this._monitorPort)) {
            this.logger(
              "warn",
              `monitoring port ${this._monitorPort} was taken before nats-server bound it: picking another`,
            );
          } else if (this.x509LeafPort && this.portTaken(err, this.x509LeafPort)) {
            this.x509LeafPort = await (this.opts.pickPort ?? freeLoopbackPort)();
            this.logger(
              "warn",
              "the x509 edge's leafnode port was taken before nats-server bound it: picking another",
            );
          } else throw err;
        }
      }
      await this.startX509Edge();
    } catch (err) {
      // an x509 edge that could not start takes the broker down with it: its port was asked for
      this.stopping = true;
      await this.killChild(2000);
      if (this.natsPid !== undefined) removePidFile(this.pidFile, this.natsPid);
      this.cleanupRuntimeDir();
      throw err;
    }
    this.running = true;
    this.emit("started", { pid: this.pid as number, monitorUrl: this.monitorUrl });
    await this.startServices();
  }

  /**
   * Applies changed settings to the running broker without dropping a connection: checks
   * the new files, writes the new nats-server config and sends nats-server SIGHUP, then
   * waits for its /varz config_load_time to move. Refused (the broker keeps its old
   * configuration) when a setting only a restart can change differs, when a file is
   * unreadable or does not match, or when nats-server does not take it.
   */
  async reload(next: BrokerSettings = this.settings): Promise<BrokerReload> {
    if (!this.running || this.natsPid === undefined)
      return { reloaded: false, reason: "the broker is not running" };
    if (this.opts.renderConfig)
      return { reloaded: false, reason: "this broker's config is rendered by its owner" };
    const fixed = restartOnlyChanges(this.settings, next);
    if (fixed.length > 0)
      return {
        reloaded: false,
        reason: `only a restart can change ${fixed.join(", ")}: the old settings stay`,
      };
    const previous = this.settings;
    const leaf = this.x509LeafPort;
    let conf: string;
    try {
      this.settings = next;
      // the x509 edge keeps the leafnode port it joined
      const render = await this.brokerConfig(leaf);
      conf = render(this._monitorPort);
    } catch (err) {
      this.settings = previous;
      this.x509LeafPort = leaf;
      return { reloaded: false, reason: (err as Error).message };
    }
    const before = await this.configLoadTime();
    writeFileSync(this.configPath, conf, { mode: 0o600 });
    try {
      process.kill(this.natsPid, "SIGHUP");
    } catch (err) {
      return { reloaded: false, reason: `cannot signal nats-server: ${(err as Error).message}` };
    }
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      const t = await this.configLoadTime();
      if (t !== undefined && t !== before) {
        this.logger("info", "configuration reloaded");
        const edge = await this._x509?.reloadRendered();
        if (edge && !edge.reloaded)
          return {
            reloaded: true,
            reason: `the broker reloaded; the x509 edge did not: ${edge.reason ?? ""}`,
          };
        return { reloaded: true };
      }
      await sleep(100);
    }
    const why = this.recentLog.slice(-3).join(" | ");
    return {
      reloaded: false,
      reason: `nats-server did not take the new configuration${why ? `: ${why}` : ""}`,
    };
  }

  /** For the x509 edge, whose config its owner renders: the same files again, re-read. */
  private async reloadRendered(): Promise<BrokerReload> {
    const render = this.opts.renderConfig;
    if (!render || this.natsPid === undefined) return { reloaded: false, reason: "not running" };
    const before = await this.configLoadTime();
    writeFileSync(this.configPath, render(this._monitorPort), { mode: 0o600 });
    process.kill(this.natsPid, "SIGHUP");
    for (let i = 0; i < 50; i++) {
      if ((await this.configLoadTime()) !== before) return { reloaded: true };
      await sleep(100);
    }
    return { reloaded: false, reason: "nats-server did not take the new configuration" };
  }

  /** nats-server's /varz config_load_time: it moves on every reload it accepts. */
  private async configLoadTime(): Promise<string | undefined> {
    try {
      const res = await fetch(`${this.monitorUrl}/varz`, { signal: AbortSignal.timeout(1000) });
      const v = (await res.json()) as { config_load_time?: string };
      return v.config_load_time;
    } catch {
      return undefined;
    }
  }

  /** The leafnode listener the x509 edge joins when the broker has no leafnode_port of its own. */
  private x509LeafPort: number | undefined;

  /**
   * Checks the files and the trust, and returns the broker's config renderer. Without JWT
   * trust a file-provider broker takes only clients with a certificate from its CA; any
   * other broker without trust is open.
   */
  private async brokerConfig(keepLeafPort?: number): Promise<(monitorPort: number) => string> {
    const s = this.settings;
    checkBrokerFiles(s);
    const material = s.natsTrustFile ? loadNatsTrust(s.natsTrustFile) : undefined;
    const trust = this.opts.trustFragment ?? (material ? renderTrustFragment(material) : undefined);
    if (clientCertRequired(s, trust))
      this.logger("info", `no NATS trust: clients need a certificate from ${s.caFile} (protocol v1 broker)`);
    else if (!trust)
      this.logger("warn", "no NATS trust material configured: the broker accepts unauthenticated clients");
    this.x509LeafPort = undefined;
    if (s.x509) {
      const k = "plugin.chorus.network.x509";
      if (!trust) {
        throw new BrokerError(
          "config",
          `${k}.port needs NATS trust (plugin.choria.network.nats_trust_file): without it, ` +
            "plugin.security.provider = file makes the client port itself take x509 clients",
        );
      }
      if (!s.x509.credentials) {
        throw new BrokerError(
          "config",
          `${k}.port needs ${k}.credentials: the NATS credentials of the CHORIA user the x509 clients act as`,
        );
      }
      if (s.leafnodePort <= 0)
        this.x509LeafPort = keepLeafPort ?? (await (this.opts.pickPort ?? freeLoopbackPort)());
    }
    return (monitorPort) =>
      renderNatsConfig(s, trust, {
        monitorPort,
        ...(material && { accountNames: material.accountNames }),
        ...(this.x509LeafPort !== undefined && { x509LeafPort: this.x509LeafPort }),
      });
  }

  /** Starts the x509 edge (when configured), joined to this broker's leafnode listener. */
  private async startX509Edge(): Promise<void> {
    const s = this.settings;
    if (!s.x509 || this.opts.renderConfig) return;
    const leafPort = s.leafnodePort > 0 ? s.leafnodePort : (this.x509LeafPort as number);
    const hubUrl = `${s.certFile ? "tls" : "nats-leaf"}://${localHost(s.listenAddress)}:${leafPort}`;
    const edge = new BrokerSupervisor({
      settings: x509EdgeSettings(s),
      renderConfig: (monitorPort) => renderX509EdgeConfig(s, { monitorPort, hubUrl }),
      logger: (level, line) => this.logger(level, edgeLogLine(line)),
      binary: this._binary,
      ...(this.opts.readyTimeoutMs !== undefined && { readyTimeoutMs: this.opts.readyTimeoutMs }),
      ...(this.opts.backoff !== undefined && { backoff: this.opts.backoff }),
      ...(this.opts.stopGraceMs !== undefined && { stopGraceMs: this.opts.stopGraceMs }),
      ...(this.opts.pickPort !== undefined && { pickPort: this.opts.pickPort }),
    });
    try {
      await edge.start();
    } catch (err) {
      const e = err as BrokerError;
      throw new BrokerError(
        e.code ?? "x509_edge",
        `x509 client port (plugin.chorus.network.x509.port = ${s.x509.port}): ${e.message}`,
        { cause: err },
      );
    }
    this._x509 = edge;
  }

  /** The adapters this broker runs (metrics in `.registry`), once started. */
  get adapters(): AdapterManager | undefined {
    return this._adapters;
  }

  /**
   * Managed streams and adapters need a client connection of the broker's own: with
   * NATS auth that is the broker credential (plugin.security.choria.seed_file and the
   * NATS JWT beside token_file, issued with streams_admin by setup). Failures are
   * reported, not fatal: RPC works without Streams.
   */
  private async startServices(): Promise<void> {
    const s = this.settings;
    const wantStreams = s.storeDir !== undefined && s.streams.manage;
    if (!wantStreams && s.adapters.length === 0) return;
    try {
      const authed = this.opts.trustFragment !== undefined || s.natsTrustFile !== undefined;
      let auth: { natsJwt: string; seedHex: string; inboxPrefix?: string } | undefined;
      if (authed) {
        if (!s.seedFile || !s.natsJwtFile) {
          throw new BrokerError(
            "config",
            "managed streams and adapters need the broker's credential: set plugin.security.choria.seed_file and token_file",
          );
        }
        const natsJwt = readFileSync(s.natsJwtFile, "utf8").trim();
        const seedHex = loadSeedFile(s.seedFile).seedHex;
        // Replies (JetStream acks, API answers) come to our reply prefix, which the ACLs allow.
        const caller = s.tokenFile
          ? decodeTokenUnverified(readFileSync(s.tokenFile, "utf8").trim()).callerid
          : undefined;
        auth = {
          natsJwt,
          seedHex,
          ...(typeof caller === "string" && { inboxPrefix: replyPrefix("choria", caller) }),
        };
      }
      this.servicesNc = await connectNats({
        servers: [this.clientUrl],
        name: `chorus broker ${s.identity}`,
        ...(s.caFile && { caFile: s.caFile }),
        // a protocol v1 broker without trust lets in only clients with a certificate
        ...(!authed &&
          s.securityProvider === "file" &&
          s.certFile &&
          s.keyFile && {
            certFile: s.certFile,
            keyFile: s.keyFile,
          }),
        ...(auth ?? {}),
        logger: this.log,
      });
      if (wantStreams) {
        if (this.clusterSize > 1) {
          // The peers may start minutes later: replicated streams wait for them in the
          // background while this broker already serves clients.
          this.ensureStreams(0).catch((err: Error) => {
            if (this.stopping) return;
            this.logger("error", `managed streams setup failed: ${err.message}`);
            this.emit("servicesError", err);
          });
        } else await this.ensureStreams();
      }
      if (s.adapters.length > 0) {
        if (!s.storeDir) {
          this.logger(
            "warn",
            "adapters are configured but plugin.choria.network.stream.store is not: they will buffer and drop unless a cluster peer runs Streams",
          );
        }
        this._adapters = new AdapterManager(s.adapters, { logger: this.log });
        this._adapters.start(this.servicesNc);
        this.logger("info", `adapters started: ${s.adapters.map((a) => a.name).join(", ")}`);
      }
    } catch (err) {
      this.logger("error", `streams/adapters setup failed: ${(err as Error).message}`);
      this.emit("servicesError", err as Error);
    }
  }

  /**
   * Creates or corrects the managed streams; JetStream may need a moment after /healthz,
   * and a cluster first needs a JetStream meta leader (a quorum of its peers).
   * `timeoutMs` 0 keeps trying until stop().
   */
  private async ensureStreams(timeoutMs = 15_000): Promise<void> {
    const nc = this.servicesNc;
    if (!nc || !this.settings.storeDir || !this.settings.streams.manage) return;
    const deadline = timeoutMs > 0 ? Date.now() + timeoutMs : Infinity;
    let waitedSince = Date.now();
    for (;;) {
      if (this.stopping) return;
      try {
        if (this.clusterSize > 1 && !(await this.metaLeader())) {
          throw new BrokerError("no_meta_leader", "the JetStream cluster has no meta leader yet");
        }
        const res = await ensureManagedStreams(nc, { ...this.settings.streams, peers: this.clusterSize });
        const changed = res.filter((r) => r.action !== "unchanged");
        if (changed.length > 0)
          this.logger("info", `managed streams: ${changed.map((r) => `${r.name} ${r.action}`).join(", ")}`);
        this.emit("streams", res);
        return;
      } catch (err) {
        if (Date.now() > deadline || this.stopping) throw err;
        if (Date.now() - waitedSince > 30_000) {
          waitedSince = Date.now();
          this.logger("warn", `managed streams still waiting for the cluster: ${(err as Error).message}`);
        }
        await sleep(250);
      }
    }
  }

  /** The JetStream meta leader's server name from /jsz, undefined while there is none. */
  private async metaLeader(): Promise<string | undefined> {
    try {
      const res = await fetch(`${this.monitorUrl}/jsz`, { signal: AbortSignal.timeout(2000) });
      const body = (await res.json()) as { meta_cluster?: { leader?: string } };
      return body.meta_cluster?.leader || undefined;
    } catch {
      return undefined;
    }
  }

  private async stopServices(): Promise<void> {
    await this._adapters?.stop();
    this._adapters = undefined;
    const nc = this.servicesNc;
    this.servicesNc = undefined;
    await nc?.close().catch(() => undefined);
  }

  /** SIGTERM, then SIGKILL after the grace period; resolves when no child is left. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.running = false;
    this.healthy = false;
    clearTimeout(this.restartTimer);
    clearTimeout(this.resetTimer);
    this.restartPending = false;
    // the edge first: with the broker gone first it would only log its lost link
    await this._x509?.stop();
    this._x509 = undefined;
    await this.stopServices();
    await this.killChild(this.opts.stopGraceMs ?? 10_000);
    if (this.natsPid !== undefined) removePidFile(this.pidFile, this.natsPid);
    rmSync(natsMonitorFile(this.settings), { force: true });
    this.cleanupRuntimeDir();
  }

  private async takeOverOrphan(): Promise<void> {
    await takeOverOrphan({
      pidFile: this.pidFile,
      binary: this._binary,
      graceMs: this.opts.stopGraceMs ?? 10_000,
      log: this.log,
    });
  }

  private prepareRuntimeDir(): void {
    const configured = this.settings.runtimeDir;
    if (configured) {
      mkdirSync(configured, { recursive: true, mode: 0o700 });
      this._runtimeDir = configured;
      this.ownRuntimeDir = false;
    } else {
      this._runtimeDir = mkdtempSync(join(tmpdir(), "chorus-broker-"));
      this.ownRuntimeDir = true;
    }
  }

  private cleanupRuntimeDir(): void {
    if (this.ownRuntimeDir && this._runtimeDir) rmSync(this._runtimeDir, { recursive: true, force: true });
    else if (this.wroteWrapper) rmSync(join(this._runtimeDir, NATS_WRAPPER_NAME), { force: true });
    this.wroteWrapper = false;
  }

  private async killChild(graceMs: number): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = this.childExit as Promise<void>;
    // cleared, not left pending: a live timer would keep the caller's process up
    const within = async (ms: number): Promise<boolean> => {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)));
      return Promise.race([exited.then(() => true), timeout]).finally(() => clearTimeout(timer));
    };
    this.signalNats(child, "SIGTERM");
    if (await within(graceMs)) return;
    this.logger("warn", `nats-server did not exit within ${graceMs}ms of SIGTERM, sending SIGKILL`);
    this.signalNats(child, "SIGKILL");
    // The wrapper exits as soon as nats-server is gone; one that does not is killed too.
    if (await within(5000)) return;
    child.kill("SIGKILL");
    await exited;
  }

  /** Signals go to nats-server itself; the wrapper then exits with its status. */
  private signalNats(child: ChildProcess, signal: NodeJS.Signals): void {
    if (this.natsPid === undefined) {
      child.kill(signal); // not reported yet: the wrapper forwards what it can
      return;
    }
    try {
      process.kill(this.natsPid, signal);
    } catch {
      // already gone; the wrapper's exit follows
    }
  }

  private forward(stream: NodeJS.ReadableStream | null): void {
    if (!stream) return;
    const rl = createInterface({ input: stream });
    rl.on("line", (line) => {
      this.recentLog.push(line);
      if (this.recentLog.length > 30) this.recentLog.shift();
      const tag = /\[(TRC|DBG|INF|WRN|ERR|FTL)\]/.exec(line)?.[1];
      this.logger(tag ? (LEVELS[tag] as BrokerLogLevel) : "info", line);
    });
  }

  /** Spawns one nats-server and waits until it is healthy; kills it if it never is. */
  private async launch(): Promise<void> {
    this.recentLog = [];
    this.healthy = false;
    this.natsPid = undefined;
    // Readiness is judged by /healthz: a server already answering there is not ours.
    if (await this.healthz()) {
      throw new BrokerError(
        "port_in_use",
        `something already answers on the nats-server monitoring port ${this._monitorPort} ` +
          "(a nats-server this supervisor did not start?)",
      );
    }
    const graceS = Math.max(1, Math.ceil((this.opts.stopGraceMs ?? 10_000) / 1000));
    const child = spawn(
      "/bin/sh",
      [
        join(this._runtimeDir, NATS_WRAPPER_NAME),
        String(process.pid),
        String(graceS),
        this.ownRuntimeDir ? this._runtimeDir : "",
        this.pidFile,
        this._binary,
        "-c",
        this.configPath,
      ],
      // stdin is the lifeline (never written to), fd 3 reports nats-server's pid
      { stdio: ["pipe", "pipe", "pipe", "pipe"] },
    );
    this.child = child;
    child.stdin?.on("error", () => undefined);
    const launched: { natsPid?: number | undefined } = {};
    let spawnError: Error | undefined;
    this.childExit = new Promise<void>((resolve) => {
      child.once("error", (err) => {
        spawnError = err;
        resolve();
      });
      child.once("exit", (code, signal) => {
        this.onExit(child, launched.natsPid, code, signal);
        resolve();
      });
    });
    this.forward(child.stdout);
    this.forward(child.stderr);
    const reported = readPid(child.stdio[3] as Readable | null);
    launched.natsPid = await Promise.race([
      reported,
      this.childExit.then(() => Promise.race([reported, sleep(200).then(() => undefined)])),
    ]);
    this.natsPid = launched.natsPid;
    if (this.natsPid !== undefined) writePidFile(this.pidFile, this.natsPid);

    const timeoutMs = this.opts.readyTimeoutMs ?? 10_000;
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (spawnError)
        throw new BrokerError("spawn", `cannot run ${this._binary} through /bin/sh: ${spawnError.message}`);
      if (child.exitCode !== null || child.signalCode !== null) {
        const e = natsExit(child.exitCode, child.signalCode);
        throw new BrokerError(
          "exited",
          `nats-server exited during startup (${e.code ?? e.signal})${this.logTail()}`,
        );
      }
      if (await this.healthz()) {
        this.healthy = true;
        this.armBackoffReset();
        return;
      }
      await sleep(50);
    }
    await this.killChild(2000);
    throw new BrokerError("not_ready", `nats-server was not ready within ${timeoutMs}ms${this.logTail()}`);
  }

  /** The launch failed because `port` (picked by us) was in use by the time nats-server bound it. */
  private portTaken(err: unknown, port: number): boolean {
    if (!(err instanceof BrokerError)) return false;
    if (err.code === "port_in_use") return port === this._monitorPort;
    return this.recentLog.some((l) => l.includes(`:${port}`) && /address already in use/i.test(l));
  }

  private logTail(): string {
    return this.recentLog.length > 0 ? `; last log lines:\n  ${this.recentLog.slice(-10).join("\n  ")}` : "";
  }

  private async healthz(): Promise<boolean> {
    try {
      const res = await fetch(`${this.monitorUrl}/healthz`, { signal: AbortSignal.timeout(1000) });
      await res.body?.cancel();
      return res.ok;
    } catch {
      return false;
    }
  }

  // Staying healthy for a while means the last crash was a one-off: back to fast restarts.
  private armBackoffReset(): void {
    clearTimeout(this.resetTimer);
    this.resetTimer = setTimeout(() => this.backoff.reset(), this.resetAfter);
    this.resetTimer.unref();
  }

  private onExit(
    child: ChildProcess,
    natsPid: number | undefined,
    wrapperCode: number | null,
    wrapperSignal: NodeJS.Signals | null,
  ): void {
    if (child !== this.child) return;
    this.healthy = false;
    clearTimeout(this.resetTimer);
    const expected = this.stopping;
    const { code, signal } = natsExit(wrapperCode, wrapperSignal);
    this.emit("exited", { pid: natsPid, code, signal, expected });
    if (expected || !this.running) return;
    this.logger("error", `nats-server exited unexpectedly (${code ?? signal})${this.logTail()}`);
    this.scheduleRestart();
  }

  private scheduleRestart(): void {
    const delay = this.backoff.next();
    this.scheduledDelayMs = delay;
    this.logger("info", `restarting nats-server in ${delay}ms`);
    clearTimeout(this.restartTimer);
    this.restartPending = true;
    this.restartTimer = setTimeout(() => {
      this.restartPending = false;
      void this.restart();
    }, delay);
  }

  private async restart(): Promise<void> {
    if (this.stopping || !this.running) return;
    try {
      // A nats-server left running (its wrapper killed on its own) would hold the ports.
      await this.takeOverOrphan();
      await this.launch();
    } catch (err) {
      if (this.stopping || !this.running) return;
      const error = err as Error;
      this.logger("error", `nats-server restart failed: ${error.message}`);
      // An exit during startup (or after we killed a hung one) already scheduled the
      // next attempt in onExit; a spawn error, a refused takeover or a busy monitoring
      // port has no exit, so schedule it here.
      if (!this.restartPending) this.scheduleRestart();
      this.emit("restartFailed", { error, delayMs: this.scheduledDelayMs });
      return;
    }
    if (this.stopping || !this.running) return;
    this.restartCount++;
    this.logger("info", `nats-server restarted (pid ${this.pid}, restart ${this.restartCount})`);
    this.emit("restarted", { pid: this.pid as number, restarts: this.restartCount });
    // A store that was lost or edited while nats-server was down is put back in shape.
    this.ensureStreams(this.clusterSize > 1 ? 0 : 15_000).catch((err: Error) => {
      this.logger("error", `managed streams check after restart failed: ${err.message}`);
      this.emit("servicesError", err);
    });
  }
}
