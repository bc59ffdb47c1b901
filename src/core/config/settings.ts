import { hostname } from "node:os";
import { delimiter, dirname, isAbsolute, resolve } from "node:path";
import { DEFAULT_CERTNAME_ALLOW_LIST, DEFAULT_PRIVILEGED_USERS } from "../security/index.js";
import { splitList, type Config } from "./config.js";

/** Settings shared by servers and clients (identity, collectives, security, discovery). */
export interface CommonSettings {
  /** The config file, and its directory (policies and relative paths resolve from here). */
  configFile: string;
  configDir: string;
  identity: string;
  collectives: string[];
  mainCollective: string;
  /** NATS URLs (`host:port` entries get a `nats://` scheme). */
  middlewareHosts: string[];
  /** `choria` (ed25519 + JWT, protocol v2) or `file` (x509 + RSA, protocol v1). */
  securityProvider: "choria" | "file";
  /** The x509 files and rules: set with the file provider, or beside choria's keys for a mixed client. */
  x509?: X509Settings | undefined;
  /** Protocols this process speaks: [1] with file, [2] with choria; `plugin.chorus.protocols` may list both for a client. */
  protocols: (1 | 2)[];
  /** "" with the file provider (and no choria keys) */
  seedFile: string;
  tokenFile: string;
  /** Companion NATS user JWT; Chorus-only, defaults to `<token file>.nats`. */
  natsJwtFile: string;
  /** Trusted org issuer public keys (hex ed25519). */
  issuers: string[];
  caFile?: string | undefined;
  certFile?: string | undefined;
  keyFile?: string | undefined;
  discoveryTimeoutMs: number;
  /** Quiet period that ends windowed broadcast discovery. */
  windowedTimeoutMs: number;
  logLevel: string;
  logFile?: string | undefined;
}

export interface ServerSettings extends CommonSettings {
  factsFiles: string[];
  classesFile?: string;
  statsPort?: number;
  libdir: string[];
  rpcAuthorization: boolean;
  rpcAuthProvider: string;
  actionPolicyAllowUnconfigured: boolean;
  actionPolicyEnableDefault: boolean;
  rpcAudit: boolean;
  rpcAuditLogFile?: string;
  /** Chorus-only (go-choria has no data plugin dirs): plugin.chorus.data.module_dir / external_dir. */
  dataModuleDir?: string;
  dataExternalDir?: string;
  /** Autonomous agents and Scout (go-choria's keys); see machineSettings. */
  machines: MachineSettings;
}

/** Autonomous agents: where they live, signed specs from KV, Scout (go-choria config/choria.go). */
export interface MachineSettings {
  /** plugin.choria.machine.store: the directory of machines; unset = no machine host */
  store?: string;
  /** plugin.choria.machine.signing_key: hex ed25519 key that overrides the one in machines watchers */
  signingKey?: string;
  /** plugin.machines.download: install signed machine specs from KV at run time */
  download: boolean;
  /** plugin.machines.bucket (CHORIA_PLUGINS) and plugin.machines.key (plugins) */
  bucket: string;
  key: string;
  /** plugin.machines.purge: remove machines the KV spec no longer lists (default true) */
  purge: boolean;
  /** plugin.machines.poll_interval (1m) and plugin.machines.check_interval (30s), ms */
  pollIntervalMs: number;
  checkIntervalMs: number;
  /** plugin.machines.signing_key: hex ed25519 key the KV spec must be signed with */
  specSigningKey?: string;
  /** plugin.choria.prometheus_textfile_directory: node-exporter textfile directory */
  textfileDirectory?: string;
  /** plugin.scout.agent_disabled: do not host the scout agent */
  scoutAgentDisabled: boolean;
  /** plugin.scout.overrides / plugin.scout.tags: files Scout checks may read */
  scoutOverrides?: string;
  scoutTags?: string;
  /** plugin.chorus.scout.checks: Chorus only, a YAML file of Scout checks turned into machines */
  scoutChecksFile?: string;
  /** plugin.chorus.machine.max_queued_events: events kept while the broker is away (10000) */
  maxQueuedEvents: number;
}

function hexKey(cfg: Config, key: string): string | undefined {
  const v = cfg.get(key);
  if (v === undefined || v === "") return undefined;
  if (!HEX_KEY.test(v))
    throw cfg.error(key, `${key}: "${v}" is not a hex ed25519 public key (64 hex digits)`);
  return v.toLowerCase();
}

