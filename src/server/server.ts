import { resolve } from "node:path";
import { pino, type Logger } from "pino";
import { mkdirSync } from "node:fs";
import {
  loadConfig,
  serverSettings,
  type Config,
  type MachineSettings,
  type ProvisioningSettings,
  type X509Settings,
} from "../core/config/index.js";
import { closeNats, connectNats, type NatsConnection } from "../core/connector/index.js";
import type { AgentDDL } from "../core/ddl/index.js";
import type { RegistrationSettings } from "../services/registration/index.js";
import { broadcastSubject, directSubject, replyPrefix, serviceSubject } from "../core/protocol/index.js";
import {
  FileSecurity,
  SecurityError,
  provisioningTokenIssuer,
  securityFromSettings,
  type ChoriaSecurity,
  type ProvisioningClaims,
} from "../core/security/index.js";
import { Spool, submissionSettings } from "../services/submission/index.js";
import { Jobs } from "../services/jobs/index.js";
import { loadScoutChecks, materializeScoutChecks } from "../services/machines/index.js";
import {
  jobManagerCommand,
  jobsSettings,
  registerBuiltinAgents,
  registerJobAgent,
  registerScoutAgent,
  type JobAgent,
  type JobsSettings,
} from "./agents/index.js";
import { scanAgentDirs, type AgentLoadProblem } from "./agents-loader.js";
import { AuditLog } from "./audit.js";
import { ActionPolicyAuthorizer, authorizerFromSettings } from "./authz/index.js";
import { RequestDecoder, type DecoderSecurity } from "./decoder.js";
import { DataRegistry, loadExternalDataPlugins, loadModuleDataPlugins } from "./data/index.js";
import { loadFacts } from "./facts.js";
import { startNodeMetadata, type NodeMetadata, type ServerLifecycleOptions } from "./metadata.js";
import { ServerMetrics } from "./metrics.js";
import { ServerMachineHost, type ServerMachineHostOptions } from "./machines.js";
import { MAX_REQUEST_TTL, NodeRuntime } from "./node.js";
import { RateLimitedLog } from "./ratelog.js";
import { ReplayGuard } from "./replay.js";
import { AgentRegistry, ServerError, type RegisterOptions } from "./registry.js";
import type { DropReason, ServerStats } from "./stats.js";
import { StatusFileWriter } from "./status.js";
import { allowAll, type AgentHandler, type Authorizer, type HostInfo } from "./types.js";
import { CHORUS_VERSION } from "../core/util/index.js";
import {
  ProvisionAgent,
  choriaProvisionDDL,
  type ProvisionTuning,
  type ServerExitRequest,
} from "./provision/agent.js";
import { setConfigKey } from "./provision/files.js";
import {
  ProvisioningSecurity,
  provisioningBrokers,
  provisioningDecision,
  type ProvisioningDecision,
} from "./provision/mode.js";

function positive(cfg: Config, key: string, v: number): number {
  if (!(v > 0)) throw cfg.error(key, `${key} must be positive`);
  return v;
}

/** Drops that are attacks or worse: logged at error level. */
const ATTACK_REASONS: ReadonlySet<DropReason> = new Set<DropReason>([
  "too_deep",
  "replayed",
  "replay_forgotten",
  "reply_not_caller",
  "ttl_too_long",
]);

/**
 * What a server needs of its security provider: ChoriaSecurity, or in provisioning mode
 * a provider with no server token (ProvisioningSecurity).
 */
export type ServerSecurity = DecoderSecurity &
  Pick<ChoriaSecurity, "purpose" | "identity" | "token" | "seedHex" | "natsJwt" | "sign"> & {
    /** set by x509ServerSecurity: the node speaks only protocol v1 */
    readonly x509?: FileSecurity;
  };

function v2Only(what: string): never {
  throw new SecurityError("wrong_provider", `${what} needs the choria security provider (protocol v2)`);
}

/**
 * A v1-only node's security: its certificate is its identity (there is no server token),
 * RSA signs what it publishes (registration), and the decoder gets no v2 verifier.
 */
export function x509ServerSecurity(x509: FileSecurity): ServerSecurity {
  return {
    x509,
    purpose: "choria_server",
    identity: x509.certname,
    token: "",
    seedHex: "",
    issuers: [],
    sign: (d) => x509.sign(d),
    verifyClientToken: () => v2Only("a v2 client token"),
    verifySignerToken: () => v2Only("a v2 signer token"),
    verifySignature: () => false,
  } as ServerSecurity;
}

/** A node's provisioning state (fromConfigFile fills it in from the config and provisioning.jwt). */
export interface ServerProvisioning {
  /** true: provisioning mode; false: a normal node that can be sent back to it (reprovision, renewal) */
  mode: boolean;
  /** why this mode */
  reason: string;
  /** the provisioning.jwt text and its verified claims */
  jwt: string;
  claims: ProvisioningClaims;
  settings: ProvisioningSettings;
  /** normal mode: at this time (unix ms) turn plugin.choria.server.provision on and restart, to renew */
  renewAt?: number;
  renewWhat?: string;
}

