import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { dirname, isAbsolute, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { parseDuration } from "../../core/config/index.js";
import { ReplicatorError } from "./errors.js";

/** TLS files for one connection (Choria's `tls`, `source_tls`, `target_tls`). */
export interface TlsFiles {
  ca?: string;
  cert?: string;
  key?: string;
}

/**
 * A Choria credential (Choria's `choria`, `source_choria`, `target_choria`): the ed25519
 * seed and the token; the NATS user JWT is the token's `.nats` companion that setup
 * writes beside it, or the token itself when it already is a NATS user JWT.
 */
export interface ChoriaCredential {
  seed_file: string;
  jwt_file: string;
  collective: string;
}

/** One end of a copy: where and as whom. */
export interface Endpoint {
  url: string;
  /** NATS servers from url (comma separated list, query removed) */
  servers: string[];
  tls?: TlsFiles;
  choria?: ChoriaCredential;
  /** a NATS `.creds` file from the URL's `credentials=` */
  credentials?: string;
  connectTimeoutMs?: number;
}

/** How the start position of a new consumer is chosen (at most one). */
export type StartAt =
  | { kind: "all" }
  | { kind: "sequence"; seq: number }
  | { kind: "time"; time: Date }
  | { kind: "delta"; ms: number }
  | { kind: "end" };

/** Chorus's parallel mode: messages with the same key are copied in order, different keys at once. */
export interface ParallelKey {
  /** 1-based subject token, or -1 for the whole subject */
  subjectToken?: number;
  header?: string;
  /** keys in flight at once */
  workers: number;
}

export interface SamplingConfig {
  inspect_field?: string;
  inspect_force_field?: string;
  inspect_header?: string;
  inspect_subject_token?: number;
  inspectDurationMs: number;
  warnDurationMs: number;
  size_trigger?: number;
}

export interface StreamConfig {
  /** this copy's name (labels, consumer name SR_<name>, state file, election key) */
  name: string;
  stream: string;
  target_stream: string;
  filter_subject?: string;
  target_subject_prefix?: string;
  target_subject_remove?: string;
  source: Endpoint;
  target: Endpoint;
  no_target_create: boolean;
  ephemeral: boolean;
  target_initiated: boolean;
  start: StartAt;
  maxAgeMs?: number;
  parallel?: ParallelKey;
  sampling?: SamplingConfig;
  /** candidate name in the leader election; undefined: no election, always active */
  leader_election_name?: string;
  advisory?: { subject: string; reliable: boolean };
  /** messages the source consumer hands out before acks (ordered mode: a batch) */
  batch: number;
  stateFile?: string;
}

export interface HeartbeatSubject {
  subject: string;
  intervalMs: number;
  headers: Record<string, string>;
}

export interface HeartbeatConfig {
  target: Endpoint;
  intervalMs: number;
  leader_election: boolean;
  headers: Record<string, string>;
  subjects: HeartbeatSubject[];
}

export interface ReplicatorConfig {
  file: string;
  name: string;
  streams: StreamConfig[];
  state_store?: string;
  monitor_port?: number;
  loglevel: string;
  logfile?: string;
  heartbeats?: HeartbeatConfig;
}

const TOP_KEYS = new Set([
  "name",
  "streams",
  "state_store",
  "tls",
  "choria",
  "monitor_port",
  "profiling",
  "logfile",
  "loglevel",
  "heartbeats",
]);
const STREAM_KEYS = new Set([
  "name",
  "stream",
  "filter_subject",
  "target_stream",
  "target_subject_prefix",
  "target_subject_remove",
  "source_url",
  "target_url",
  "no_target_create",
  "ephemeral",
  "target_initiated",
  "start_sequence",
  "start_time",
  "start_delta",
  "start_at_end",
  "max_age",
  "tls",
  "source_tls",
  "target_tls",
  "choria",
  "source_choria",
  "target_choria",
  "inspect_field",
  "inspect_force_field",
  "inspect_header",
  "inspect_subject_token",
  "inspect_duration",
  "warn_duration",
  "size_trigger",
  "leader_election_name",
  "advisory",
  // Chorus
  "parallel",
  "batch",
]);
const HB_KEYS = new Set(["url", "interval", "leader_election", "headers", "subjects", "tls", "choria"]);
const LEVELS = ["trace", "debug", "info", "warn", "error", "fatal"];
const NAME = /^[A-Za-z0-9_-]+$/;
const SUBJECT = /^[^\s*>]+(\.[^\s*>]+)*$/;
const FILTER = /^[^\s]+$/;

function bad(key: string, why: string): ReplicatorError {
  return new ReplicatorError("config", `${key}: ${why}`);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function unknownKeys(key: string, v: Record<string, unknown>, known: Set<string>): void {
  for (const k of Object.keys(v))
    if (!known.has(k)) throw bad(key ? `${key}.${k}` : k, "is not a replicator setting");
}

function str(key: string, v: unknown, re?: RegExp, hint = ""): string | undefined {
  if (v === undefined || v === null || v === "") return undefined;
  if (typeof v !== "string") throw bad(key, "must be a string");
  if (re && !re.test(v)) throw bad(key, `"${v}" is not valid${hint ? `: ${hint}` : ""}`);
  return v;
}

function bool(key: string, v: unknown): boolean {
  if (v === undefined || v === null) return false;
  if (typeof v !== "boolean") throw bad(key, "must be true or false");
  return v;
}

function int(key: string, v: unknown, min: number, max: number): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max)
    throw bad(key, `must be a whole number from ${min} to ${max}`);
  return v;
}