/** go-choria's autonomous agent and Scout keys, with its defaults. */
export function machineSettings(cfg: Config): MachineSettings {
  const store = pathOf(cfg, "plugin.choria.machine.store");
  const signingKey = hexKey(cfg, "plugin.choria.machine.signing_key");
  const specSigningKey = hexKey(cfg, "plugin.machines.signing_key");
  const textfileDirectory = pathOf(cfg, "plugin.choria.prometheus_textfile_directory");
  const scoutOverrides = pathOf(cfg, "plugin.scout.overrides");
  const scoutTags = pathOf(cfg, "plugin.scout.tags");
  const scoutChecksFile = pathOf(cfg, "plugin.chorus.scout.checks");
  const positiveMs = (key: string, dflt: number): number => {
    const v = cfg.duration(key, dflt);
    if (!(v > 0)) throw cfg.error(key, `${key} must be positive`);
    return v;
  };
  const maxQueued = cfg.int("plugin.chorus.machine.max_queued_events", 10_000);
  if (maxQueued < 1)
    throw cfg.error(
      "plugin.chorus.machine.max_queued_events",
      "plugin.chorus.machine.max_queued_events must be at least 1",
    );
  return {
    ...(store !== undefined && { store }),
    ...(signingKey !== undefined && { signingKey }),
    download: cfg.bool("plugin.machines.download", false),
    bucket: cfg.string("plugin.machines.bucket", "CHORIA_PLUGINS"),
    key: cfg.string("plugin.machines.key", "plugins"),
    purge: cfg.bool("plugin.machines.purge", true),
    pollIntervalMs: positiveMs("plugin.machines.poll_interval", 60_000),
    checkIntervalMs: positiveMs("plugin.machines.check_interval", 30_000),
    ...(specSigningKey !== undefined && { specSigningKey }),
    ...(textfileDirectory !== undefined && { textfileDirectory }),
    scoutAgentDisabled: cfg.bool("plugin.scout.agent_disabled", false),
    ...(scoutOverrides !== undefined && { scoutOverrides }),
    ...(scoutTags !== undefined && { scoutTags }),
    ...(scoutChecksFile !== undefined && { scoutChecksFile }),
    maxQueuedEvents: maxQueued,
  };
}

/**
 * Remote request signing (go-choria's plugin.choria.security.request_signer.*): the
 * AAA signer signs requests on the caller's behalf, proven by the login token and seed.
 */
export interface RequestSignerSettings {
  /** HTTP(S) signing endpoint (request_signer.url); unset when `service` is used */
  url?: string;
  /** sign through the aaa_signer service agent (request_signer.service) */
  service: boolean;
  /** the login token (request_signer.token_file; default plugin.security.choria.token_file) */
  tokenFile: string;
  /** hex ed25519 seed proving the token (request_signer.seed_file; default plugin.security.choria.seed_file) */
  seedFile: string;
}

export interface ClientSettings extends CommonSettings {
  libdir: string[];
  discoveryMethod: string;
  /** set when requests are signed by a remote AAA signer */
  requestSigner?: RequestSignerSettings;
  /** AAA login endpoints, tried in order (plugin.login.aaasvc.login.url, comma list) */
  loginUrls: string[];
}

/** One broker-hosted adapter (`plugin.choria.adapter.<name>.*`, go-choria names). */
export interface AdapterSettings {
  name: string;
  /** jetstream and choria_streams both publish into Choria Streams; only the protocol name differs */
  type: "jetstream" | "choria_streams";
  ingestTopic: string;
  ingestProtocol: "request" | "reply";
  /**
   * Threads decoding ingest messages: 0 or 1 decode on the broker's event loop (the
   * default: go-choria's 10 are goroutines, not threads), 2+ run that many worker
   * threads, capped at the CPU count.
   */
  ingestWorkers: number;
  /** `%s` is replaced by the message's sender */
  streamTopic: string;
  streamWorkers: number;
  /** Chorus-only `.queue.len`: messages buffered while Streams are unavailable (default 10 000) */
  queueLen: number;
}

/** Managed stream retention (`plugin.choria.network.stream.*`, go-choria names). */
export interface BrokerStreamSettings {
  eventRetentionMs: number;
  eventReplicas: number;
  machineRetentionMs: number;
  machineReplicas: number;
  advisoryRetentionMs: number;
  advisoryReplicas: number;
  leaderElectionTtlMs: number;
  leaderElectionReplicas: number;
  /** Chorus-only: CHORUS_JOBS (workflow events), `jobs_retention` / `jobs_replicas` */
  jobsRetentionMs: number;
  jobsReplicas: number;
  /** Chorus-only `plugin.choria.network.stream.manage_streams`: false leaves streams alone */
  manage: boolean;
}

/** An outgoing leafnode link (`plugin.choria.network.leafnode_remote.<name>.*`, go-choria names). */
export interface LeafnodeRemote {
  name: string;
  /** the hub broker's leafnode listener, nats:// or tls:// */
  url: string;
  /** local account whose traffic crosses the link (nats-server's default account when unset) */
  account?: string;
  /** NATS credentials file (JWT + seed) the link authenticates with */
  credentials?: string;
}

