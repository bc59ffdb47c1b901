import { readFileSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { parseDuration } from "../../core/config/index.js";
import { ReceiverConfigError } from "./errors.js";

export type ReceiverMode = "stream" | "direct";

/** Where replies are kept: a SQLite file or a PostgreSQL database. */
export type StoreLocation = { kind: "sqlite"; path: string } | { kind: "postgres"; url: string };

export interface ReceiverConfig {
  file: string;
  /** client config: NATS servers, TLS, credentials */
  choria_config: string;
  store: StoreLocation;
  mode: ReceiverMode;
  streamMaxAgeMs: number;
  stream_replicas: number;
  /** durable consumer name shared by every receiver */
  consumer: string;
  /** replies committed per transaction (at most) */
  batch: number;
  /** longest a received reply waits for its batch to fill, ms */
  flushIntervalMs: number;
  ackWaitMs: number;
  /** unacknowledged messages the consumer hands out, across all receivers */
  max_ack_pending: number;
  /** check every reply's signature against the issuers of choria_config */
  verify_signatures: boolean;
  /** host:port of the HTTP API; undefined: off */
  http_listen?: { host: string; port: number };
  /** Chorus only: a file holding the bearer token every API call must carry (besides /healthz) */
  http_token_file?: string;
  monitor_port?: number;
  loglevel: string;
  logfile?: string;
}

export const DEFAULT_STORE = "sqlite:receiver.db";
export const DEFAULT_CONSUMER = "CHORUS_RECEIVER";
export const DEFAULT_HTTP_LISTEN = "127.0.0.1:8091";

const KEYS = new Set([
  "choria_config",
  "store",
  "mode",
  "stream_max_age",
  "stream_replicas",
  "consumer",
  "batch",
  "flush_interval",
  "ack_wait",
  "max_ack_pending",
  "verify_signatures",
  "http_listen",
  "http_token_file",
  "monitor_port",
  "loglevel",
  "logfile",
]);
const LEVELS = ["trace", "debug", "info", "warn", "error", "fatal"];

/**
 * A store URL: `sqlite:PATH` (relative to `base`), `sqlite:///abs/path`, `sqlite::memory:`,
 * or `postgres://` / `postgresql://`. Undefined when it is none of these.
 */
export function parseStoreUrl(url: string, base: string): StoreLocation | undefined {
  if (/^postgres(ql)?:\/\//.test(url)) {
    try {
      new URL(url);
    } catch {
      return undefined;
    }
    return { kind: "postgres", url };
  }
  const m = /^sqlite:(.+)$/.exec(url);
  if (!m) return undefined;
  let path = m[1] as string;
  if (path === ":memory:") return { kind: "sqlite", path };
  if (path.startsWith("//")) path = path.slice(2);
  if (path === "") return undefined;
  return { kind: "sqlite", path: isAbsolute(path) ? path : resolve(base, path) };
}

function durationKey(r: Record<string, unknown>, key: string, dflt: number, min: number): number {
  const v = r[key];
  if (v === undefined) return dflt;
  const ms =
    typeof v === "number" ? (Number.isFinite(v) && v >= 0 ? v * 1000 : undefined) : parseDuration(String(v));
  if (ms === undefined)
    throw new ReceiverConfigError("config", `${key}: ${JSON.stringify(v)} is not a duration like 30s or 24h`);
  if (ms < min) throw new ReceiverConfigError("config", `${key}: must be at least ${min} ms`);
  return ms;
}

function intKey(r: Record<string, unknown>, key: string, dflt: number, min: number, max: number): number {
  const v = r[key];
  if (v === undefined) return dflt;
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max)
    throw new ReceiverConfigError("config", `${key}: must be a whole number from ${min} to ${max}`);
  return v;
}