const LONG_UNITS: Record<string, number> = {
  w: 7 * 86_400_000,
  W: 7 * 86_400_000,
  d: 86_400_000,
  D: 86_400_000,
  M: 30 * 86_400_000,
  Y: 365 * 86_400_000,
  y: 365 * 86_400_000,
};

/** Choria's duration strings: Go durations plus a single w, d, M or Y unit ("1w", "1.5d"). */
export function parseLongDuration(v: string): number | undefined {
  const t = v.trim();
  const m = /^(\d+(?:\.\d+)?)([wWdDMYy])$/.exec(t);
  if (m) return Number(m[1]) * (LONG_UNITS[m[2] as string] as number);
  return parseDuration(t, "s");
}

function duration(key: string, v: unknown): number | undefined {
  if (v === undefined || v === null || v === "") return undefined;
  if (typeof v !== "string") throw bad(key, 'must be a duration such as "10s", "5m", "1d" or "1w"');
  const ms = parseLongDuration(v);
  if (ms === undefined || ms <= 0)
    throw bad(key, `"${v}" is not a duration such as "10s", "5m", "1d" or "1w"`);
  return ms;
}

function pathIn(base: string, key: string, v: unknown): string | undefined {
  const s = str(key, v);
  return s === undefined ? undefined : isAbsolute(s) ? s : resolve(base, s);
}

function tls(base: string, key: string, v: unknown): TlsFiles | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isRecord(v)) throw bad(key, "must be a map with ca, cert and key");
  unknownKeys(key, v, new Set(["ca", "cert", "key"]));
  const out: TlsFiles = {};
  const ca = pathIn(base, `${key}.ca`, v.ca);
  const cert = pathIn(base, `${key}.cert`, v.cert);
  const k = pathIn(base, `${key}.key`, v.key);
  if ((cert === undefined) !== (k === undefined)) throw bad(key, "cert and key go together");
  if (ca !== undefined) out.ca = ca;
  if (cert !== undefined) out.cert = cert;
  if (k !== undefined) out.key = k;
  return out;
}

function choria(base: string, key: string, v: unknown): ChoriaCredential | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isRecord(v)) throw bad(key, "must be a map with seed_file, jwt_file and collective");
  unknownKeys(key, v, new Set(["seed_file", "jwt_file", "collective"]));
  const seed = pathIn(base, `${key}.seed_file`, v.seed_file);
  const jwt = pathIn(base, `${key}.jwt_file`, v.jwt_file);
  if (seed === undefined || jwt === undefined) throw bad(key, "needs both seed_file and jwt_file");
  return {
    seed_file: seed,
    jwt_file: jwt,
    collective: str(`${key}.collective`, v.collective, NAME) ?? "choria",
  };
}

/**
 * A NATS URL list with Choria's options in the query: `credentials=` (a .creds file) and
 * `connect_timeout=`; the others Choria takes (jwt, nkey, tls_handshake_first, insecure)
 * are refused rather than silently ignored.
 */
function endpoint(
  base: string,
  key: string,
  v: unknown,
  t: TlsFiles | undefined,
  c: ChoriaCredential | undefined,
): Endpoint {
  const url = str(key, v);
  if (url === undefined) throw bad(key, "is required (nats://host:port or tls://host:port, comma separated)");
  const [list, query] = url.split("?", 2) as [string, string | undefined];
  const servers = list
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  for (const s of servers)
    if (!/^(nats|tls):\/\/[^\s/?]+$/.test(s) && !/^[^\s/:?]+:\d+$/.test(s))
      throw bad(key, `"${s}" is not a nats:// or tls:// URL or host:port`);
  if (servers.length === 0) throw bad(key, "names no server");
  const out: Endpoint = { url, servers };
  if (query !== undefined) {
    for (const [k, val] of new URLSearchParams(query)) {
      if (k === "credentials") out.credentials = isAbsolute(val) ? val : resolve(base, val);
      else if (k === "connect_timeout") {
        const ms = parseDuration(val, "s");
        if (ms === undefined) throw bad(key, `connect_timeout=${val} is not a duration`);
        out.connectTimeoutMs = ms;
      } else throw bad(key, `URL option ${k} is not supported (credentials and connect_timeout are)`);
    }
  }
  if (t !== undefined) out.tls = t;
  if (c !== undefined) out.choria = c;
  return out;
}

