import { readFileSync } from "node:fs";
import { cpus } from "node:os";
import { dirname, isAbsolute, resolve } from "node:path";
import { Ajv, type ErrorObject } from "ajv";
import { parse as parseYaml } from "yaml";
import { CHORIA_CERT_DENY_LIST } from "../../core/ca/index.js";
import { parseDuration } from "../../core/config/index.js";
import { issuerKeysFromSetting } from "../../core/security/index.js";
import { shellSplit } from "../../core/util/index.js";
import { ProvisionerConfigError } from "./errors.js";

export interface ProvisioningCredentials {
  /** hex ed25519 seed file; default: choria_config's seed */
  seed?: string;
  /** Chorus client token that signs requests to nodes; default: choria_config's token */
  token?: string;
  /** NATS user JWT for the PROVISIONING account, for the seed's key */
  nats: string;
  /** CA bundle verifying the broker; default: choria_config's CA */
  ca?: string;
}

export interface ProvisionerFeatures {
  pki: boolean;
  jwt: boolean;
  ed25519: boolean;
}

export interface ProvisionerConfig {
  file: string;
  workers: number;
  /** discovery interval, ms */
  intervalMs: number;
  /** argv of the helper (shell-split), when there is one */
  helper?: string[];
  helperTimeoutMs: number;
  /** the `cht` every node's provisioning token carries, sent with every RPC */
  token: string;
  lifecycle_component: string;
  cert_deny_list: string[];
  /** hex ed25519 public keys of the org issuer(s) provisioning tokens are signed by */
  jwtVerifyKeys: string[];
  jwt_signing_key?: string;
  jwt_signing_token?: string;
  /** seconds */
  serverJwtValidityS: number;
  leader_election: boolean;
  site: string;
  monitor_port?: number;
  logfile?: string;
  loglevel: string;
  features: ProvisionerFeatures;
  broker_urls: string[];
  provisioning_credentials: ProvisioningCredentials;
  choria_config: string;
  /** core/ca store folder for the pki flow without a helper */
  ca?: string;
  /** validity of certificates the ca store signs, days (cut to what the CA allows) */
  certificateValidityDays: number;
  /** collectives of minted server tokens when the helper's configuration names none */
  collectives: string[];
  /** node configuration sent in configure; the helper's keys win over these */
  default_configuration: Record<string, string>;
  /** per-RPC wait for a node's reply, ms */
  rpcTimeoutMs: number;
  /** broadcast discovery wait, ms */
  discoveryTimeoutMs: number;
  /** how long a worker may hold a node before the queue hands it to another, ms */
  queueAckWaitMs: number;
  queue_replicas: number;
  /** deliveries of one node's work item before it is dropped until found again */
  queue_max_attempts: number;
}

const STRING = { type: "string", minLength: 1 } as const;
const DURATION = { type: ["string", "number"] } as const;
const STRING_MAP = { type: "object", additionalProperties: { type: "string" } } as const;