function stringKey(r: Record<string, unknown>, key: string): string | undefined {
  const v = r[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw new ReceiverConfigError("config", `${key}: must be a string`);
  return v;
}

/** "127.0.0.1:8091", ":8091" (loopback) or "[::1]:8091". */
function listenAddress(v: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(v.trim());
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  return { host: m[1] ?? (m[2] || "127.0.0.1"), port };
}

/** Validates and normalizes a parsed receiver config; relative paths are from the config file's folder. */
export function parseReceiverConfig(raw: unknown, file = "<config>"): ReceiverConfig {
  try {
    return parse(raw, file);
  } catch (err) {
    if (err instanceof ReceiverConfigError)
      throw new ReceiverConfigError("config", `${file}: ${err.message}`, { cause: err });
    throw err;
  }
}

function parse(raw: unknown, file: string): ReceiverConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    throw new ReceiverConfigError("config", "the configuration must be an object");
  const r = raw as Record<string, unknown>;
  for (const k of Object.keys(r))
    if (!KEYS.has(k)) throw new ReceiverConfigError("config", `${k}: is not a receiver setting`);
  const base = file.startsWith("<") ? process.cwd() : dirname(resolve(file));
  const p = (v: string): string => (isAbsolute(v) ? v : resolve(base, v));

  const choria = stringKey(r, "choria_config");
  if (!choria)
    throw new ReceiverConfigError("config", "choria_config: is required (a client configuration file)");
  const storeUrl = stringKey(r, "store") ?? DEFAULT_STORE;
  const store = parseStoreUrl(storeUrl, base);
  if (!store)
    throw new ReceiverConfigError(
      "config",
      `store: ${JSON.stringify(storeUrl)} is not sqlite:PATH, sqlite:///abs/path or postgres://user@host/db`,
    );
  const mode = stringKey(r, "mode") ?? "stream";
  if (mode !== "stream" && mode !== "direct")
    throw new ReceiverConfigError("config", `mode: must be "stream" or "direct"`);
  const consumer = stringKey(r, "consumer") ?? DEFAULT_CONSUMER;
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(consumer))
    throw new ReceiverConfigError("config", "consumer: must be 1 to 64 letters, digits, _ or -");
  const batch = intKey(r, "batch", 500, 1, 10_000);
  const loglevel = stringKey(r, "loglevel") ?? "info";
  if (!LEVELS.includes(loglevel))
    throw new ReceiverConfigError("config", `loglevel: must be one of ${LEVELS.join(", ")}`);
  const verify = r.verify_signatures ?? false;
  if (typeof verify !== "boolean")
    throw new ReceiverConfigError("config", "verify_signatures: must be true or false");

  const cfg: ReceiverConfig = {
    file,
    choria_config: p(choria),
    store,
    mode,
    streamMaxAgeMs: durationKey(r, "stream_max_age", 24 * 3_600_000, 60_000),
    stream_replicas: intKey(r, "stream_replicas", 1, 1, 5),
    consumer,
    batch,
    flushIntervalMs: durationKey(r, "flush_interval", 50, 1),
    ackWaitMs: durationKey(r, "ack_wait", 30_000, 1000),
    // several batches in flight per receiver, a few receivers
    max_ack_pending: intKey(r, "max_ack_pending", Math.max(20_000, batch * 16), 1, 10_000_000),
    verify_signatures: verify,
    loglevel,
  };
  const listen = stringKey(r, "http_listen") ?? DEFAULT_HTTP_LISTEN;
  if (listen !== "") {
    const addr = listenAddress(listen);
    if (!addr)
      throw new ReceiverConfigError("config", `http_listen: ${JSON.stringify(listen)} is not host:port`);
    cfg.http_listen = addr;
  }
  const tokenFile = stringKey(r, "http_token_file");
  if (tokenFile) cfg.http_token_file = p(tokenFile);
  if (r.monitor_port !== undefined) cfg.monitor_port = intKey(r, "monitor_port", 0, 0, 65535);
  const logfile = stringKey(r, "logfile");
  if (logfile) cfg.logfile = p(logfile);
  return cfg;
}

export function loadReceiverConfig(path: string): ReceiverConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ReceiverConfigError("config", `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  let doc: unknown;
  try {
    // YAML is a superset of JSON
    doc = parseYaml(text) as unknown;
  } catch (err) {
    throw new ReceiverConfigError("config", `${path}: cannot parse: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return parseReceiverConfig(doc ?? {}, path);
}