export interface ServerOptions {
  identity: string;
  collectives: string[];
  /** Defaults to the first collective. */
  mainCollective?: string;
  /** Must hold a choria_server token for `identity` (outside provisioning mode). */
  security: ServerSecurity;
  /** Broker URLs (nats:// or tls://). */
  servers: string[];
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  /** Force TLS on or off (default: on with a CA or tls:// URLs). */
  tls?: boolean;
  /** Companion NATS user JWT; defaults to the one ChoriaSecurity loaded. */
  natsJwt?: string;
  facts?: Record<string, unknown>;
  /** A fixed list of classes; wins over classesFile. */
  classes?: string[];
  /** classesfile: read whenever classes are needed; unreadable = class filters do not match. */
  classesFile?: string;
  /** Data plugins (default: the built-ins plus those in dataModuleDir and dataExternalDir, loaded by start()). */
  dataRegistry?: DataRegistry;
  /** plugin.chorus.data.module_dir: `<name>.mjs`/`.js` data plugin modules. */
  dataModuleDir?: string;
  /** plugin.chorus.data.external_dir: `<name>.json` data DDLs with an executable `<name>`. */
  dataExternalDir?: string;
  /** Prometheus port; unset = no endpoint. 0 picks a free port. */
  statsPort?: number;
  statsAddress?: string;
  logger?: Logger;
  /** Used when no logger is given (default info). */
  logLevel?: string;
  /** Sign replies with the server key (default true, as Choria). */
  signReplies?: boolean;
  /** Install the built-in agents (discovery, rpcutil, choria_util); default true. */
  defaultAgents?: boolean;
  authorizer?: Authorizer;
  /** The parsed config, for rpcutil#get_config_item. */
  config?: Config;
  /** Share a decoder (and its verification cache) between servers in one process. */
  decoder?: RequestDecoder;
  /** Agents that callers holding only signed_fleet_management may call unsigned (see RequestDecoderOptions). */
  signedOnlyAgents?: readonly string[];
  /** Longest request TTL accepted, seconds (plugin.chorus.security.max_request_ttl; default 5 h). */
  maxRequestTtl?: number;
  /** Memory for remembered request ids, bytes (plugin.chorus.security.replay_cache_mb; default 32 MiB). */
  replayCacheBytes?: number;
  maxMessageBytes?: number;
  /** Keep retrying the first broker connection instead of failing start() (daemons want this). */
  waitOnFirstConnect?: boolean;
  /** Library directories searched for `mcollective/agent/<name>.json` agents (libdir). */
  libdir?: string[];
  /** How long an external agent's activation check may take (default 2 s, as go-choria). */
  activationTimeoutMs?: number;
  /** rpcaudit: one JSON line per request; the server flushes and closes it in stop(). */
  audit?: AuditLog;
  /** plugin.choria.status_file_path: status JSON rewritten every statusIntervalMs (default 30 s). */
  statusFile?: string;
  statusIntervalMs?: number;
  /** Reload libdir agents, DDLs and policies on SIGHUP while running (fromConfigFile: on). */
  reloadOnSighup?: boolean;
  /** Lifecycle events (startup, alive, shutdown); false = none. Default on. */
  lifecycle?: false | ServerLifecycleOptions;
  /** Registration; default from `config` (registration = ...), off when unset. */
  registration?: RegistrationSettings;
  /** Submission spool (plugin.choria.submission.spool), drained to `<main>.submission.in.>` while running. */
  submission?: { spool: string; maxSpoolSize?: number; minFreeBytes?: number };
  /**
   * The job agent (workflows) and where executions live (plugin.chorus.jobs.*); off when
   * unset and in provisioning mode. Events go through `submission`; without it none are sent.
   */
  jobs?: JobsSettings;
  /**
   * Autonomous agents from plugin.choria.machine.store (and the scout agent); off when
   * unset and in provisioning mode. The machines run while the broker is away.
   */
  machines?: ServerMachineOptions;
  /** Provisioning: the choria_provision agent, and provisioning mode when `mode` is set. */
  provisioning?: ServerProvisioning;
  /** Shorter waits for the choria_provision agent (tests). */
  provisionTuning?: ProvisionTuning;
}

/** The machine host of a server (fromConfigFile fills it from plugin.choria.machine.* and plugin.scout.*). */
export interface ServerMachineOptions {
  /** the directory of machines, one sub-directory each (created when missing) */
  store: string;
  /** host the scout agent (plugin.scout.agent_disabled turns it off); default true */
  scoutAgent?: boolean;
  /** node-exporter textfile directory for nagios and metric watchers */
  textfileDirectory?: string;
  /** the node's token file, for the nagios builtin choria_status */
  tokenFile?: string;
  /** events kept while the broker is away (default 10000; the oldest are dropped) */
  maxQueuedEvents?: number;
  /** how often the store is re-read, ms */
  pollMs?: number;
  /** plugin.choria.machine.signing_key */
  machineSigningKey?: string;
  /** plugin.chorus.scout.checks: a scout_checks.yaml written into the store as check machines at start */
  scoutChecksFile?: string;
  /** plugin.machines.*: install signed machine specs from KV */
  download?: ServerMachineHostOptions["download"];
}

/** ServerMachineOptions from the parsed machine settings, or undefined without a store. */
export function serverMachineOptions(
  m: MachineSettings,
  tokenFile?: string,
): ServerMachineOptions | undefined {
  if (m.store === undefined) return undefined;
  return {
    store: m.store,
    scoutAgent: !m.scoutAgentDisabled,
    ...(m.textfileDirectory !== undefined && { textfileDirectory: m.textfileDirectory }),
    ...(tokenFile !== undefined && { tokenFile }),
    maxQueuedEvents: m.maxQueuedEvents,
    ...(m.signingKey !== undefined && { machineSigningKey: m.signingKey }),
    ...(m.scoutChecksFile !== undefined && { scoutChecksFile: m.scoutChecksFile }),
    ...(m.download && {
      download: {
        bucket: m.bucket,
        key: m.key,
        pollIntervalMs: m.pollIntervalMs,
        purge: m.purge,
        ...(m.specSigningKey !== undefined && { publicKey: m.specSigningKey }),
      },
    }),
  };
}