export interface BrokerSettings {
  configFile: string;
  configDir: string;
  identity: string;
  listenAddress: string;
  clientPort: number;
  /** 0 = no cluster listener. */
  peerPort: number;
  /** Cluster routes as nats:// URLs (this broker's own address removed). */
  peers: string[];
  /** `plugin.choria.network.cluster_name` (Chorus-only; default CHORUS). */
  clusterName: string;
  /** `plugin.choria.network.leafnode_port`: 0 = no leafnode listener. */
  leafnodePort: number;
  /** `plugin.choria.network.leafnode_remotes` and `leafnode_remote.<name>.*`. */
  leafnodeRemotes: LeafnodeRemote[];
  /** `plugin.choria.network.gateway_port`: 0 = no gateway (super-cluster) listener. */
  gatewayPort: number;
  /** `plugin.choria.network.gateway_name`: this cluster's name in the super-cluster. */
  gatewayName?: string;
  /** `plugin.choria.network.gateway_remotes` and `gateway_remote.<name>.urls`. */
  gatewayRemotes: { name: string; urls: string[] }[];
  systemUser?: string;
  systemPassword?: string;
  /** JetStream store directory; JetStream is off when unset. */
  storeDir?: string;
  /** Prometheus port for Chorus' own exporter; unset = no exporter. */
  statsPort?: number;
  /** nats-server HTTP monitoring port on 127.0.0.1; 0 = pick a free port at start. */
  monitorPort: number;
  certFile?: string | undefined;
  keyFile?: string | undefined;
  caFile?: string | undefined;
  /** JSON produced by setup with operator / account JWTs (Chorus-only). */
  natsTrustFile?: string;
  /** Explicit nats-server binary from the config (env and PATH are resolved at start). */
  natsServerBinary?: string;
  runtimeDir?: string | undefined;
  maxConnections: number;
  writeDeadlineMs: number;
  tlsTimeoutS: number;
  authTimeoutS: number;
  logLevel: string;
  logFile?: string | undefined;
  streams: BrokerStreamSettings;
  adapters: AdapterSettings[];
  /**
   * The broker's own credential (plugin.security.choria.seed_file / token_file, NATS JWT
   * beside the token): its in-process client creates managed streams and runs adapters.
   */
  seedFile?: string;
  tokenFile?: string;
  natsJwtFile?: string;
  /**
   * `plugin.security.provider`: with `file` the broker's TLS comes from
   * plugin.security.file.certificate/key/ca, and without JWT trust its client port requires a
   * client certificate from that CA (a pure protocol v1 broker, as Choria's x509 brokers).
   */
  securityProvider: "choria" | "file";
  /**
   * `plugin.chorus.network.x509.*` (Chorus-only): a second, mTLS-only client port for x509
   * (protocol v1) clients beside a JWT broker, bridged into its CHORIA account.
   */
  x509?: {
    /** plugin.chorus.network.x509.port */
    port: number;
    /** plugin.chorus.network.x509.ca: CA of the clients' certificates (default: the broker's CA) */
    caFile: string;
    /** plugin.chorus.network.x509.credentials: NATS .creds of the CHORIA user the bridge logs in as */
    credentials?: string;
  };
}

const HEX_KEY = /^[0-9a-fA-F]{64}$/;

/** Relative paths in a config resolve from the config file's directory, not the cwd. */
/** plugin.security.choria.certificate and .key: both or neither. */
function tlsPair(cfg: Config): { certFile: string | undefined; keyFile: string | undefined } {
  const certFile = pathOf(cfg, "plugin.security.choria.certificate");
  const keyFile = pathOf(cfg, "plugin.security.choria.key");
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw cfg.error(
      certFile ? "plugin.security.choria.certificate" : "plugin.security.choria.key",
      "plugin.security.choria.certificate and plugin.security.choria.key must be set together",
    );
  }
  return { certFile, keyFile };
}

function pathOf(cfg: Config, key: string): string | undefined {
  const v = cfg.get(key);
  if (v === undefined || v === "") return undefined;
  const expanded = v.startsWith("~/") ? `${process.env.HOME ?? ""}/${v.slice(2)}` : v;
  return isAbsolute(expanded) ? expanded : resolve(dirname(resolve(cfg.file)), expanded);
}

/** A bare command name is looked up on PATH later; anything with a slash is a path. */
function binaryOf(cfg: Config, key: string): string | undefined {
  const v = cfg.get(key);
  if (v === undefined || v === "") return undefined;
  return v.includes("/") ? pathOf(cfg, key) : v;
}

function requiredPath(cfg: Config, key: string): string {
  const p = pathOf(cfg, key);
  if (p === undefined) throw cfg.error(key, `${key} is required`);
  return p;
}

function optionalPort(cfg: Config, key: string): number | undefined {
  const p = port(cfg, key, 0);
  return p === 0 ? undefined : p;
}

function port(cfg: Config, key: string, dflt: number): number {
  const p = cfg.int(key, dflt);
  if (p < 0 || p > 65535) throw cfg.error(key, `${key}: ${p} is not a valid port`);
  return p;
}

function normaliseUrl(cfg: Config, key: string, entry: string, schemes: string[]): string {
  const withScheme = /^[a-z]+:\/\//i.test(entry) ? entry : `nats://${entry}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw cfg.error(key, `${key}: "${entry}" is not a valid host:port or URL`);
  }
  if (!schemes.includes(url.protocol.replace(/:$/, ""))) {
    throw cfg.error(key, `${key}: "${entry}" must use ${schemes.map((s) => `${s}://`).join(" or ")}`);
  }
  if (url.hostname === "") throw cfg.error(key, `${key}: "${entry}" has no host`);
  return withScheme;
}