function headerMap(key: string, v: unknown): Record<string, string> {
  if (v === undefined || v === null) return {};
  if (!isRecord(v) || Object.values(v).some((x) => typeof x !== "string"))
    throw bad(key, "must be a map of header names to string values");
  return v as Record<string, string>;
}

function startAt(key: string, s: Record<string, unknown>): StartAt {
  const given: StartAt[] = [];
  const seq = int(`${key}.start_sequence`, s.start_sequence, 1, Number.MAX_SAFE_INTEGER);
  if (seq !== undefined) given.push({ kind: "sequence", seq });
  const time = str(
    `${key}.start_time`,
    s.start_time instanceof Date ? s.start_time.toISOString() : s.start_time,
  );
  if (time !== undefined) {
    const d = new Date(time);
    if (Number.isNaN(d.getTime())) throw bad(`${key}.start_time`, `"${time}" is not an RFC 3339 time`);
    given.push({ kind: "time", time: d });
  }
  const delta = duration(`${key}.start_delta`, s.start_delta);
  if (delta !== undefined) given.push({ kind: "delta", ms: delta });
  if (bool(`${key}.start_at_end`, s.start_at_end)) given.push({ kind: "end" });
  if (given.length > 1)
    throw bad(key, "only one of start_sequence, start_time, start_delta and start_at_end may be set");
  return given[0] ?? { kind: "all" };
}

function parallel(key: string, v: unknown): ParallelKey | undefined {
  if (v === undefined || v === null || v === false) return undefined;
  if (!isRecord(v)) throw bad(key, "must be a map with subject_token or header, and workers");
  unknownKeys(key, v, new Set(["subject_token", "header", "workers"]));
  const token = v.subject_token;
  if (token !== undefined && token !== -1 && int(`${key}.subject_token`, token, 1, 64) === undefined)
    throw bad(`${key}.subject_token`, "must be -1 (the whole subject) or a token number from 1");
  const header = str(`${key}.header`, v.header);
  if ((token === undefined) === (header === undefined))
    throw bad(key, "needs exactly one of subject_token and header: the key that keeps order");
  return {
    ...(token !== undefined && { subjectToken: token as number }),
    ...(header !== undefined && { header }),
    workers: int(`${key}.workers`, v.workers, 1, 10_000) ?? 256,
  };
}