// setTimeout cannot wait longer than ~24.8 days; longer waits are taken a day at a time
const DAY_MS = 86_400_000;

/** What reloadAgents() did. */
export interface AgentReloadResult {
  loaded: string[];
  removed: string[];
  problems: AgentLoadProblem[];
}

/**
 * A Choria-compatible node: one identity on its own broker connection. Embed it
 * to serve agents written in TypeScript:
 *
 *     const server = await Server.fromConfigFile("server.conf");
 *     server.registerAgent(ddl, { hello: (req, reply) => { reply.data.msg = "hi"; } });
 *     await server.start();
 */
export class Server {
  readonly identity: string;
  readonly collectives: readonly string[];
  readonly registry = new AgentRegistry();
  readonly node: NodeRuntime;
  readonly decoder: RequestDecoder;
  /** Request ids seen within their TTL window (replay protection). */
  readonly replay: ReplayGuard;
  readonly log: Logger;
  readonly security: ServerSecurity;
  /** The choria_provision agent, when the node has a provisioning token. */
  readonly provisionAgent: ProvisionAgent | undefined;
  private readonly opts: ServerOptions;
  private readonly rateLog: RateLimitedLog;
  private nc: NatsConnection | undefined;
  private readonly subs = new Map<string, { unsubscribe(): void }>();
  private readonly inflight = new Set<Promise<void>>();
  private metricsServer: ServerMetrics | undefined;
  private stopping = false;
  /** Agents that came from libdir, so a reload replaces or removes only those. */
  private readonly libdirAgents = new Set<string>();
  private reloadChain: Promise<unknown> = Promise.resolve();
  private statusWriter: StatusFileWriter | undefined;
  private readonly onSighup = (): void => {
    this.log.info("SIGHUP: reloading agents");
    this.reloadAgents().catch((err: Error) => this.log.error(`agent reload failed: ${err.message}`));
  };
  private metadata: NodeMetadata | undefined;
  private submissionSpool: Spool | undefined;
  /** The server's data plugins, shared by rpcutil, inventory and filter matching. */
  readonly data: DataRegistry;
  private dataLoaded = false;
  private exitRequest: ServerExitRequest | undefined;
  private resolveExit: (r: ServerExitRequest) => void = () => undefined;
  private readonly exitPromise = new Promise<ServerExitRequest>((r) => (this.resolveExit = r));
  private renewTimer: NodeJS.Timeout | undefined;
  /** The node's workflow executions and the job agent serving them, when enabled. */
  readonly jobs: Jobs | undefined;
  readonly jobAgent: JobAgent | undefined;
  private machineHost: ServerMachineHost | undefined;

  constructor(opts: ServerOptions) {
    if (opts.collectives.length === 0)
      throw new ServerError("config", "a server needs at least one collective");
    const sec = opts.security;
    const provisionMode = opts.provisioning?.mode === true;
    if (provisionMode && sec.purpose !== "choria_provisioning") {
      throw new ServerError("credential", "provisioning mode needs the provisioning security provider");
    }
    if (!provisionMode && sec.purpose !== "choria_server") {
      throw new ServerError(
        "credential",
        `the server needs a choria_server token, got a ${sec.purpose} token`,
      );
    }
    if (sec.identity !== undefined && sec.identity !== opts.identity) {
      throw new ServerError(
        "credential",
        `the server token is for identity ${sec.identity} but the server identity is ${opts.identity}`,
      );
    }
    this.opts = opts;
    this.identity = opts.identity;
    this.collectives = [...opts.collectives];
    this.security = sec;
    this.log =
      opts.logger ?? pino({ name: "chorus-server", level: opts.logLevel ?? "info" }, pino.destination(2));
    this.rateLog = new RateLimitedLog(this.log);
    this.decoder =
      opts.decoder ??
      new RequestDecoder({
        ...(sec.x509 ? { x509: sec.x509 } : { security: sec }),
        ...(opts.maxMessageBytes !== undefined && { maxBytes: opts.maxMessageBytes }),
        ...(opts.signedOnlyAgents && { signedOnlyAgents: opts.signedOnlyAgents }),
      });
    this.data = opts.dataRegistry ?? DataRegistry.withBuiltins();
    this.replay = new ReplayGuard(
      opts.replayCacheBytes !== undefined ? { maxBytes: opts.replayCacheBytes } : {},
    );
    const startTime = Date.now();
    const host: HostInfo = {
      version: CHORUS_VERSION,
      startTime,
      ...(opts.config && { configFile: opts.config.file }),
      securityProvider: sec.x509 ? "file" : "choria",
      middlewareServers: [...opts.servers],
      connectorTls:
        opts.tls ?? (opts.caFile !== undefined || opts.servers.some((s) => s.startsWith("tls://"))),
      connectedServer: () => this.nc?.getServer() ?? "",
      connectionStats: (): Record<string, number> => {
        const s = this.nc?.stats();
        return s
          ? { in_msgs: s.inMsgs, out_msgs: s.outMsgs, in_bytes: s.inBytes, out_bytes: s.outBytes }
          : {};
      },
      configItem: (key) => opts.config?.get(key),
    };
    this.node = new NodeRuntime({
      identity: opts.identity,
      collectives: opts.collectives,
      ...(opts.mainCollective && { mainCollective: opts.mainCollective }),
      facts: opts.facts ?? {},
      ...(opts.classes !== undefined
        ? { classes: opts.classes }
        : opts.classesFile !== undefined && { classesFile: opts.classesFile }),
      dataRegistry: this.data,
      registry: this.registry,
      credential: { token: sec.token, sign: (d) => sec.sign(d) },
      signReplies: opts.signReplies ?? true,
      ...(opts.authorizer && { authorizer: opts.authorizer }),
      host,
      ...(opts.audit && { auditor: opts.audit }),
      ...(opts.maxRequestTtl !== undefined && { maxTtl: opts.maxRequestTtl }),
      replayGuard: this.replay,
      events: {
        action: (agent, action, statuscode, seconds) =>
          this.metricsServer?.observeAction(this.identity, agent, action, statuscode, seconds),
        drop: (reason, detail) =>
          ATTACK_REASONS.has(reason)
            ? this.rateLog.error(reason, { reason }, `refused message: ${detail}`)
            : this.rateLog.warn(reason, { reason }, `dropped message: ${detail}`),
        dataError: (err, source) =>
          this.rateLog.warn(
            `data:${source}`,
            { source },
            `data plugin failed in a filter: ${(err as Error).message ?? String(err)}`,
          ),
        handlerError: (err, agent, action) =>
          this.rateLog.warn(
            `handler:${agent}#${action}`,
            { agent, action },
            `action failed: ${(err as Error).message ?? String(err)}`,
          ),
      },
    });
    this.registry.onRegister((name) => {
      if (this.nc && !this.stopping) this.subscribeAgent(name);
    });
    this.registry.onUnregister((name) => this.subscribeAgent(name));
    if (opts.defaultAgents ?? true) registerBuiltinAgents(this.registry);
    if (opts.jobs && !provisionMode) [this.jobs, this.jobAgent] = this.jobsAgent(opts.jobs);
    // go-choria's scout agent is off in provisioning mode and with plugin.scout.agent_disabled
    if (opts.machines && !provisionMode && opts.machines.scoutAgent !== false)
      registerScoutAgent(this.registry);
    this.provisionAgent = opts.provisioning && this.provisioningAgent(opts.provisioning);
  }