function issuers(cfg: Config): string[] {
  const namesKey = "plugin.security.issuer.names";
  const legacyKey = "plugin.security.choria.trusted_signers";
  const names = cfg.list(namesKey, []);
  const legacy = cfg.list(legacyKey, []);
  if (names.length > 0 && legacy.length > 0) {
    throw cfg.error(legacyKey, `${legacyKey} and ${namesKey} cannot both be set`);
  }
  const out: string[] = [];
  for (const name of names) {
    const k = `plugin.security.issuer.${name}.public`;
    const pub = cfg.get(k);
    if (!pub) throw cfg.error(namesKey, `issuer "${name}" is listed but ${k} is not set`);
    if (!HEX_KEY.test(pub)) throw cfg.error(k, `${k} must be a 64 character hex ed25519 public key`);
    out.push(pub.toLowerCase());
  }
  for (const pub of legacy) {
    if (!HEX_KEY.test(pub))
      throw cfg.error(legacyKey, `${legacyKey}: "${pub}" is not a hex ed25519 public key`);
    out.push(pub.toLowerCase());
  }
  return out;
}

function common(cfg: Config): CommonSettings {
  const provider = cfg.string("plugin.security.provider", "choria");
  if (provider !== "choria" && provider !== "file") {
    throw cfg.error(
      "plugin.security.provider",
      `plugin.security.provider "${provider}" is not supported: use "choria" (ed25519 seed + JWT, protocol v2) or "file" (x509 certificates, protocol v1)`,
    );
  }
  const x509 = x509Settings(cfg, provider === "file");
  const collectives = cfg.list("collectives", ["mcollective"]);
  for (const c of collectives) {
    if (!/^[a-zA-Z0-9_-]+$/.test(c))
      throw cfg.error("collectives", `collectives: "${c}" is not a valid name`);
  }
  const mainCollective = cfg.string("main_collective", collectives[0] as string);
  if (!collectives.includes(mainCollective)) {
    throw cfg.error(
      "main_collective",
      `main_collective "${mainCollective}" is not one of collectives (${collectives.join(", ")})`,
    );
  }
  const identity = cfg.string("identity", hostname());
  const hostsKey = "plugin.choria.middleware_hosts";
  const middlewareHosts = cfg
    .list(hostsKey, ["127.0.0.1:4222"])
    .map((h) => normaliseUrl(cfg, hostsKey, h, ["nats", "tls"]));
  const choria = provider === "choria";
  const tokenFile = choria ? requiredPath(cfg, "plugin.security.choria.token_file") : "";
  // with the file provider the same certificate is the broker connection's mTLS identity
  const { certFile, keyFile } = choria ? tlsPair(cfg) : (x509 as X509Settings);
  const caFile = choria ? pathOf(cfg, "plugin.security.choria.ca") : x509?.caFile;
  const discoveryTimeoutMs = cfg.duration("discovery_timeout", 2000);
  const windowedTimeoutMs = cfg.duration("plugin.choria.discovery.broadcast.windowed_timeout", 300, "ms");
  return {
    configFile: cfg.file,
    configDir: dirname(resolve(cfg.file)),
    identity,
    collectives,
    mainCollective,
    middlewareHosts,
    securityProvider: provider,
    ...(x509 !== undefined && { x509 }),
    protocols: protocols(cfg, provider, x509),
    seedFile: choria ? requiredPath(cfg, "plugin.security.choria.seed_file") : "",
    tokenFile,
    natsJwtFile: choria ? (pathOf(cfg, "plugin.security.choria.nats_jwt_file") ?? `${tokenFile}.nats`) : "",
    issuers: choria ? issuers(cfg) : [],
    ...(caFile !== undefined && { caFile }),
    ...(certFile !== undefined && { certFile }),
    ...(keyFile !== undefined && { keyFile }),
    discoveryTimeoutMs,
    windowedTimeoutMs,
    logLevel: logLevel(cfg),
    ...(pathOf(cfg, "logfile") !== undefined && { logFile: pathOf(cfg, "logfile") }),
  };
}

const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal"];

function logLevel(cfg: Config): string {
  const raw = cfg.string("loglevel", "info").toLowerCase();
  const level = raw === "warning" ? "warn" : raw;
  if (!LOG_LEVELS.includes(level))
    throw cfg.error("loglevel", `loglevel "${raw}" is not one of ${LOG_LEVELS.join(", ")}`);
  return level;
}

function pathList(cfg: Config, key: string): string[] {
  const v = cfg.get(key);
  if (v === undefined || v.trim() === "") return [];
  const base = dirname(resolve(cfg.file));
  return splitList(v, delimiter).map((p) => (isAbsolute(p) ? p : resolve(base, p)));
}

/** go-choria's file provider: plugin.security.file.* and the x509 name rules. */
export interface X509Settings {
  certFile: string;
  keyFile: string;
  caFile: string;
  privilegedUsers: string[];
  allowList: string[];
}

