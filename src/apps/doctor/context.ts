import { resolve } from "node:path";
import {
  brokerSettings,
  clientSettings,
  loadConfig,
  serverSettings,
  type BrokerSettings,
  type ClientSettings,
  type Config,
  type ServerSettings,
} from "../../core/config/index.js";
import type { KeyPair, StandardClaims } from "../../core/security/index.js";
import { Findings, messageOf, type DoctorCheck, type DoctorRole } from "./report.js";

/** Keys only a server (node) config sets, next to its identity. */
const SERVER_KEYS = [
  "plugin.yaml",
  "classesfile",
  "rpcauthorization",
  "rpcauthprovider",
  "rpcaudit",
  "registration",
  "registerinterval",
  "plugin.choria.status_file_path",
];
const SERVER_PREFIXES = [
  "plugin.actionpolicy.",
  "plugin.rpcaudit.",
  "plugin.choria.server.",
  "plugin.choria.registration.",
  "plugin.choria.submission.",
  "plugin.chorus.data.",
  "plugin.chorus.emulator.",
];

/** What the checks share: the config, its role's settings, and what earlier checks learnt. */
export interface DoctorContext {
  file: string;
  now: () => number;
  timeoutMs: number;
  role: DoctorRole;
  cfg?: Config;
  client?: ClientSettings;
  server?: ServerSettings;
  broker?: BrokerSettings;
  /** set by the seed check when the seed loads */
  seed?: KeyPair;
  /** set by the token check when the token decodes */
  token?: StandardClaims & Record<string, unknown>;
  /** set by the NATS JWT check: the companion user JWT does not exist */
  natsJwtMissing?: boolean;
}

/** The credential and TLS files the role's settings name. */
export interface RoleFiles {
  seedFile?: string | undefined;
  tokenFile?: string | undefined;
  natsJwtFile?: string | undefined;
  caFile?: string | undefined;
  certFile?: string | undefined;
  keyFile?: string | undefined;
}

export function filesOf(ctx: DoctorContext): RoleFiles {
  const s = ctx.client ?? ctx.server ?? ctx.broker;
  if (!s) return {};
  return {
    seedFile: s.seedFile,
    tokenFile: s.tokenFile,
    natsJwtFile: s.natsJwtFile,
    caFile: s.caFile,
    certFile: s.certFile,
    keyFile: s.keyFile,
  };
}

/** A config's role and the reason, in the words the config uses. */
export function roleOf(cfg: Config): { role: DoctorRole; why: string } {
  if (cfg.bool("plugin.choria.broker_network", false))
    return { role: "broker", why: "plugin.choria.broker_network = true" };
  const serverKeys = cfg
    .keys()
    .filter((k) => SERVER_KEYS.includes(k) || SERVER_PREFIXES.some((p) => k.startsWith(p)));
  const identity = cfg.get("identity");
  if (identity && serverKeys.length > 0) {
    const shown = serverKeys.slice(0, 3).join(", ") + (serverKeys.length > 3 ? ", ..." : "");
    return { role: "server", why: `identity ${identity} with server keys (${shown})` };
  }
  return {
    role: "client",
    why: identity
      ? `identity is set but no server keys (plugin.yaml, rpcauthorization, plugin.actionpolicy.*, ...) and plugin.choria.broker_network is not true`
      : "no plugin.choria.broker_network = true and no identity with server keys",
  };
}

/** Check 1: the config parses, which role it is for, and that role's settings load. */
export function checkConfig(ctx: DoctorContext): DoctorCheck {
  const f = new Findings();
  let cfg: Config;
  try {
    cfg = loadConfig(ctx.file);
  } catch (err) {
    return f
      .fail(messageOf(err), `write a Choria configuration (key = value lines) at ${resolve(ctx.file)}`)
      .result("config");
  }
  ctx.cfg = cfg;
  let why: string;
  try {
    ({ role: ctx.role, why } = roleOf(cfg));
  } catch (err) {
    return f
      .fail(messageOf(err), "set plugin.choria.broker_network to true (a broker) or false")
      .result("config");
  }
  try {
    if (ctx.role === "broker") ctx.broker = brokerSettings(cfg);
    else if (ctx.role === "server") ctx.server = serverSettings(cfg);
    else ctx.client = clientSettings(cfg);
  } catch (err) {
    return f
      .fail(
        `${cfg.keys().length} keys, role ${ctx.role} (${why}), but its settings do not load: ${messageOf(err)}`,
        `correct the key the message names in ${resolve(ctx.file)}`,
      )
      .result("config");
  }
  return f.ok(`${cfg.keys().length} keys; role ${ctx.role}: ${why}`).result("config");
}