  /** choria_provision: every action in provisioning mode, only reprovision otherwise. */
  private provisioningAgent(p: ServerProvisioning): ProvisionAgent {
    const agent = new ProvisionAgent({
      provisionMode: p.mode,
      identity: this.identity,
      jwt: p.jwt,
      claims: p.claims,
      settings: p.settings,
      requestExit: (r) => this.requestExit(r),
      wouldProvision: (file) => {
        try {
          const d = provisioningDecision(loadConfig(file));
          return d.provision ? d.reason : undefined;
        } catch (err) {
          return (err as Error).message;
        }
      },
      onProvisioned: () => this.metadata?.lifecycle?.publish("provisioned"),
      onRefused: (reason, detail) => this.rateLog.warn(`provision:${reason}`, { reason }, detail),
      ...(this.opts.provisionTuning && { tuning: this.opts.provisionTuning }),
    });
    // in provisioning mode Choria turns authorization off; elsewhere policies apply as to any agent
    this.registry.register(choriaProvisionDDL(), agent.handlers(), { replace: true });
    return agent;
  }

  /** The job agent; a jobs directory that cannot be made leaves it out, the node runs on. */
  private jobsAgent(j: JobsSettings): [Jobs, JobAgent] | [undefined, undefined] {
    const log = this.log.child({ component: "jobs" });
    const spool = this.opts.submission?.spool;
    try {
      const jobs = new Jobs({
        dir: j.dir,
        identity: this.identity,
        collective: this.opts.mainCollective ?? (this.collectives[0] as string),
        ...(spool !== undefined && { spoolDir: spool }),
        ...(j.maxOutputBytes !== undefined && { maxOutputBytes: j.maxOutputBytes }),
        managerCommand: j.managerCommand ?? jobManagerCommand(this.opts.config?.file),
        logger: log,
      });
      if (spool === undefined) log.warn("no submission spool: workflow events are not published");
      return [jobs, registerJobAgent(this.registry, { host: () => jobs, events: spool !== undefined })];
    } catch (err) {
      log.error(`job agent disabled: ${(err as Error).message}`);
      return [undefined, undefined];
    }
  }

  /** True while the node runs in provisioning mode (collective provisioning, choria_provision). */
  get provisionMode(): boolean {
    return this.opts.provisioning?.mode === true;
  }

  /**
   * Resolves once the node asked to be restarted from its config file or to end its
   * process (choria_provision restart, reprovision and shutdown; credential renewal).
   * The server keeps running: whoever runs it stops it and acts (serveConfigFile).
   */
  exitRequested(): Promise<ServerExitRequest> {
    return this.exitPromise;
  }

  /** Asks the owner to restart or end this server; the first request wins. */
  requestExit(r: ServerExitRequest): void {
    if (this.exitRequest) return;
    this.exitRequest = r;
    this.log.info({ action: r.action, reason: r.reason }, `asking for ${r.action}`);
    this.resolveExit(r);
  }