function x509Settings(cfg: Config, required: boolean): X509Settings | undefined {
  const k = (n: string) => `plugin.security.file.${n}`;
  const [certFile, keyFile, caFile] = ["certificate", "key", "ca"].map((n) => pathOf(cfg, k(n)));
  const missing = ["certificate", "key", "ca"].filter((_, i) => [certFile, keyFile, caFile][i] === undefined);
  if (missing.length === 3 && !required) return undefined;
  if (missing.length > 0)
    throw cfg.error(
      k(missing[0] as string),
      `${missing.map(k).join(", ")} must be set: the file security provider needs a certificate, its key and the CA`,
    );
  return {
    certFile: certFile as string,
    keyFile: keyFile as string,
    caFile: caFile as string,
    privilegedUsers: cfg.list("plugin.choria.security.privileged_users", [...DEFAULT_PRIVILEGED_USERS]),
    allowList: cfg.list("plugin.choria.security.certname_whitelist", [...DEFAULT_CERTNAME_ALLOW_LIST]),
  };
}

function protocols(cfg: Config, provider: "choria" | "file", x509: X509Settings | undefined): (1 | 2)[] {
  const key = "plugin.chorus.protocols";
  const raw = cfg.list(key, [provider === "file" ? "1" : "2"]);
  const out: (1 | 2)[] = [];
  for (const p of raw) {
    if (p !== "1" && p !== "2") throw cfg.error(key, `${key}: "${p}" is not a protocol version (1 or 2)`);
    const v = Number(p) as 1 | 2;
    if (!out.includes(v)) out.push(v);
  }
  if (out.includes(1) && !x509)
    throw cfg.error(key, `${key} lists 1 but plugin.security.file.certificate, key and ca are not set`);
  if (out.includes(2) && provider !== "choria")
    throw cfg.error(
      key,
      `${key} lists 2, which needs plugin.security.provider = choria and its seed and token`,
    );
  return out;
}

/** Server (node) settings with Choria's key names and defaults. */
export function serverSettings(cfg: Config): ServerSettings {
  const c = common(cfg);
  if (c.securityProvider === "choria" && c.issuers.length === 0) {
    throw cfg.error(
      "plugin.security.issuer.names",
      "no trusted issuers: set plugin.security.issuer.names and plugin.security.issuer.<name>.public",
    );
  }
  const statsPort = optionalPort(cfg, "plugin.choria.stats_port");
  const classesFile = pathOf(cfg, "classesfile");
  const auditLog = pathOf(cfg, "plugin.rpcaudit.logfile");
  const dataModuleDir = pathOf(cfg, "plugin.chorus.data.module_dir");
  const dataExternalDir = pathOf(cfg, "plugin.chorus.data.external_dir");
  return {
    ...c,
    factsFiles: pathList(cfg, "plugin.yaml"),
    ...(classesFile !== undefined && { classesFile }),
    ...(statsPort !== undefined && { statsPort }),
    libdir: pathList(cfg, "libdir"),
    rpcAuthorization: cfg.bool("rpcauthorization", true),
    rpcAuthProvider: cfg.string("rpcauthprovider", "action_policy"),
    actionPolicyAllowUnconfigured: cfg.bool("plugin.actionpolicy.allow_unconfigured", false),
    actionPolicyEnableDefault: cfg.bool("plugin.actionpolicy.enable_default", false),
    rpcAudit: cfg.bool("rpcaudit", false),
    ...(auditLog !== undefined && { rpcAuditLogFile: auditLog }),
    ...(dataModuleDir !== undefined && { dataModuleDir }),
    ...(dataExternalDir !== undefined && { dataExternalDir }),
    machines: machineSettings(cfg),
  };
}

/**
 * What a node needs to decide on and run provisioning mode. Unlike serverSettings it
 * asks for nothing an unprovisioned node lacks: no issuers, seed or token required.
 */
export interface ProvisioningSettings {
  configFile: string;
  configDir: string;
  identity: string;
  /** plugin.choria.server.provision; undefined when unset (the token's chpd decides) */
  provision?: boolean;
  /** plugin.choria.server.provision.jwt_file (Chorus), default provisioning.jwt beside the config */
  jwtFile: string;
  /** plugin.choria.server.provision.renew_before (Chorus); unset = 10% of the credential's life, at least 1h */
  renewBeforeMs?: number;
  /** the configured trusted issuers; empty = trust the provisioning token's own issuer */
  issuers: string[];
  /** where the node's credential lives or will be written (defaults server.seed, server.jwt beside the config) */
  seedFile: string;
  tokenFile: string;
  natsJwtFile: string;
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  /** plugin.choria.ssldir, default ssl/ beside the config: where gencsr and configure put TLS files */
  sslDir: string;
  factsFiles: string[];
  classesFile?: string;
  statsPort?: number;
  logLevel: string;
  logFile?: string;
}