const SCHEMA = {
  type: "object",
  required: ["token", "jwt_verify_cert", "broker_urls", "provisioning_credentials", "choria_config"],
  additionalProperties: false,
  properties: {
    workers: { type: "integer", minimum: 1, maximum: 1024 },
    interval: DURATION,
    helper: { type: "string" },
    helper_timeout: DURATION,
    token: STRING,
    lifecycle_component: { type: "string", pattern: "^[^\\s.*>]+$" },
    cert_deny_list: { type: "array", items: STRING },
    jwt_verify_cert: STRING,
    jwt_signing_key: { type: "string" },
    jwt_signing_token: { type: "string" },
    server_jwt_validity: DURATION,
    leader_election: { type: "boolean" },
    site: STRING,
    monitor_port: { type: "integer", minimum: 0, maximum: 65535 },
    logfile: { type: "string" },
    loglevel: { enum: ["debug", "info", "warn", "error", "fatal", "trace"] },
    features: {
      type: "object",
      additionalProperties: false,
      properties: {
        pki: { type: "boolean" },
        jwt: { type: "boolean" },
        ed25519: { type: "boolean" },
        upgrades: { type: "boolean" },
      },
    },
    broker_urls: {
      anyOf: [STRING, { type: "array", minItems: 1, items: STRING }],
    },
    provisioning_credentials: {
      type: "object",
      required: ["nats"],
      additionalProperties: false,
      properties: { seed: STRING, token: STRING, nats: STRING, ca: STRING },
    },
    choria_config: STRING,
    ca: STRING,
    certificate_validity: DURATION,
    collectives: { type: "array", minItems: 1, items: { type: "string", pattern: "^[A-Za-z0-9_-]+$" } },
    default_configuration: STRING_MAP,
    rpc_timeout: DURATION,
    discovery_timeout: DURATION,
    queue_ack_wait: DURATION,
    queue_replicas: { type: "integer", minimum: 1, maximum: 5 },
    queue_max_attempts: { type: "integer", minimum: 1, maximum: 100 },
    // Choria keys Chorus accepts only to explain why they do nothing (see DEAD_KEYS)
    broker_provisioning_password: {},
    broker_port: {},
    rego_policy: {},
    upgrades_repository: {},
    upgrades_optional: {},
    choria_insecure: {},
  },
} as const;

/** Choria keys with no effect in Chorus: refused with the reason, not silently ignored. */
const DEAD_KEYS: Record<string, string> = {
  broker_provisioning_password:
    "Chorus brokers take a NATS user JWT instead; set provisioning_credentials.nats",
  broker_port: "is unused (also in Choria); remove it",
  rego_policy: "is unused (also in Choria); remove it",
  upgrades_repository: "release updates are not supported",
  upgrades_optional: "release updates are not supported",
  choria_insecure: "is not supported: the broker is always verified when it uses TLS",
};

const ajv = new Ajv({ allErrors: true, strict: false });
const validate = ajv.compile(SCHEMA);

function errorText(e: ErrorObject): string {
  const path = e.instancePath
    .split("/")
    .filter((p) => p !== "")
    .map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p}`))
    .join("")
    .replace(/^\./, "");
  let key = path;
  let why = e.message ?? "is invalid";
  if (e.keyword === "required") {
    const missing = (e.params as { missingProperty: string }).missingProperty;
    key = key ? `${key}.${missing}` : missing;
    why = "is required";
  } else if (e.keyword === "additionalProperties") {
    const extra = (e.params as { additionalProperty: string }).additionalProperty;
    key = key ? `${key}.${extra}` : extra;
    why = "is not a provisioner setting";
  } else if (e.keyword === "enum") {
    why = `must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues
      .map((v) => JSON.stringify(v))
      .join(", ")}`;
  } else if (e.keyword === "anyOf") {
    why = "must be a URL, a comma separated list of URLs, or a list of URLs";
  }
  return `${key || "(top level)"}: ${why}`;
}

const LONG_UNITS: Record<string, number> = { d: 86_400_000, w: 7 * 86_400_000, y: 365 * 86_400_000 };

/**
 * A duration in ms: Go-style ("1m30s", "500ms"), Choria's long units ("7d", "2w",
 * "1y"), or a bare number of seconds.
 */
export function durationMs(key: string, v: unknown, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v === "number") {
    if (!Number.isFinite(v) || v < 0)
      throw new ProvisionerConfigError("config", `${key}: must not be negative`);
    return v * 1000;
  }
  const s = String(v).trim();
  const long = /^(\d+(?:\.\d+)?)([dwy])$/.exec(s);
  const ms = long ? Number(long[1]) * (LONG_UNITS[long[2] as string] as number) : parseDuration(s);
  if (ms === undefined || !Number.isFinite(ms))
    throw new ProvisionerConfigError("config", `${key}: "${s}" is not a duration like 30s, 1m or 1y`);
  return ms;
}

/** hex ed25519 keys given directly (comma or space separated) or in a file. */
function verifyKeys(setting: string, p: (v: string) => string): string[] {
  try {
    return issuerKeysFromSetting(setting, p);
  } catch (err) {
    // x509 certificates (Choria's other form) are not used by Chorus
    throw new ProvisionerConfigError("config", `jwt_verify_cert: ${(err as Error).message}`, { cause: err });
  }
}

/** Parses JSON or YAML text (YAML is a superset of JSON). */
function parseDocument(text: string, file: string): unknown {
  try {
    return parseYaml(text) as unknown;
  } catch (err) {
    throw new ProvisionerConfigError("config", `${file}: cannot parse: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