  /**
   * Builds a server from a Choria-style server config: identity, collectives,
   * brokers, security files, facts (plugin.yaml) and classes (classesfile).
   */
  static async fromConfigFile(path: string, overrides: Partial<ServerOptions> = {}): Promise<Server> {
    const cfg = loadConfig(path);
    const decision = provisioningDecision(cfg);
    if (decision.provision) return Server.provisioningFromConfig(cfg, decision, overrides);
    const s = serverSettings(cfg);
    const security =
      s.securityProvider === "file"
        ? x509ServerSecurity(
            new FileSecurity({
              ...(s.x509 as X509Settings),
              identity: s.identity,
            }),
          )
        : securityFromSettings(s);
    const logger =
      overrides.logger ??
      pino(
        { name: "chorus-server", level: s.logLevel },
        s.logFile ? pino.destination({ dest: s.logFile, mkdir: true }) : pino.destination(2),
      );
    const { facts, missing } = loadFacts(s.factsFiles);
    for (const f of missing) logger.warn({ file: f }, "facts file does not exist, skipping it");
    const authLog = logger.child({ component: "authz" });
    const authorizer =
      overrides.authorizer ??
      authorizerFromSettings(s, authLog, cfg.string("plugin.actionpolicy.default_name", "default"));
    let audit: AuditLog | undefined;
    if (s.rpcAudit) {
      const auditFile = s.rpcAuditLogFile;
      if (!auditFile)
        throw new ServerError("config", "rpcaudit is on but plugin.rpcaudit.logfile is not set");
      const mode = cfg.get("plugin.rpcaudit.logfile.mode");
      audit = new AuditLog({
        file: auditFile,
        ...(mode && { mode: parseInt(mode, 8) }),
        onError: (err) => logger.error({ file: auditFile }, `cannot write audit log: ${err.message}`),
      });
    }
    const statusFile = cfg.get("plugin.choria.status_file_path");
    const machines = serverMachineOptions(s.machines, s.tokenFile);
    const sub = submissionSettings(cfg);
    const jobs = jobsSettings(cfg, sub.spool);
    return new Server({
      identity: s.identity,
      collectives: s.collectives,
      mainCollective: s.mainCollective,
      security,
      servers: s.middlewareHosts,
      ...(s.caFile && { caFile: s.caFile }),
      ...(s.certFile && { certFile: s.certFile }),
      ...(s.keyFile && { keyFile: s.keyFile }),
      facts,
      ...(s.classesFile !== undefined && { classesFile: s.classesFile }),
      ...(s.dataModuleDir !== undefined && { dataModuleDir: s.dataModuleDir }),
      ...(s.dataExternalDir !== undefined && { dataExternalDir: s.dataExternalDir }),
      ...(s.statsPort !== undefined && { statsPort: s.statsPort }),
      statsAddress: cfg.string("plugin.choria.stats_address", "127.0.0.1"),
      signReplies: cfg.bool("plugin.security.choria.sign_replies", true),
      config: cfg,
      authorizer,
      libdir: s.libdir,
      ...(audit && { audit }),
      ...(statusFile && { statusFile: resolve(s.configDir, statusFile) }),
      statusIntervalMs: cfg.duration("plugin.choria.status_update_interval", 30_000),
      maxRequestTtl: positive(
        cfg,
        "plugin.chorus.security.max_request_ttl",
        cfg.duration("plugin.chorus.security.max_request_ttl", MAX_REQUEST_TTL * 1000) / 1000,
      ),
      replayCacheBytes:
        positive(
          cfg,
          "plugin.chorus.security.replay_cache_mb",
          cfg.int("plugin.chorus.security.replay_cache_mb", 32),
        ) *
        1024 *
        1024,
      reloadOnSighup: true,
      ...(sub.spool && {
        submission: { spool: sub.spool, maxSpoolSize: sub.maxSpoolSize, minFreeBytes: sub.minFreeBytes },
      }),
      ...(jobs && { jobs }),
      ...(machines && { machines }),
      ...(decision.claims &&
        decision.jwt !== undefined && {
          provisioning: {
            mode: false,
            reason: decision.reason,
            jwt: decision.jwt,
            claims: decision.claims,
            settings: decision.settings,
            ...(decision.renewAt !== undefined && { renewAt: decision.renewAt }),
            ...(decision.renewWhat !== undefined && { renewWhat: decision.renewWhat }),
          },
        }),
      ...overrides,
      logger,
    });
  }

  /**
   * A node in provisioning mode: collective `provisioning`, the broker and NATS
   * credential from the provisioning token, discovery, rpcutil, choria_util and
   * choria_provision only, no registration, lifecycle as provision_mode_server.
   */
  private static async provisioningFromConfig(
    cfg: Config,
    d: ProvisioningDecision,
    overrides: Partial<ServerOptions>,
  ): Promise<Server> {
    const s = d.settings;
    const claims = d.claims as ProvisioningClaims;
    const jwt = d.jwt as string;
    const logger =
      overrides.logger ??
      pino(
        { name: "chorus-server", level: s.logLevel },
        s.logFile ? pino.destination({ dest: s.logFile, mkdir: true }) : pino.destination(2),
      );
    logger.info({ reason: d.reason }, "starting in provisioning mode");
    const factsFiles = s.factsFiles.length > 0 ? s.factsFiles : claims.chf ? [claims.chf] : [];
    const { facts, missing } = loadFacts(factsFiles);
    for (const f of missing) logger.warn({ file: f }, "facts file does not exist, skipping it");
    const servers = await provisioningBrokers(claims);
    const tls = claims.chs === true || servers.some((u) => u.startsWith("tls://"));
    const trust = s.issuers.length > 0 ? s.issuers : [provisioningTokenIssuer(jwt)];
    return new Server({
      identity: s.identity,
      collectives: ["provisioning"],
      security: new ProvisioningSecurity(claims, trust),
      servers,
      ...(tls && { tls, ...(s.caFile && { caFile: s.caFile }) }),
      facts,
      ...(s.classesFile !== undefined && { classesFile: s.classesFile }),
      ...(s.statsPort !== undefined && { statsPort: s.statsPort }),
      statsAddress: cfg.string("plugin.choria.stats_address", "127.0.0.1"),
      // no server token to sign with or to show
      signReplies: false,
      config: cfg,
      authorizer: allowAll,
      lifecycle: { component: "provision_mode_server" },
      provisioning: { mode: true, reason: d.reason, jwt, claims, settings: s },
      ...overrides,
      logger,
    });
  }