export function provisioningSettings(cfg: Config): ProvisioningSettings {
  const configDir = dirname(resolve(cfg.file));
  const provisionKey = "plugin.choria.server.provision";
  const renewKey = "plugin.choria.server.provision.renew_before";
  const renewBeforeMs = cfg.has(renewKey) ? cfg.duration(renewKey) : undefined;
  if (renewBeforeMs !== undefined && !(renewBeforeMs > 0))
    throw cfg.error(renewKey, `${renewKey} must be positive`);
  const tokenFile = pathOf(cfg, "plugin.security.choria.token_file") ?? resolve(configDir, "server.jwt");
  const { certFile, keyFile } = tlsPair(cfg);
  const opt = <T>(k: string, v: T | undefined) => (v === undefined ? {} : { [k]: v });
  return {
    configFile: cfg.file,
    configDir,
    identity: cfg.string("identity", hostname()),
    ...opt("provision", cfg.get(provisionKey) ? cfg.bool(provisionKey) : undefined),
    jwtFile: pathOf(cfg, "plugin.choria.server.provision.jwt_file") ?? resolve(configDir, "provisioning.jwt"),
    ...opt("renewBeforeMs", renewBeforeMs),
    issuers: issuers(cfg),
    seedFile: pathOf(cfg, "plugin.security.choria.seed_file") ?? resolve(configDir, "server.seed"),
    tokenFile,
    natsJwtFile: pathOf(cfg, "plugin.security.choria.nats_jwt_file") ?? `${tokenFile}.nats`,
    ...opt("caFile", pathOf(cfg, "plugin.security.choria.ca")),
    ...opt("certFile", certFile),
    ...opt("keyFile", keyFile),
    sslDir: pathOf(cfg, "plugin.choria.ssldir") ?? resolve(configDir, "ssl"),
    factsFiles: pathList(cfg, "plugin.yaml"),
    ...opt("classesFile", pathOf(cfg, "classesfile")),
    ...opt("statsPort", optionalPort(cfg, "plugin.choria.stats_port")),
    logLevel: logLevel(cfg),
    ...opt("logFile", pathOf(cfg, "logfile")),
  } as ProvisioningSettings;
}

/** Client settings with Choria's key names and defaults. */
export function clientSettings(cfg: Config): ClientSettings {
  const c = common(cfg);
  const requestSigner = requestSignerSettings(cfg, c);
  return {
    ...c,
    libdir: pathList(cfg, "libdir"),
    discoveryMethod: cfg.string("default_discovery_method", "broadcast"),
    ...(requestSigner && { requestSigner }),
    loginUrls: cfg
      .list("plugin.login.aaasvc.login.url", [])
      .map((u) => httpUrl(cfg, "plugin.login.aaasvc.login.url", u)),
  };
}