/** Validates and normalizes a parsed provisioner config; relative paths are from the config file's folder. */
export function parseProvisionerConfig(raw: unknown, file = "<config>"): ProvisionerConfig {
  const fail = (msg: string): never => {
    throw new ProvisionerConfigError("config", `${file}: ${msg}`);
  };
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    return fail("the configuration must be an object");
  const r = raw as Record<string, unknown>;
  for (const [k, why] of Object.entries(DEAD_KEYS)) if (r[k] !== undefined) fail(`${k}: ${why}`);
  const feat = (r.features ?? {}) as Record<string, unknown>;
  if (feat.upgrades === true) fail("features.upgrades: release updates are not supported");
  if (!validate(r)) {
    const errs = (validate.errors ?? []).map(errorText);
    fail([...new Set(errs)].join("; "));
  }

  const base = file.startsWith("<") ? process.cwd() : dirname(resolve(file));
  const p = (v: string): string => (isAbsolute(v) ? v : resolve(base, v));
  const wrap = <T>(fn: () => T): T => {
    try {
      return fn();
    } catch (err) {
      if (err instanceof ProvisionerConfigError) return fail(err.message);
      throw err;
    }
  };

  // Chorus nodes always hold a server token, so the ed25519 flow is the default; pki
  // adds a certificate for TLS and may run with it (Choria makes the two exclusive)
  const features: ProvisionerFeatures =
    r.features === undefined
      ? { pki: false, jwt: true, ed25519: true }
      : { pki: feat.pki === true, jwt: feat.jwt !== false, ed25519: feat.ed25519 === true };
  if (!features.jwt)
    fail("features.jwt: cannot be off: the node's provisioning token is always fetched and verified");

  const intervalMs = wrap(() => durationMs("interval", r.interval, 60_000));
  if (intervalMs < 1000) fail("interval: must be at least 1s");
  const helperTimeoutMs = wrap(() => durationMs("helper_timeout", r.helper_timeout, 10_000));
  if (helperTimeoutMs < 100) fail("helper_timeout: must be at least 100ms");
  const serverJwtValidityMs = wrap(() =>
    durationMs("server_jwt_validity", r.server_jwt_validity, 365 * 86_400_000),
  );
  if (serverJwtValidityMs < 3_600_000) fail("server_jwt_validity: must be at least 1h");
  const rpcTimeoutMs = wrap(() => durationMs("rpc_timeout", r.rpc_timeout, 20_000));
  if (rpcTimeoutMs < 100) fail("rpc_timeout: must be at least 100ms");
  const discoveryTimeoutMs = wrap(() => durationMs("discovery_timeout", r.discovery_timeout, 2000));
  if (discoveryTimeoutMs < 100) fail("discovery_timeout: must be at least 100ms");
  const certValidityMs = wrap(() =>
    durationMs("certificate_validity", r.certificate_validity, 365 * 86_400_000),
  );
  if (certValidityMs < 86_400_000) fail("certificate_validity: must be at least 1d");
  const queueAckWaitMs = wrap(() => durationMs("queue_ack_wait", r.queue_ack_wait, 60_000));
  if (queueAckWaitMs < 1000) fail("queue_ack_wait: must be at least 1s");
  // an item held by a provisioner that died must not return while its last RPC may still land
  if (queueAckWaitMs <= rpcTimeoutMs)
    fail(`queue_ack_wait: must be longer than rpc_timeout (${rpcTimeoutMs / 1000}s)`);

  const denyList = (r.cert_deny_list as string[] | undefined) ?? [...CHORIA_CERT_DENY_LIST];
  denyList.forEach((re, i) => {
    try {
      new RegExp(re);
    } catch {
      fail(`cert_deny_list[${i}]: ${JSON.stringify(re)} is not a regular expression`);
    }
  });

  const urls = (typeof r.broker_urls === "string" ? r.broker_urls.split(",") : (r.broker_urls as string[]))
    .map((u) => u.trim())
    .filter((u) => u !== "");
  if (urls.length === 0) fail("broker_urls: needs at least one URL");

  const creds = r.provisioning_credentials as Record<string, string>;
  const cfg: ProvisionerConfig = {
    file,
    workers: (r.workers as number | undefined) ?? Math.max(1, cpus().length),
    intervalMs,
    helperTimeoutMs,
    token: r.token as string,
    lifecycle_component: (r.lifecycle_component as string | undefined) || "provision_mode_server",
    cert_deny_list: denyList,
    jwtVerifyKeys: wrap(() => verifyKeys(r.jwt_verify_cert as string, p)),
    serverJwtValidityS: Math.round(serverJwtValidityMs / 1000),
    leader_election: r.leader_election === true,
    site: (r.site as string | undefined) ?? "default",
    loglevel: (r.loglevel as string | undefined) ?? "info",
    features,
    broker_urls: urls,
    provisioning_credentials: {
      nats: p(creds.nats as string),
      ...(creds.seed && { seed: p(creds.seed) }),
      ...(creds.token && { token: p(creds.token) }),
      ...(creds.ca && { ca: p(creds.ca) }),
    },
    choria_config: p(r.choria_config as string),
    certificateValidityDays: Math.floor(certValidityMs / 86_400_000),
    collectives: (r.collectives as string[] | undefined) ?? ["mcollective"],
    default_configuration: (r.default_configuration as Record<string, string> | undefined) ?? {},
    rpcTimeoutMs,
    discoveryTimeoutMs,
    queueAckWaitMs,
    queue_replicas: (r.queue_replicas as number | undefined) ?? 1,
    queue_max_attempts: (r.queue_max_attempts as number | undefined) ?? 5,
  };
  if (typeof r.helper === "string" && r.helper.trim() !== "") {
    const argv = wrap(() => {
      try {
        return shellSplit(r.helper as string);
      } catch (err) {
        throw new ProvisionerConfigError("config", `helper: ${(err as Error).message}`);
      }
    });
    const cmd = argv[0] as string;
    // a bare name is looked up in PATH; a relative path is taken from the config's folder
    if (cmd.includes("/")) argv[0] = p(cmd);
    cfg.helper = argv;
  }
  for (const k of ["jwt_signing_key", "jwt_signing_token", "logfile", "ca"] as const) {
    const v = r[k];
    if (typeof v === "string" && v !== "") cfg[k] = p(v);
  }
  if (typeof r.monitor_port === "number") cfg.monitor_port = r.monitor_port;

  if (features.ed25519 && (!cfg.jwt_signing_key || !cfg.jwt_signing_token))
    fail(
      "jwt_signing_key and jwt_signing_token: are required with features.ed25519 (the chain issuer that signs server tokens)",
    );
  if ((cfg.jwt_signing_key === undefined) !== (cfg.jwt_signing_token === undefined))
    fail("jwt_signing_key and jwt_signing_token: set both or neither");
  if (features.pki && !cfg.helper && !cfg.ca)
    fail("ca: is required with features.pki when there is no helper (nothing would sign the CSRs)");
  if (!features.pki && !features.ed25519 && !cfg.helper)
    fail("helper: is required when neither features.ed25519 nor features.pki is on");
  const prov = cfg.default_configuration["plugin.choria.server.provision"];
  if (prov !== undefined && truthy(prov))
    fail("default_configuration.plugin.choria.server.provision: must not turn provisioning on");
  return cfg;
}

/** Choria's boolean spellings. */
export function truthy(v: string): boolean {
  return /^(1|y|yes|true|t|on)$/i.test(v.trim());
}

export function loadProvisionerConfig(path: string): ProvisionerConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ProvisionerConfigError("config", `cannot read ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return parseProvisionerConfig(parseDocument(text, path), path);
}