  /** Registers an agent and its action handlers (subscribes it at once when running). */
  registerAgent(ddl: AgentDDL, actions: Record<string, AgentHandler>, opts?: RegisterOptions): void {
    this.registry.register(ddl, actions, opts);
  }

  /** A copy of the node's counters. */
  get stats(): ServerStats {
    return this.node.stats;
  }

  get connection(): NatsConnection | undefined {
    return this.nc;
  }

  /** The bound Prometheus port, when the endpoint runs. */
  get statsPort(): number | undefined {
    return this.metricsServer?.port;
  }

  async start(): Promise<void> {
    if (this.nc) return;
    this.stopping = false;
    const o = this.opts;
    const natsJwt = o.natsJwt ?? this.security.natsJwt;
    const log = this.log.child({ component: "nats" });
    if (o.libdir && o.libdir.length > 0) await this.reloadAgents();
    await this.loadDataPlugins();
    this.recoverJobs();
    if (o.statsPort !== undefined) {
      this.metricsServer = new ServerMetrics({
        port: o.statsPort,
        host: o.statsAddress ?? "127.0.0.1",
        nodes: () => [this.node],
        decoder: this.decoder,
        replay: this.replay,
        policy: () =>
          this.node.authorizer instanceof ActionPolicyAuthorizer ? this.node.authorizer.stats : undefined,
        ...(o.submission && { spool: () => this.submissionSpool?.stats() }),
        ...(this.jobAgent && {
          jobs: {
            stats: () => (this.jobAgent as JobAgent).stats,
            running: () => this.jobs?.running().length ?? 0,
          },
        }),
        ...(o.machines && !this.provisionMode && { machines: () => this.machineHost?.stats }),
      });
      await this.metricsServer.start();
    }
    // before the broker: machines run (and queue their events) while it cannot be reached
    await this.startMachines();
    try {
      this.nc = await connectNats({
        servers: o.servers,
        name: this.identity,
        // the broker lets a node subscribe only under its reply prefix, so request
        // inboxes (JetStream acks for the submission spool) must live there
        inboxPrefix: replyPrefix(o.mainCollective ?? (this.collectives[0] as string), this.identity),
        ...(o.caFile && { caFile: o.caFile }),
        ...(o.certFile && { certFile: o.certFile }),
        ...(o.keyFile && { keyFile: o.keyFile }),
        ...(o.tls !== undefined && { tls: o.tls }),
        ...(natsJwt && { natsJwt, seedHex: this.security.seedHex }),
        ...(o.waitOnFirstConnect !== undefined && { waitOnFirstConnect: o.waitOnFirstConnect }),
        logger: log,
      });
    } catch (err) {
      await this.stopMachines();
      await this.metricsServer?.stop();
      this.metricsServer = undefined;
      throw err;
    }
    this.machineHost?.attach(this.nc);
    for (const c of this.collectives) this.subscribe(directSubject(c, this.identity));
    for (const name of this.registry.names()) this.subscribeAgent(name);
    if (o.statusFile) {
      this.statusWriter = new StatusFileWriter({
        file: o.statusFile,
        node: this.node,
        ...(o.statusIntervalMs !== undefined && { intervalMs: o.statusIntervalMs }),
        onError: (err) => this.rateLog.warn("status_file", {}, `cannot write status file: ${err.message}`),
      });
      this.statusWriter.start();
    }
    if (o.reloadOnSighup) process.on("SIGHUP", this.onSighup);
    this.startMetadata(this.nc);
    this.startSpool(this.nc);
    this.log.info(
      {
        identity: this.identity,
        collectives: this.collectives,
        server: this.nc.getServer(),
        agents: this.registry.names(),
        ...(this.metricsServer && { statsPort: this.metricsServer.port }),
      },
      this.provisionMode ? "server started in provisioning mode" : "server started",
    );
    this.scheduleRenewal();
  }

  /** The node's machine host, while it runs. */
  get machines(): ServerMachineHost | undefined {
    return this.machineHost;
  }

  /** Starts the machine host; a store that cannot be used is logged and the node runs without it. */
  private async startMachines(): Promise<void> {
    const m = this.opts.machines;
    if (!m || this.provisionMode || this.machineHost) return;
    const log = this.log.child({ component: "machines" });
    const host = new ServerMachineHost({
      identity: this.identity,
      collective: this.opts.mainCollective ?? (this.collectives[0] as string),
      directory: m.store,
      log,
      facts: () => this.node.facts,
      ...(this.opts.statusFile !== undefined && { statusFile: this.opts.statusFile }),
      ...(m.tokenFile !== undefined && { tokenFile: m.tokenFile }),
      ...(m.textfileDirectory !== undefined && { textfileDirectory: m.textfileDirectory }),
      ...(this.metricsServer && { metrics: this.metricsServer.registry }),
      ...(m.maxQueuedEvents !== undefined && { maxQueuedEvents: m.maxQueuedEvents }),
      ...(m.pollMs !== undefined && { pollMs: m.pollMs }),
      ...(m.machineSigningKey !== undefined && { machineSigningKey: m.machineSigningKey }),
      ...(m.download && { download: m.download }),
    });
    try {
      // go-choria creates a missing store (0700): machines may hold secrets
      mkdirSync(m.store, { recursive: true, mode: 0o700 });
      if (m.scoutChecksFile !== undefined) {
        // a bad checks file leaves the checks as they were; the other machines run regardless
        try {
          const r = materializeScoutChecks(loadScoutChecks(m.scoutChecksFile), m.store);
          log.info({ file: m.scoutChecksFile, ...r }, "scout checks written to the machine store");
        } catch (err) {
          log.error({ file: m.scoutChecksFile }, `scout checks not updated: ${(err as Error).message}`);
        }
      }
      await host.start();
    } catch (err) {
      log.error({ store: m.store }, `autonomous agents disabled: ${(err as Error).message}`);
      await host.stop(0).catch(() => undefined);
      return;
    }
    this.machineHost = host;
    this.node.machines = host;
    log.info({ store: m.store, machines: host.machines().length }, "autonomous agents started");
  }