function streamConfig(
  base: string,
  i: number,
  raw: unknown,
  top: { tls?: TlsFiles | undefined; choria?: ChoriaCredential | undefined; stateStore?: string | undefined },
): StreamConfig {
  const key = `streams[${i}]`;
  if (!isRecord(raw)) throw bad(key, "must be a map of stream settings");
  unknownKeys(key, raw, STREAM_KEYS);
  const stream = str(`${key}.stream`, raw.stream, NAME, "a stream name");
  if (stream === undefined) throw bad(`${key}.stream`, "is required: the source stream's name");
  const name = str(`${key}.name`, raw.name, NAME, "letters, digits, _ and -") ?? stream.toLowerCase();
  const shared = {
    t: tls(base, `${key}.tls`, raw.tls) ?? top.tls,
    c: choria(base, `${key}.choria`, raw.choria) ?? top.choria,
  };
  const source = endpoint(
    base,
    `${key}.source_url`,
    raw.source_url,
    tls(base, `${key}.source_tls`, raw.source_tls) ?? shared.t,
    choria(base, `${key}.source_choria`, raw.source_choria) ?? shared.c,
  );
  const target = endpoint(
    base,
    `${key}.target_url`,
    raw.target_url,
    tls(base, `${key}.target_tls`, raw.target_tls) ?? shared.t,
    choria(base, `${key}.target_choria`, raw.target_choria) ?? shared.c,
  );
  const targetInitiated = bool(`${key}.target_initiated`, raw.target_initiated);
  const filter = str(`${key}.filter_subject`, raw.filter_subject, FILTER);
  const sampling: SamplingConfig | undefined = (() => {
    const field = str(`${key}.inspect_field`, raw.inspect_field);
    const force = str(`${key}.inspect_force_field`, raw.inspect_force_field);
    const header = str(`${key}.inspect_header`, raw.inspect_header);
    const tok = raw.inspect_subject_token;
    if (
      tok !== undefined &&
      tok !== 0 &&
      tok !== -1 &&
      int(`${key}.inspect_subject_token`, tok, 1, 64) === undefined
    )
      throw bad(`${key}.inspect_subject_token`, "must be -1 (whole subject), 0 (off) or a token number");
    const token = tok === undefined || tok === 0 ? undefined : (tok as number);
    const sources = [field, header, token].filter((x) => x !== undefined).length;
    const inspect = duration(`${key}.inspect_duration`, raw.inspect_duration);
    if (sources === 0) {
      if (inspect !== undefined || force !== undefined)
        throw bad(
          key,
          "inspect_duration and inspect_force_field need inspect_field, inspect_header or inspect_subject_token",
        );
      return undefined;
    }
    if (sources > 1)
      throw bad(key, "only one of inspect_field, inspect_header and inspect_subject_token may be set");
    if (force !== undefined && field === undefined)
      throw bad(`${key}.inspect_force_field`, "needs inspect_field");
    if (inspect === undefined)
      throw bad(`${key}.inspect_duration`, "is required when sampling (inspect_*) is set");
    const warn = duration(`${key}.warn_duration`, raw.warn_duration) ?? inspect / 2;
    if (warn >= inspect) throw bad(`${key}.warn_duration`, "must be shorter than inspect_duration");
    const size = raw.size_trigger;
    if (size !== undefined && (typeof size !== "number" || size < 0))
      throw bad(`${key}.size_trigger`, "must be a number of bytes");
    return {
      ...(field !== undefined && { inspect_field: field }),
      ...(force !== undefined && { inspect_force_field: force }),
      ...(header !== undefined && { inspect_header: header }),
      ...(token !== undefined && { inspect_subject_token: token }),
      inspectDurationMs: inspect,
      warnDurationMs: warn,
      ...(typeof size === "number" && size > 0 && { size_trigger: size }),
    };
  })();
  const maxAgeMs = duration(`${key}.max_age`, raw.max_age);
  const par = parallel(`${key}.parallel`, raw.parallel);
  if (targetInitiated) {
    // the resume point is read back from the target: it must be one ordered sequence
    if (filter === undefined) throw bad(`${key}.filter_subject`, "is required with target_initiated");
    if (sampling) throw bad(key, "sampling (inspect_*) cannot be used with target_initiated");
    if (maxAgeMs !== undefined) throw bad(`${key}.max_age`, "cannot be used with target_initiated");
    if (par)
      throw bad(
        `${key}.parallel`,
        "cannot be used with target_initiated (it resumes from the target's last copy)",
      );
  }
  let advisory: StreamConfig["advisory"];
  if (raw.advisory !== undefined && raw.advisory !== null) {
    const a = raw.advisory;
    if (!isRecord(a)) throw bad(`${key}.advisory`, "must be a map with subject and reliable");
    unknownKeys(`${key}.advisory`, a, new Set(["subject", "reliable"]));
    const subject = str(`${key}.advisory.subject`, a.subject, /^[^\s]+$/);
    if (subject === undefined) throw bad(`${key}.advisory.subject`, "is required");
    if (!sampling)
      throw bad(`${key}.advisory`, "needs sampling (inspect_*): advisories are about sampled values");
    advisory = { subject, reliable: bool(`${key}.advisory.reliable`, a.reliable) };
  }
  const targetStream = str(`${key}.target_stream`, raw.target_stream, NAME) ?? stream;
  const prefix = str(`${key}.target_subject_prefix`, raw.target_subject_prefix, SUBJECT, "a subject prefix");
  const remove = str(`${key}.target_subject_remove`, raw.target_subject_remove);
  const election = str(`${key}.leader_election_name`, raw.leader_election_name, /^[-/_=.a-zA-Z0-9]+$/);
  return {
    name,
    stream,
    target_stream: targetStream,
    ...(filter !== undefined && { filter_subject: filter }),
    ...(prefix !== undefined && { target_subject_prefix: prefix }),
    ...(remove !== undefined && { target_subject_remove: remove }),
    source,
    target,
    no_target_create: bool(`${key}.no_target_create`, raw.no_target_create),
    ephemeral: bool(`${key}.ephemeral`, raw.ephemeral),
    target_initiated: targetInitiated,
    start: startAt(key, raw),
    ...(maxAgeMs !== undefined && { maxAgeMs }),
    ...(par && { parallel: par }),
    ...(sampling && { sampling }),
    ...(election !== undefined && { leader_election_name: election }),
    ...(advisory && { advisory }),
    batch: int(`${key}.batch`, raw.batch, 1, 100_000) ?? (par ? Math.max(1000, par.workers * 4) : 100),
    ...(top.stateStore !== undefined &&
      sampling && { stateFile: resolve(top.stateStore, `${stream}_${name}.json`) }),
  };
}

