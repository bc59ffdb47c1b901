import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { dirname, isAbsolute, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { clientSettings, loadConfig } from "../../core/config/index.js";
import { FederationError } from "./errors.js";

/** One side of a federation broker: the NATS servers and the credential used there. */
export interface FederationSide {
  servers: string[];
  /** Choria client config holding the seed, token and CA for this network */
  choria_config: string;
}

export interface FederationConfig {
  file: string;
  /** Choria's plugin.choria.federation.cluster: names the subjects and queue groups */
  cluster: string;
  identity: string;
  /** the network clients publish to (Choria's plugin.choria.federation_middleware_hosts) */
  federation: FederationSide;
  /** the collective's own network (Choria's plugin.choria.middleware_hosts) */
  collective: FederationSide;
  /** connection pairs, each in the queue groups (Choria runs 10 workers per stage) */
  workers: number;
  monitor_port?: number;
  logfile?: string;
  loglevel: string;
}

const NAME = /^[A-Za-z0-9_-]+$/;
const KEYS = new Set([
  "cluster",
  "identity",
  "choria_config",
  "federation",
  "collective",
  "workers",
  "monitor_port",
  "logfile",
  "loglevel",
]);
const SIDE_KEYS = new Set(["servers", "choria_config"]);
const LEVELS = ["trace", "debug", "info", "warn", "error", "fatal"];

function bad(key: string, why: string): FederationError {
  return new FederationError("config", `${key}: ${why}`);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function serverList(key: string, v: unknown): string[] | undefined {
  if (v === undefined) return undefined;
  const list = typeof v === "string" ? v.split(",") : v;
  if (!Array.isArray(list) || list.some((s) => typeof s !== "string"))
    throw bad(key, "must be a URL, a comma separated list of URLs, or a list of URLs");
  const out = (list as string[]).map((s) => s.trim()).filter((s) => s !== "");
  if (out.length === 0) throw bad(key, "names no server");
  for (const s of out)
    if (!/^(nats|tls):\/\/[^\s/]+$/.test(s) && !/^[^\s/:]+:\d+$/.test(s))
      throw bad(key, `"${s}" is not a nats:// or tls:// URL or host:port`);
  return out;
}

function pathIn(base: string, key: string, v: unknown): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "string" || v.trim() === "") throw bad(key, "must be a file path");
  return isAbsolute(v) ? v : resolve(base, v);
}

/** Choria hosts lists (`host:port` or URLs) as NATS URLs. */
function choriaHosts(cfg: ReturnType<typeof loadConfig>, key: string): string[] {
  return cfg
    .list(key, [])
    .map((s) => s.trim())
    .filter((s) => s !== "");
}

function side(
  doc: Record<string, unknown>,
  name: "federation" | "collective",
  base: string,
  shared: string | undefined,
): FederationSide {
  const raw = doc[name] ?? {};
  if (!isRecord(raw)) throw bad(name, "must be a map with servers and choria_config");
  for (const k of Object.keys(raw))
    if (!SIDE_KEYS.has(k)) throw bad(`${name}.${k}`, "is not a federation broker setting");
  const choria = pathIn(base, `${name}.choria_config`, raw.choria_config) ?? shared;
  // an inherited top level choria_config is named as the user wrote it
  const choriaKey = raw.choria_config === undefined ? "choria_config" : `${name}.choria_config`;
  if (choria === undefined) throw bad(`${name}.choria_config`, "is required (or a top level choria_config)");
  let servers = serverList(`${name}.servers`, raw.servers);
  if (servers === undefined) {
    // Choria's keys in the Choria config: the federation side reads
    // plugin.choria.federation_middleware_hosts, the collective side middleware_hosts.
    const cfg = loadChoria(choriaKey, choria);
    const key =
      name === "federation" ? "plugin.choria.federation_middleware_hosts" : "plugin.choria.middleware_hosts";
    const hosts = choriaHosts(cfg, key);
    if (hosts.length === 0) throw bad(`${name}.servers`, `is required (${choria} sets no ${key})`);
    servers = serverList(`${name}.servers`, hosts) as string[];
  }
  return { servers, choria_config: choria };
}

function loadChoria(key: string, path: string): ReturnType<typeof loadConfig> {
  try {
    return loadConfig(path);
  } catch (err) {
    throw new FederationError("config", `${key}: ${(err as Error).message}`, { cause: err });
  }
}

/** Checks a parsed YAML/JSON document; `file` resolves relative paths. */
export function parseFederationConfig(doc: unknown, file: string): FederationConfig {
  if (!isRecord(doc)) throw bad("(top level)", "must be a map of settings");
  for (const k of Object.keys(doc)) if (!KEYS.has(k)) throw bad(k, "is not a federation broker setting");
  const base = dirname(resolve(file));
  const cluster = doc.cluster ?? "mcollective";
  if (typeof cluster !== "string" || !NAME.test(cluster))
    throw bad("cluster", "must be a name of letters, digits, _ and - (it is a NATS subject token)");
  const identity = doc.identity ?? hostname();
  if (typeof identity !== "string" || identity.trim() === "") throw bad("identity", "must be a name");
  const workers = doc.workers ?? 1;
  if (typeof workers !== "number" || !Number.isInteger(workers) || workers < 1 || workers > 64)
    throw bad("workers", "must be a whole number from 1 to 64");
  const port = doc.monitor_port;
  if (port !== undefined && (typeof port !== "number" || !Number.isInteger(port) || port < 0 || port > 65535))
    throw bad("monitor_port", "must be a port number (0 = any free port)");
  const loglevel = doc.loglevel ?? "info";
  if (typeof loglevel !== "string" || !LEVELS.includes(loglevel))
    throw bad("loglevel", `must be one of ${LEVELS.join(", ")}`);
  const shared = pathIn(base, "choria_config", doc.choria_config);
  const logfile = pathIn(base, "logfile", doc.logfile);
  const config: FederationConfig = {
    file,
    cluster,
    identity,
    federation: side(doc, "federation", base, shared),
    collective: side(doc, "collective", base, shared),
    workers,
    loglevel,
    ...(port !== undefined && { monitor_port: port }),
    ...(logfile !== undefined && { logfile }),
  };
  // fail at load, not at the first message, when a credential file is unusable
  for (const n of ["federation", "collective"] as const) {
    const own = isRecord(doc[n]) && doc[n].choria_config !== undefined;
    clientSettingsOf(own ? `${n}.choria_config` : "choria_config", config[n].choria_config);
  }
  return config;
}

/** The client settings (seed, token, CA) of a side's Choria config. */
export function clientSettingsOf(key: string, path: string): ReturnType<typeof clientSettings> {
  try {
    return clientSettings(loadChoria(key, path));
  } catch (err) {
    if (err instanceof FederationError) throw err;
    throw new FederationError("config", `${key}: ${(err as Error).message}`, { cause: err });
  }
}

/** Reads a federation broker config file (YAML or JSON). */
export function loadFederationConfig(path: string): FederationConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new FederationError("config", `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new FederationError("config", `${path} is not YAML: ${(err as Error).message}`, { cause: err });
  }
  return parseFederationConfig(doc, path);
}