  private async stopMachines(): Promise<void> {
    const host = this.machineHost;
    if (!host) return;
    this.machineHost = undefined;
    this.node.machines = undefined;
    await host.stop();
  }

  /** Executions whose manager died while we were down are marked lost; live ones are found again. */
  private recoverJobs(): void {
    if (!this.jobs) return;
    try {
      const r = this.jobs.recover();
      this.log.info({ component: "jobs", dir: this.jobs.dir, ...r }, "workflow executions recovered");
    } catch (err) {
      this.log.error({ component: "jobs" }, `cannot recover workflow executions: ${(err as Error).message}`);
    }
  }

  /** Normal mode with a provisioning token: back to provisioning mode before the credential expires. */
  private scheduleRenewal(): void {
    const p = this.opts.provisioning;
    const file = this.opts.config?.file;
    if (!p || p.mode || p.renewAt === undefined || file === undefined) return;
    const at = p.renewAt;
    const tick = (): void => {
      const wait = at - Date.now();
      if (wait > 0) {
        this.renewTimer = setTimeout(tick, Math.min(wait, DAY_MS));
        this.renewTimer.unref();
        return;
      }
      this.renewTimer = undefined;
      this.renew(file, p);
    };
    tick();
  }

  private renew(file: string, p: ServerProvisioning): void {
    try {
      // only with a provisioning token that still works, or nobody could provision the node
      const d = provisioningDecision(loadConfig(file));
      if (!d.claims) {
        this.log.error(
          { problem: d.jwtProblem },
          `${p.renewWhat ?? "credential"} is due for renewal but the provisioning token is unusable`,
        );
        return;
      }
      setConfigKey(file, "plugin.choria.server.provision", "true");
    } catch (err) {
      this.log.error(`cannot switch to provisioning mode for renewal: ${(err as Error).message}`);
      return;
    }
    this.requestExit({ action: "restart", reason: `renewal: ${p.renewWhat ?? "credential"} is due` });
  }

  /**
   * Adds the module and external data plugins to the registry, once. A plugin that
   * fails to load (bad DDL, no executable, a module that throws) is logged and left
   * out; the server runs on without it.
   */
  private async loadDataPlugins(): Promise<void> {
    if (this.dataLoaded) return;
    this.dataLoaded = true;
    const o = this.opts;
    const log = this.log.child({ component: "data" });
    const results = [
      ...(o.dataModuleDir !== undefined ? [await loadModuleDataPlugins(o.dataModuleDir)] : []),
      ...(o.dataExternalDir !== undefined ? [loadExternalDataPlugins(o.dataExternalDir)] : []),
    ];
    for (const r of results) {
      for (const p of r.problems) log.error({ file: p.file }, `data plugin not loaded: ${p.reason}`);
      for (const p of r.plugins) {
        if (this.data.get(p.name) !== undefined) {
          log.error({ plugin: p.name }, `data plugin not loaded: ${p.name} is already registered`);
          continue;
        }
        this.data.register(p);
        log.info({ plugin: p.name }, "data plugin loaded");
      }
    }
  }

  /** Stops taking requests, lets running actions finish and send their replies, then closes. */
  async stop(): Promise<void> {
    clearTimeout(this.renewTimer);
    this.renewTimer = undefined;
    this.provisionAgent?.stop();
    const nc = this.nc;
    if (!nc) return;
    this.stopping = true;
    process.off("SIGHUP", this.onSighup);
    // shutdown goes out before the drain so it is flushed with everything else
    this.metadata?.stop();
    this.metadata = undefined;
    // let a reliable publish in flight finish; the rest waits on disk for the next start
    await this.submissionSpool?.stop();
    this.submissionSpool = undefined;
    for (const sub of this.subs.values()) sub.unsubscribe();
    this.subs.clear();
    await Promise.allSettled([...this.inflight]);
    // machines stop before the connection closes so their last events can still go out
    await this.stopMachines();
    // Every request that ran has been audited by now; make sure the lines are on disk.
    await this.opts.audit?.close();
    this.statusWriter?.stop();
    this.statusWriter?.write();
    this.statusWriter = undefined;
    await closeNats(nc);
    this.nc = undefined;
    await this.metricsServer?.stop();
    this.metricsServer = undefined;
    this.log.info({ identity: this.identity }, "server stopped");
  }

  /** The audit log (rpcaudit), when configured. */
  get audit(): AuditLog | undefined {
    return this.opts.audit;
  }

  /** The submission spool, when configured and running. */
  get spool(): Spool | undefined {
    return this.submissionSpool;
  }

