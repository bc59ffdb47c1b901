import { readFileSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { Ajv, type ErrorObject } from "ajv";
import { parse as parseYaml } from "yaml";
import { parseDuration } from "../../core/config/index.js";
import { ChorusError } from "../../core/protocol/index.js";
import { issuerKeysFromSetting } from "../../core/security/index.js";

export class AaaConfigError extends ChorusError {}

/** A user as the users list or users file holds it (Choria's keys, plus cedar_policy). */
export interface UserEntry {
  username: string;
  /** bcrypt hash */
  password: string;
  organization?: string;
  acls?: string[];
  cedar_policy?: string;
  cedar_policy_file?: string;
  /** Carried into the token as Choria does; Chorus authorizers deny Rego policies. */
  opa_policy?: string;
  opa_policy_file?: string;
  properties?: Record<string, string>;
  broker_permissions?: Record<string, boolean>;
}

export interface UserlistConfig {
  users: UserEntry[];
  users_file?: string;
  /** token validity, seconds */
  validityS: number;
  signing_key: string;
  signing_token?: string;
  max_failures_per_user: number;
  max_failures_per_address: number;
  /** lockout (and failure window), seconds */
  lockoutS: number;
  /** verified-credential cache lifetime, seconds; 0 disables it */
  credentialCacheS: number;
}

export interface BasicJwtConfig {
  /** hex ed25519 public key(s) of the org issuer(s) the user tokens chain to */
  issuers: string[];
  signing_token: string;
  signing_seed: string;
  maxValidityS: number;
  choria_service: boolean;
  allow_bearer_tokens: boolean;
}

export interface AaaConfig {
  file: string;
  logfile?: string;
  loglevel: string;
  choria_config?: string;
  site: string;
  authenticator?: "userlist";
  auditors: ("logfile" | "jetstream")[];
  authorizer: "actionlist" | "cedar";
  signer: "basicjwt";
  port?: number;
  /** interface the login/sign listener binds (Chorus; default all) */
  listen_address: string;
  monitor_port?: number;
  tls_certificate?: string;
  tls_key?: string;
  tls_ca?: string;
  basicjwt_signer: BasicJwtConfig;
  logfile_auditor?: { logfile: string; rotate_bytes?: number; keep?: number };
  jetstream_auditor?: {
    servers: string;
    topic: string;
    stream?: string;
    /** a Choria client config whose TLS files and NATS JWT the auditor connects with */
    credentials?: string;
    /** Chorus: write-ahead spool file (default aaa-audit.spool beside the config) */
    spool?: string;
  };
  userlist?: UserlistConfig;
}

const DURATION = { type: "string", minLength: 1 } as const;
const PERMS = { type: "object", additionalProperties: { type: "boolean" } } as const;

/** One user: JSON schema shared with the users file. */
export const USER_SCHEMA = {
  type: "object",
  required: ["username", "password"],
  properties: {
    username: { type: "string", minLength: 1 },
    password: { type: "string", pattern: "^\\$2[abxy]?\\$\\d\\d\\$" },
    organization: { type: "string" },
    acls: { type: "array", items: { type: "string" } },
    cedar_policy: { type: "string" },
    cedar_policy_file: { type: "string" },
    opa_policy: { type: "string" },
    opa_policy_file: { type: "string" },
    properties: { type: "object", additionalProperties: { type: "string" } },
    broker_permissions: PERMS,
  },
} as const;

const SCHEMA = {
  type: "object",
  required: ["authorizer", "signer", "basicjwt_signer"],
  properties: {
    logfile: { type: "string" },
    loglevel: { enum: ["debug", "info", "warn", "error", "fatal", "trace"] },
    choria_config: { type: "string" },
    site: { type: "string", minLength: 1 },
    authenticator: { enum: ["userlist", ""] },
    auditors: { type: "array", items: { enum: ["logfile", "jetstream"] } },
    authorizer: { enum: ["actionlist", "cedar"] },
    signer: { enum: ["basicjwt"] },
    port: { type: "integer", minimum: 0, maximum: 65535 },
    listen_address: { type: "string" },
    monitor_port: { type: "integer", minimum: 0, maximum: 65535 },
    tls_certificate: { type: "string" },
    tls_key: { type: "string" },
    tls_ca: { type: "string" },
    basicjwt_signer: {
      type: "object",
      required: ["signing_certificate", "signing_token", "signing_seed", "max_validity"],
      properties: {
        signing_certificate: { type: "string", minLength: 1 },
        signing_token: { type: "string", minLength: 1 },
        signing_seed: { type: "string", minLength: 1 },
        max_validity: DURATION,
        choria_service: { type: "boolean" },
        allow_bearer_tokens: { type: "boolean" },
      },
    },
    logfile_auditor: {
      type: "object",
      required: ["logfile"],
      properties: {
        logfile: { type: "string", minLength: 1 },
        rotate_bytes: { type: "integer", minimum: 0 },
        keep: { type: "integer", minimum: 0 },
      },
    },
    jetstream_auditor: {
      type: "object",
      required: ["servers", "topic"],
      properties: {
        servers: { type: "string", minLength: 1 },
        topic: { type: "string", minLength: 1 },
        stream: { type: "string" },
        credentials: { type: "string" },
        spool: { type: "string", minLength: 1 },
      },
    },
    userlist_authenticator: {
      type: "object",
      required: ["validity", "signing_key"],
      properties: {
        users: { type: "array", items: USER_SCHEMA },
        users_file: { type: "string" },
        validity: DURATION,
        signing_key: { type: "string", minLength: 1 },
        signing_token: { type: "string" },
        max_failures_per_user: { type: "integer", minimum: 1 },
        max_failures_per_address: { type: "integer", minimum: 1 },
        lockout: DURATION,
        credential_cache: DURATION,
      },
    },
  },
} as const;

const ajv = new Ajv({ allErrors: true, strict: false });
const validate = ajv.compile(SCHEMA);

/** "basicjwt_signer.max_validity: is required" — the key named the way the file spells it. */
export function ajvErrorText(e: ErrorObject, root = ""): string {
  const path = e.instancePath
    .split("/")
    .filter((p) => p !== "")
    .map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p}`))
    .join("")
    .replace(/^\./, "");
  let key = root ? (path ? `${root}${path.startsWith("[") ? "" : "."}${path}` : root) : path;
  let why = e.message ?? "is invalid";
  if (e.keyword === "required") {
    const missing = (e.params as { missingProperty: string }).missingProperty;
    key = key ? `${key}.${missing}` : missing;
    why = "is required";
  } else if (e.keyword === "enum") {
    why = `must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues
      .filter((v) => v !== "")
      .map((v) => JSON.stringify(v))
      .join(", ")}`;
  }
  return `${key || "(top level)"}: ${why}`;
}

function seconds(key: string, value: string | undefined, dflt: number): number {
  if (value === undefined) return dflt;
  const ms = parseDuration(value);
  if (ms === undefined || ms < 0)
    throw new AaaConfigError("config", `${key}: "${value}" is not a duration like 1h`);
  return ms / 1000;
}

/** Parses JSON or YAML text (YAML is a superset of JSON). */
export function parseDocument(text: string, file: string): unknown {
  try {
    return parseYaml(text) as unknown;
  } catch (err) {
    throw new AaaConfigError("config", `${file}: cannot parse: ${(err as Error).message}`, { cause: err });
  }
}

/** Validates and normalizes a parsed AAA config; relative paths are taken from the config file's folder. */
export function parseAaaConfig(raw: unknown, file = "<config>"): AaaConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    throw new AaaConfigError("config", `${file}: the configuration must be an object`);
  const r = raw as Record<string, unknown>;
  // say the helpful thing before the schema's generic enum message
  if (r.authorizer === "opa")
    throw new AaaConfigError("config", `${file}: authorizer: opa is not supported; use cedar`);
  if (r.authenticator === "okta")
    throw new AaaConfigError(
      "config",
      `${file}: authenticator: okta is not supported (Choria removed it too)`,
    );
  if (!validate(r)) {
    const errs = (validate.errors ?? []).map((e) => ajvErrorText(e));
    throw new AaaConfigError("config", `${file}: ${[...new Set(errs)].join("; ")}`);
  }
  const base = file.startsWith("<") ? process.cwd() : dirname(resolve(file));
  const p = (v: string): string => (isAbsolute(v) ? v : resolve(base, v));
  const bj = r.basicjwt_signer as Record<string, unknown>;
  const certSetting = bj.signing_certificate as string;
  const cfg: AaaConfig = {
    file,
    loglevel: (r.loglevel as string | undefined) ?? "info",
    site: (r.site as string | undefined) ?? "default",
    auditors: [...new Set((r.auditors as AaaConfig["auditors"] | undefined) ?? [])],
    authorizer: r.authorizer as AaaConfig["authorizer"],
    signer: "basicjwt",
    listen_address: (r.listen_address as string | undefined) ?? "0.0.0.0",
    basicjwt_signer: {
      issuers: issuerKeys(certSetting, p),
      signing_token: p(bj.signing_token as string),
      signing_seed: p(bj.signing_seed as string),
      maxValidityS: seconds("basicjwt_signer.max_validity", bj.max_validity as string, 0),
      choria_service: bj.choria_service === true,
      allow_bearer_tokens: bj.allow_bearer_tokens === true,
    },
  };
  if (cfg.basicjwt_signer.maxValidityS <= 0)
    throw new AaaConfigError("config", `${file}: basicjwt_signer.max_validity: must be longer than 0`);
  for (const k of ["logfile", "tls_certificate", "tls_key", "tls_ca", "choria_config"] as const) {
    const v = r[k];
    if (typeof v === "string" && v !== "") cfg[k] = p(v);
  }
  if (typeof r.port === "number") cfg.port = r.port;
  if (typeof r.monitor_port === "number") cfg.monitor_port = r.monitor_port;
  if ((cfg.tls_certificate === undefined) !== (cfg.tls_key === undefined))
    throw new AaaConfigError("config", `${file}: tls_certificate and tls_key: set both or neither`);
  if (cfg.tls_ca !== undefined && cfg.tls_certificate === undefined)
    throw new AaaConfigError("config", `${file}: tls_ca: needs tls_certificate and tls_key`);
  if (cfg.port === undefined && !cfg.basicjwt_signer.choria_service)
    throw new AaaConfigError(
      "config",
      `${file}: port: is required unless basicjwt_signer.choria_service is true (nothing would serve requests)`,
    );
  if (cfg.basicjwt_signer.choria_service && cfg.choria_config === undefined)
    throw new AaaConfigError(
      "config",
      `${file}: choria_config: is required with basicjwt_signer.choria_service`,
    );

  if (cfg.auditors.includes("logfile")) {
    const la = r.logfile_auditor as { logfile: string; rotate_bytes?: number; keep?: number } | undefined;
    if (!la)
      throw new AaaConfigError("config", `${file}: logfile_auditor: is required with the logfile auditor`);
    cfg.logfile_auditor = { ...la, logfile: p(la.logfile) };
  }
  if (cfg.auditors.includes("jetstream")) {
    const ja = r.jetstream_auditor as AaaConfig["jetstream_auditor"];
    if (!ja)
      throw new AaaConfigError(
        "config",
        `${file}: jetstream_auditor: is required with the jetstream auditor`,
      );
    cfg.jetstream_auditor = {
      ...ja,
      ...(ja.credentials && { credentials: p(ja.credentials) }),
      ...(ja.spool && { spool: p(ja.spool) }),
    };
  }

  if (r.authenticator === "userlist") {
    cfg.authenticator = "userlist";
    const u = r.userlist_authenticator as Record<string, unknown> | undefined;
    if (!u)
      throw new AaaConfigError(
        "config",
        `${file}: userlist_authenticator: is required with the userlist authenticator`,
      );
    const users = (u.users as UserEntry[] | undefined) ?? [];
    if (users.length === 0 && typeof u.users_file !== "string")
      throw new AaaConfigError("config", `${file}: userlist_authenticator: needs users or users_file`);
    const validityS = seconds("userlist_authenticator.validity", u.validity as string, 0);
    if (validityS <= 0)
      throw new AaaConfigError("config", `${file}: userlist_authenticator.validity: must be longer than 0`);
    cfg.userlist = {
      users,
      validityS,
      signing_key: p(u.signing_key as string),
      max_failures_per_user: (u.max_failures_per_user as number | undefined) ?? 5,
      max_failures_per_address: (u.max_failures_per_address as number | undefined) ?? 20,
      lockoutS: seconds("userlist_authenticator.lockout", u.lockout as string | undefined, 300),
      credentialCacheS: seconds(
        "userlist_authenticator.credential_cache",
        u.credential_cache as string | undefined,
        60,
      ),
    };
    if (typeof u.users_file === "string" && u.users_file !== "") cfg.userlist.users_file = p(u.users_file);
    if (typeof u.signing_token === "string" && u.signing_token !== "")
      cfg.userlist.signing_token = p(u.signing_token);
  }
  return cfg;
}

/**
 * signing_certificate: Choria names a certificate here; for Chorus it is the org issuer's
 * hex ed25519 public key, a comma separated list of them, or a file holding them.
 */
function issuerKeys(setting: string, p: (v: string) => string): string[] {
  try {
    return issuerKeysFromSetting(setting, p);
  } catch (err) {
    throw new AaaConfigError("config", `basicjwt_signer.signing_certificate: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

/** Reads and validates an AAA service config file (JSON or YAML). */
export function loadAaaConfig(file: string): AaaConfig {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new AaaConfigError("config", `cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  return parseAaaConfig(parseDocument(text, file), file);
}