function httpUrl(cfg: Config, key: string, entry: string): string {
  let url: URL;
  try {
    url = new URL(entry);
  } catch {
    throw cfg.error(key, `${key}: "${entry}" is not a URL`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:")
    throw cfg.error(key, `${key}: "${entry}" must use https:// or http://`);
  return entry;
}

function requestSignerSettings(cfg: Config, c: CommonSettings): RequestSignerSettings | undefined {
  const k = (n: string) => `plugin.choria.security.request_signer.${n}`;
  const raw = cfg.get(k("url"));
  const url = raw === undefined || raw.trim() === "" ? undefined : httpUrl(cfg, k("url"), raw.trim());
  const service = cfg.bool(k("service"), false);
  if (url === undefined && !service) return undefined;
  if (url !== undefined && service)
    throw cfg.error(k("service"), `${k("url")} and ${k("service")} cannot both be set`);
  return {
    ...(url !== undefined && { url }),
    service,
    tokenFile: pathOf(cfg, k("token_file")) ?? c.tokenFile,
    seedFile: pathOf(cfg, k("seed_file")) ?? c.seedFile,
  };
}

function streamSettings(cfg: Config): BrokerStreamSettings {
  const k = (n: string) => `plugin.choria.network.stream.${n}`;
  const ttl = cfg.duration(k("leader_election_ttl"), 60_000);
  if (ttl < 1000 || ttl > 3_600_000)
    throw cfg.error(k("leader_election_ttl"), "leader_election_ttl must be between 1s and 1h");
  return {
    eventRetentionMs: cfg.duration(k("event_retention"), 24 * 3_600_000),
    eventReplicas: cfg.int(k("event_replicas"), -1),
    machineRetentionMs: cfg.duration(k("machine_retention"), 24 * 3_600_000),
    machineReplicas: cfg.int(k("machine_replicas"), -1),
    advisoryRetentionMs: cfg.duration(k("advisory_retention"), 168 * 3_600_000),
    advisoryReplicas: cfg.int(k("advisory_replicas"), -1),
    leaderElectionTtlMs: ttl,
    leaderElectionReplicas: cfg.int(k("leader_election_replicas"), -1),
    jobsRetentionMs: cfg.duration(k("jobs_retention"), 24 * 3_600_000),
    jobsReplicas: cfg.int(k("jobs_replicas"), -1),
    manage: cfg.bool(k("manage_streams"), true),
  };
}

function adapterSettings(cfg: Config): AdapterSettings[] {
  return cfg.list("plugin.choria.adapters", []).map((name) => {
    const k = (n: string) => `plugin.choria.adapter.${name}.${n}`;
    const type = cfg.string(k("type"), "");
    if (type === "nats_stream")
      throw cfg.error(
        k("type"),
        `${k("type")}: nats_stream (NATS Streaming) is not supported, use jetstream`,
      );
    if (type !== "jetstream" && type !== "choria_streams")
      throw cfg.error(k("type"), `${k("type")} must be jetstream or choria_streams, got "${type}"`);
    const ingestProtocol = cfg.string(k("ingest.protocol"), "request");
    if (ingestProtocol !== "request" && ingestProtocol !== "reply")
      throw cfg.error(k("ingest.protocol"), `${k("ingest.protocol")} must be request or reply`);
    const positive = (key: string, dflt: number) => {
      const v = cfg.int(key, dflt);
      if (v < 1) throw cfg.error(key, `${key} must be positive`);
      return v;
    };
    const notNegative = (key: string, dflt: number) => {
      const v = cfg.int(key, dflt);
      if (v < 0) throw cfg.error(key, `${key} must be 0 or more`);
      return v;
    };
    const ingestTopic = cfg.string(k("ingest.topic"), "");
    if (!ingestTopic) throw cfg.error(k("ingest.topic"), `${k("ingest.topic")} is required`);
    const streamTopic = cfg.string(k("stream.topic"), "");
    if (!streamTopic) throw cfg.error(k("stream.topic"), `${k("stream.topic")} is required`);
    return {
      name,
      type,
      ingestTopic,
      ingestProtocol,
      ingestWorkers: notNegative(k("ingest.workers"), 0),
      streamTopic,
      streamWorkers: positive(k("stream.workers"), 10),
      queueLen: positive(k("queue.len"), 10_000),
    };
  });
}

/**
 * Choria configs list every broker of a cluster in `peers`, this one included; a route
 * to itself is dropped (as go-choria does), so peers.length + 1 is the cluster size.
 */
function withoutSelf(peers: string[], peerPort: number, listenAddress: string): string[] {
  const own = new Set([listenAddress, "127.0.0.1", "localhost", "::1", "[::1]", hostname()]);
  if (listenAddress === "0.0.0.0") own.add("0.0.0.0");
  return peers.filter((p) => {
    const u = new URL(p);
    const portOf = u.port === "" ? 4222 : Number(u.port);
    return !(portOf === peerPort && own.has(u.hostname));
  });
}

function leafnodeRemotes(cfg: Config): LeafnodeRemote[] {
  return cfg.list("plugin.choria.network.leafnode_remotes", []).map((name) => {
    const k = (n: string) => `plugin.choria.network.leafnode_remote.${name}.${n}`;
    const raw = cfg.get(k("url"));
    if (!raw) throw cfg.error(k("url"), `${k("url")} is required for leafnode remote ${name}`);
    const account = cfg.get(k("account")) || undefined;
    const credentials = pathOf(cfg, k("credentials"));
    return {
      name,
      url: normaliseUrl(cfg, k("url"), raw, ["nats", "tls", "nats-leaf"]),
      ...(account !== undefined && { account }),
      ...(credentials !== undefined && { credentials }),
    };
  });
}

function gatewaySettings(
  cfg: Config,
): Pick<BrokerSettings, "gatewayPort" | "gatewayName" | "gatewayRemotes"> {
  const gatewayPort = port(cfg, "plugin.choria.network.gateway_port", 0);
  const gatewayName = cfg.get("plugin.choria.network.gateway_name") || undefined;
  if (gatewayPort > 0 && !gatewayName) {
    throw cfg.error(
      "plugin.choria.network.gateway_name",
      "plugin.choria.network.gateway_port needs plugin.choria.network.gateway_name",
    );
  }
  const gatewayRemotes = cfg.list("plugin.choria.network.gateway_remotes", []).map((name) => {
    const key = `plugin.choria.network.gateway_remote.${name}.urls`;
    const urls = cfg.list(key, []).map((u) => normaliseUrl(cfg, key, u, ["nats", "tls"]));
    if (urls.length === 0) throw cfg.error(key, `${key} is required for gateway remote ${name}`);
    return { name, urls };
  });
  return { gatewayPort, ...(gatewayName && { gatewayName }), gatewayRemotes };
}

/** Settings for `chorus broker run`; listens on loopback only unless told otherwise. */
export function brokerSettings(cfg: Config): BrokerSettings {
  if (!cfg.bool("plugin.choria.broker_network", false)) {
    throw cfg.error(
      "plugin.choria.broker_network",
      "plugin.choria.broker_network must be true to run the broker",
    );
  }
  const listenAddress = cfg.string("plugin.choria.network.listen_address", "127.0.0.1");
  const peersKey = "plugin.choria.network.peers";
  const peers = cfg
    .list(peersKey, [])
    .map((p) => normaliseUrl(cfg, peersKey, p, ["nats", "tls", "nats-route"]));
  const peerPort = port(cfg, "plugin.choria.network.peer_port", 0);
  if (peers.length > 0 && peerPort === 0) {
    throw cfg.error(peersKey, `${peersKey} needs plugin.choria.network.peer_port to be set`);
  }
  const clusterName = cfg.string("plugin.choria.network.cluster_name", "CHORUS");
  if (!/^[A-Za-z0-9_-]+$/.test(clusterName)) {
    throw cfg.error(
      "plugin.choria.network.cluster_name",
      `plugin.choria.network.cluster_name: "${clusterName}" must be letters, digits, _ or -`,
    );
  }
  const providerKey = "plugin.security.provider";
  const securityProvider = cfg.string(providerKey, "choria");
  if (securityProvider !== "choria" && securityProvider !== "file") {
    throw cfg.error(
      providerKey,
      `${providerKey} "${securityProvider}" is not supported by the broker: use choria or file`,
    );
  }
  // With the file provider the x509 files are the broker's TLS identity and its clients' CA.
  const fileTls = securityProvider === "file" ? x509Settings(cfg, true) : undefined;
  const { certFile, keyFile } = fileTls ?? tlsPair(cfg);
  const caFile = fileTls ? fileTls.caFile : pathOf(cfg, "plugin.security.choria.ca");
  const clientPort = port(cfg, "plugin.choria.network.client_port", 4222);
  const leafnodePort = port(cfg, "plugin.choria.network.leafnode_port", 0);
  const monitorPort = port(cfg, "plugin.choria.network.monitor_port", 0);
  const statsPort = optionalPort(cfg, "plugin.choria.stats_port");
  const gateway = gatewaySettings(cfg);
  const x509Key = (n: string) => `plugin.chorus.network.x509.${n}`;
  const x509Port = port(cfg, x509Key("port"), 0);
  let x509: BrokerSettings["x509"];
  if (x509Port > 0) {
    const tlsKeys = securityProvider === "file" ? "plugin.security.file" : "plugin.security.choria";
    if (!certFile || !keyFile) {
      throw cfg.error(
        x509Key("port"),
        `${x509Key("port")} needs the broker's TLS certificate and key (${tlsKeys}.certificate and .key)`,
      );
    }
    const x509Ca = pathOf(cfg, x509Key("ca")) ?? caFile;
    if (!x509Ca) {
      throw cfg.error(
        x509Key("port"),
        `${x509Key("port")} needs ${x509Key("ca")} or the broker's CA (${tlsKeys}.ca) to check client certificates`,
      );
    }
    const others: [string, number | undefined][] = [
      ["plugin.choria.network.client_port", clientPort],
      ["plugin.choria.network.peer_port", peerPort],
      ["plugin.choria.network.leafnode_port", leafnodePort],
      ["plugin.choria.network.gateway_port", gateway.gatewayPort],
      ["plugin.choria.network.monitor_port", monitorPort],
      ["plugin.choria.stats_port", statsPort],
    ];
    const clash = others.find(([, p]) => p === x509Port);
    if (clash) throw cfg.error(x509Key("port"), `${x509Key("port")} ${x509Port} is also ${clash[0]}`);
    const credentials = pathOf(cfg, x509Key("credentials"));
    x509 = { port: x509Port, caFile: x509Ca, ...(credentials !== undefined && { credentials }) };
  }
  const systemUser = cfg.get("plugin.choria.network.system.user") || undefined;
  const systemPassword = cfg.get("plugin.choria.network.system.password") || undefined;
  if ((systemUser === undefined) !== (systemPassword === undefined)) {
    throw cfg.error(
      "plugin.choria.network.system.user",
      "plugin.choria.network.system.user and plugin.choria.network.system.password must be set together",
    );
  }
  const maxConnections = cfg.int("plugin.choria.network.max_connections", 50_000);
  if (maxConnections < 1)
    throw cfg.error("plugin.choria.network.max_connections", "max_connections must be positive");
  const opt = <T>(k: string, v: T | undefined) => (v === undefined ? {} : { [k]: v });
  return {
    configFile: cfg.file,
    configDir: dirname(resolve(cfg.file)),
    identity: cfg.string("identity", hostname()),
    listenAddress,
    clientPort,
    peerPort,
    peers: withoutSelf(peers, peerPort, listenAddress),
    clusterName,
    leafnodePort,
    leafnodeRemotes: leafnodeRemotes(cfg),
    ...gateway,
    ...opt("systemUser", systemUser),
    ...opt("systemPassword", systemPassword),
    ...opt("storeDir", pathOf(cfg, "plugin.choria.network.stream.store")),
    ...opt("statsPort", statsPort),
    monitorPort,
    ...opt("certFile", certFile),
    ...opt("keyFile", keyFile),
    ...opt("caFile", caFile),
    ...opt("natsTrustFile", pathOf(cfg, "plugin.choria.network.nats_trust_file")),
    ...opt("natsServerBinary", binaryOf(cfg, "plugin.choria.network.nats_server")),
    ...opt("runtimeDir", pathOf(cfg, "plugin.choria.network.runtime_dir")),
    maxConnections,
    writeDeadlineMs: cfg.duration("plugin.choria.network.write_deadline", 10_000),
    tlsTimeoutS: 2,
    authTimeoutS: 2,
    logLevel: logLevel(cfg),
    ...opt("logFile", pathOf(cfg, "logfile")),
    streams: streamSettings(cfg),
    adapters: adapterSettings(cfg),
    ...opt("seedFile", pathOf(cfg, "plugin.security.choria.seed_file")),
    ...opt("tokenFile", pathOf(cfg, "plugin.security.choria.token_file")),
    ...opt(
      "natsJwtFile",
      pathOf(cfg, "plugin.security.choria.nats_jwt_file") ??
        (pathOf(cfg, "plugin.security.choria.token_file") !== undefined
          ? `${pathOf(cfg, "plugin.security.choria.token_file")}.nats`
          : undefined),
    ),
    securityProvider,
    ...opt("x509", x509),
  } as BrokerSettings;
}