  private startSpool(nc: NatsConnection): void {
    const s = this.opts.submission;
    if (!s) return;
    const log = this.log.child({ component: "submission" });
    const sec = this.security;
    try {
      this.submissionSpool = new Spool({
        dir: s.spool,
        identity: this.identity,
        collective: this.opts.mainCollective ?? (this.collectives[0] as string),
        ...(s.maxSpoolSize !== undefined && { maxSpoolSize: s.maxSpoolSize }),
        ...(s.minFreeBytes !== undefined && { minFreeBytes: s.minFreeBytes }),
        signer: { token: sec.token, sign: (d) => sec.sign(d) },
        logger: log,
      });
      this.submissionSpool.start(nc);
    } catch (err) {
      // a broken spool must not take the node's RPC service down with it
      log.error(`submission spool disabled: ${(err as Error).message}`);
    }
  }

  /** Lifecycle events and registration (services/lifecycle, services/registration). */
  private startMetadata(nc: NatsConnection): void {
    const sec = this.security;
    this.metadata = startNodeMetadata({
      node: this.node,
      publish: (subject, data) => nc.publish(subject, data),
      token: sec.token,
      sign: (d) => sec.sign(d),
      ...(sec.x509 && { pubcert: sec.x509.certPem }),
      log: this.log,
      ...(this.opts.lifecycle !== undefined && { lifecycle: this.opts.lifecycle }),
      ...(this.opts.registration && { registration: this.opts.registration }),
      // registration is off in provisioning mode whatever the config says
      ...(this.opts.config && !this.provisionMode && { config: this.opts.config }),
    });
  }

  /**
   * Loads (again) the agents in libdir: new ones are subscribed, changed ones replaced
   * and vanished ones removed. Requests already running keep the definition they
   * started with, so nothing in flight is dropped. Agents registered in code and the
   * built-ins are left alone. Policies are re-read too. SIGHUP calls this.
   */
  async reloadAgents(): Promise<AgentReloadResult> {
    // Overlapping reloads (two quick SIGHUPs) would race on the registry: run them in turn.
    const run = this.reloadChain.then(() => this.doReload());
    this.reloadChain = run.catch(() => undefined);
    return run;
  }

  private async doReload(): Promise<AgentReloadResult> {
    this.node.authorizer.reload?.();
    const scan = await scanAgentDirs(this.opts.libdir ?? [], {
      ...(this.opts.config && { configFile: this.opts.config.file }),
      facts: this.node.facts,
      ...(this.opts.activationTimeoutMs !== undefined && {
        activationTimeoutMs: this.opts.activationTimeoutMs,
      }),
      onFailure: (agent, action, err) =>
        this.rateLog.warn(
          `external:${agent}#${action}`,
          { agent, action },
          `external agent failed: ${err.message}`,
        ),
    });
    const loaded: string[] = [];
    for (const a of scan.agents) {
      if (this.registry.has(a.name) && !this.libdirAgents.has(a.name)) {
        scan.problems.push({
          file: a.ddlFile,
          reason: `agent ${a.name} is already provided by the server; not loading it from libdir`,
        });
        continue;
      }
      this.registry.register(a.ddl, a.actions, { replace: true });
      this.libdirAgents.add(a.name);
      loaded.push(a.name);
    }
    const removed: string[] = [];
    for (const name of [...this.libdirAgents]) {
      if (loaded.includes(name)) continue;
      this.libdirAgents.delete(name);
      this.registry.unregister(name);
      removed.push(name);
    }
    for (const p of scan.problems) this.log.error({ file: p.file }, `refusing agent: ${p.reason}`);
    this.log.info({ loaded, removed, problems: scan.problems.length }, "libdir agents loaded");
    return { loaded, removed, problems: scan.problems };
  }

  /** Makes the agent's subscriptions match its DDL (broadcast or service queue, or none once removed). */
  private subscribeAgent(name: string): void {
    const def = this.registry.get(name);
    for (const c of this.collectives) {
      const want = !def
        ? undefined
        : def.ddl.metadata.service
          ? serviceSubject(c, name)
          : broadcastSubject(c, name);
      for (const subj of [serviceSubject(c, name), broadcastSubject(c, name)]) {
        if (subj === want) continue;
        this.subs.get(subj)?.unsubscribe();
        this.subs.delete(subj);
      }
      if (want && this.nc && !this.stopping)
        this.subscribe(want, def?.ddl.metadata.service ? name : undefined);
    }
  }

  private subscribe(subject: string, queue?: string): void {
    const nc = this.nc;
    if (!nc || this.subs.has(subject)) return;
    const sub = nc.subscribe(subject, {
      ...(queue && { queue }),
      callback: (err, msg) => {
        if (err) {
          this.log.error({ subject, err: err.message }, "subscription error");
          return;
        }
        this.process(msg.subject, msg.data);
      },
    });
    this.subs.set(subject, sub);
  }

  /**
   * One message through the shared decoder and this node; publishes the reply if any.
   * Never throws: an exception here would escape into the NATS callback and could
   * stop the subscription, so one bad message must cost only itself.
   */
  private process(subject: string, data: Uint8Array): void {
    try {
      const decoded = this.decoder.decode(data);
      const passed = this.node.counters.passed;
      const p = this.node
        .handle(decoded, subject)
        .then((reply) => {
          if (reply && this.nc) this.nc.publish(reply.subject, reply.data);
        })
        .catch((err: Error) => this.rateLog.warn("publish", {}, `could not send reply: ${err.message}`))
        .finally(() => this.inflight.delete(p));
      this.inflight.add(p);
      // handle() filters synchronously: a request this node did not want is not kept
      if (this.node.counters.passed === passed) this.decoder.forget(decoded);
    } catch (err) {
      this.rateLog.error("process", { subject }, `message on ${subject} failed: ${(err as Error).message}`);
    }
  }
}