function heartbeats(
  base: string,
  v: unknown,
  top: { tls?: TlsFiles | undefined; choria?: ChoriaCredential | undefined },
): HeartbeatConfig | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isRecord(v)) throw bad("heartbeats", "must be a map with url, interval and subjects");
  unknownKeys("heartbeats", v, HB_KEYS);
  const intervalMs = duration("heartbeats.interval", v.interval) ?? 10_000;
  const subjectsRaw = v.subjects ?? [];
  if (!Array.isArray(subjectsRaw) || subjectsRaw.length === 0)
    throw bad("heartbeats.subjects", "must list at least one {subject, interval, headers}");
  const subjects = subjectsRaw.map((s, i): HeartbeatSubject => {
    const k = `heartbeats.subjects[${i}]`;
    if (!isRecord(s)) throw bad(k, "must be a map with subject, interval and headers");
    unknownKeys(k, s, new Set(["subject", "interval", "headers"]));
    const subject = str(`${k}.subject`, s.subject, SUBJECT, "a subject without wildcards");
    if (subject === undefined) throw bad(`${k}.subject`, "is required");
    return {
      subject,
      intervalMs: duration(`${k}.interval`, s.interval) ?? intervalMs,
      headers: headerMap(`${k}.headers`, s.headers),
    };
  });
  return {
    target: endpoint(
      base,
      "heartbeats.url",
      v.url,
      tls(base, "heartbeats.tls", v.tls) ?? top.tls,
      choria(base, "heartbeats.choria", v.choria) ?? top.choria,
    ),
    intervalMs,
    leader_election: bool("heartbeats.leader_election", v.leader_election),
    headers: headerMap("heartbeats.headers", v.headers),
    subjects,
  };
}

/** Checks a parsed YAML/JSON document; `file` resolves relative paths. */
export function parseReplicatorConfig(doc: unknown, file: string): ReplicatorConfig {
  if (!isRecord(doc)) throw bad("(top level)", "must be a map of settings");
  unknownKeys("", doc, TOP_KEYS);
  const base = dirname(resolve(file));
  const name = str(
    "name",
    doc.name,
    NAME,
    "letters, digits, _ and - (it names headers, consumers and metrics)",
  );
  if (name === undefined) throw bad("name", "is required: the replicator's name");
  // Choria turns pprof on by default; Chorus exposes no profiler (use node --cpu-prof).
  if (doc.profiling === true) throw bad("profiling", "is not supported: run node with --cpu-prof to profile");
  const loglevel = doc.loglevel ?? "info";
  if (typeof loglevel !== "string" || !LEVELS.includes(loglevel))
    throw bad("loglevel", `must be one of ${LEVELS.join(", ")}`);
  const port = int("monitor_port", doc.monitor_port, 0, 65535);
  const stateStore = pathIn(base, "state_store", doc.state_store);
  const top = { tls: tls(base, "tls", doc.tls), choria: choria(base, "choria", doc.choria), stateStore };
  const list = doc.streams;
  if (!Array.isArray(list) || list.length === 0)
    throw bad("streams", "must list at least one stream to copy");
  const streams = list.map((s, i) => streamConfig(base, i, s, top));
  const names = new Set<string>();
  for (const s of streams) {
    if (names.has(s.name)) throw bad("streams", `two streams are named ${s.name}: give each a unique name`);
    names.add(s.name);
  }
  const logfile = pathIn(base, "logfile", doc.logfile);
  const hb = heartbeats(base, doc.heartbeats, top);
  return {
    file,
    name,
    streams,
    loglevel,
    ...(stateStore !== undefined && { state_store: stateStore }),
    ...(port !== undefined && { monitor_port: port }),
    ...(logfile !== undefined && { logfile }),
    ...(hb && { heartbeats: hb }),
  };
}

/** Reads a replicator config file (YAML or JSON). */
export function loadReplicatorConfig(path: string): ReplicatorConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ReplicatorError("config", `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new ReplicatorError("config", `${path} is not YAML: ${(err as Error).message}`, { cause: err });
  }
  return parseReplicatorConfig(doc, path);
}

/** The instance's default candidate name in elections: host and process. */
export function defaultCandidate(): string {
  return `${hostname()}-${process.pid}`;
}
