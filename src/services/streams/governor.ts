import { jetstreamManager, type JetStreamManager, type StreamConfig } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { Backoff, sleep } from "../../core/util/index.js";
import { StreamsError } from "./errors.js";
import { isStreamNotFound } from "./kv.js";
import { nanos } from "./managed.js";

/** JetStream's "store failed" code: for a DiscardNew stream at MaxMsgs it means "full". */
export const GOVERNOR_FULL_ERR_CODE = 10077;

export type GovernorEventType = "enter" | "exit" | "timeouts" | "eviction";

export const governorStreamName = (name: string): string => `GOVERNOR_${name}`;
/** `<collective>.governor.<name>`, go-choria's GovernorSubject. */
export const governorSubject = (collective: string, name: string): string => `${collective}.governor.${name}`;
/**
 * The per-period budget lives in a second stream. Its subject is one token under
 * `<collective>.governor.` so the existing `governor` broker permission covers it.
 */
export const governorPeriodStreamName = (name: string): string => `GOVERNOR_${name}_PERIOD`;
export const governorPeriodSubject = (collective: string, name: string): string =>
  `${collective}.governor.${name}_PERIOD`;
/** Marks a period stream, so a governor that happens to be named `X_PERIOD` is not mistaken for one. */
const periodDescription = (name: string): string => `Concurrency Governor ${name} period limit`;

const NAME_RE = /^[a-zA-Z0-9_-]+$/;

export function validateGovernorName(name: string): void {
  if (!NAME_RE.test(name)) {
    throw new StreamsError("bad_governor", `invalid governor name "${name}": use letters, digits, _ and -`);
  }
}

export interface GovernorSettings {
  /** concurrent slots */
  capacity: number;
  /** slots held longer than this are evicted by JetStream (MaxAge) */
  expireMs: number;
  replicas?: number;
  collective: string;
  /** optional: at most `periodLimit` entries per `periodMs` (both or neither) */
  periodMs?: number;
  periodLimit?: number;
}

/**
 * The governor stream: a capped stack of at most `capacity` entries that refuses
 * new ones when full (DiscardNew) and forgets stale ones after `expire`. The
 * duplicate window is 0 so two workers with the same name each get a slot.
 */
export function governorStreamConfig(
  name: string,
  s: GovernorSettings,
): Partial<StreamConfig> & { name: string } {
  validateGovernorName(name);
  if (!Number.isInteger(s.capacity) || s.capacity < 1) {
    throw new StreamsError("bad_option", `governor capacity must be a positive integer, got ${s.capacity}`);
  }
  if (!(s.expireMs > 0)) throw new StreamsError("bad_option", "governor expiry must be positive");
  return {
    name: governorStreamName(name),
    description: `Concurrency Governor ${name}`,
    subjects: [governorSubject(s.collective, name)],
    retention: "limits" as StreamConfig["retention"],
    storage: "file" as StreamConfig["storage"],
    discard: "new" as StreamConfig["discard"],
    max_msgs: s.capacity,
    max_age: nanos(s.expireMs),
    num_replicas: s.replicas ?? 1,
    duplicate_window: 0,
  };
}

/**
 * The period stream: every run appends one entry, JetStream forgets it after the
 * period (MaxAge) and refuses more than `periodLimit` live ones (DiscardNew), so
 * the stream itself is the sliding-window budget shared by all workers.
 */
export function governorPeriodStreamConfig(
  name: string,
  s: GovernorSettings,
): (Partial<StreamConfig> & { name: string }) | undefined {
  validateGovernorName(name);
  if (s.periodMs === undefined && s.periodLimit === undefined) return undefined;
  if (s.periodMs === undefined || s.periodLimit === undefined) {
    throw new StreamsError("bad_option", "a governor period needs both a period and a period limit");
  }
  if (!Number.isInteger(s.periodLimit) || s.periodLimit < 1) {
    throw new StreamsError(
      "bad_option",
      `governor period limit must be a positive integer, got ${s.periodLimit}`,
    );
  }
  if (!(s.periodMs > 0)) throw new StreamsError("bad_option", "governor period must be positive");
  return {
    name: governorPeriodStreamName(name),
    description: periodDescription(name),
    subjects: [governorPeriodSubject(s.collective, name)],
    retention: "limits" as StreamConfig["retention"],
    storage: "file" as StreamConfig["storage"],
    discard: "new" as StreamConfig["discard"],
    max_msgs: s.periodLimit,
    max_age: nanos(s.periodMs),
    num_replicas: s.replicas ?? 1,
    duplicate_window: 0,
  };
}

export interface GovernorInfo {
  name: string;
  capacity: number;
  expireMs: number;
  replicas: number;
  subject: string;
  /** slots in use */
  active: number;
  /** set when the governor has a per-period limit */
  periodMs?: number;
  periodLimit?: number;
  /** entries counted in the current period */
  periodUsed?: number;
}

export interface GovernorEntry {
  seq: number;
  /** who holds the slot (the name the worker campaigned with) */
  holder: string;
  time: string;
}

async function manager(nc: NatsConnection): Promise<JetStreamManager> {
  return jetstreamManager(nc, { checkAPI: false, timeout: 5000 });
}

function failure(what: string, err: unknown): StreamsError {
  if (err instanceof StreamsError) return err;
  const msg = (err as Error)?.message ?? String(err);
  if (/permissions violation/i.test(msg)) {
    return new StreamsError("denied", `${what}: not permitted by the broker (${msg})`, { cause: err });
  }
  return new StreamsError("governor", `${what}: ${msg}`, { cause: err });
}

async function streamInfo(jsm: JetStreamManager, name: string) {
  validateGovernorName(name);
  try {
    return await jsm.streams.info(governorStreamName(name));
  } catch (err) {
    if (isStreamNotFound(err)) {
      throw new StreamsError("no_governor", `governor ${name} does not exist`, { cause: err });
    }
    throw failure(`looking up governor ${name}`, err);
  }
}

/** The period stream of a governor, or undefined when it has no period limit. */
async function periodStreamInfo(jsm: JetStreamManager, name: string) {
  try {
    const si = await jsm.streams.info(governorPeriodStreamName(name));
    return si.config.description === periodDescription(name) ? si : undefined;
  } catch (err) {
    if (isStreamNotFound(err)) return undefined;
    throw failure(`looking up the period of governor ${name}`, err);
  }
}

/**
 * Creates a governor, or updates its capacity, expiry and subject when it exists.
 * The period limit follows the settings too: given, it is created or updated;
 * left out, an existing one is removed.
 */
export async function addGovernor(
  nc: NatsConnection,
  name: string,
  s: GovernorSettings,
): Promise<GovernorInfo> {
  const cfg = governorStreamConfig(name, s);
  const pcfg = governorPeriodStreamConfig(name, s);
  const jsm = await manager(nc);
  const lookup = (stream: string) =>
    jsm.streams.info(stream).catch((err: unknown) => {
      if (isStreamNotFound(err)) return undefined;
      throw err;
    });
  try {
    const have = await lookup(cfg.name);
    if (!have) await jsm.streams.add(cfg);
    else await jsm.streams.update(cfg.name, { ...have.config, ...cfg } as StreamConfig);
    const havePeriod = await lookup(governorPeriodStreamName(name));
    if (havePeriod && havePeriod.config.description !== periodDescription(name)) {
      // another governor is literally named `<name>_PERIOD`: never touch its stream
      if (pcfg) {
        throw new StreamsError(
          "bad_governor",
          `governor ${name} cannot have a period limit: stream ${havePeriod.config.name} belongs to another governor`,
        );
      }
    } else if (pcfg) {
      if (!havePeriod) await jsm.streams.add(pcfg);
      else await jsm.streams.update(pcfg.name, { ...havePeriod.config, ...pcfg } as StreamConfig);
    } else if (havePeriod) {
      await jsm.streams.delete(havePeriod.config.name);
    }
  } catch (err) {
    throw failure(`creating governor ${name}`, err);
  }
  return governorInfo(nc, name);
}

export async function governorInfo(nc: NatsConnection, name: string): Promise<GovernorInfo> {
  const jsm = await manager(nc);
  const si = await streamInfo(jsm, name);
  const pi = await periodStreamInfo(jsm, name);
  return {
    name,
    capacity: si.config.max_msgs,
    expireMs: Math.round(si.config.max_age / 1_000_000),
    replicas: si.config.num_replicas,
    subject: si.config.subjects?.[0] ?? "",
    active: si.state.messages,
    ...(pi && {
      periodMs: Math.round(pi.config.max_age / 1_000_000),
      periodLimit: pi.config.max_msgs,
      periodUsed: pi.state.messages,
    }),
  };
}

/** Governor names known in a collective (streams listening on `<c>.governor.*`). */
export async function listGovernors(nc: NatsConnection, collective: string): Promise<string[]> {
  const jsm = await manager(nc);
  const out: string[] = [];
  try {
    // list (not names) to see descriptions: period streams share the subject space
    for await (const si of jsm.streams.list(governorSubject(collective, "*"))) {
      const n = si.config.name;
      if (!n.startsWith("GOVERNOR_")) continue;
      if (
        si.config.description?.startsWith("Concurrency Governor ") &&
        si.config.description.endsWith(" period limit")
      )
        continue;
      out.push(n.slice("GOVERNOR_".length));
    }
  } catch (err) {
    throw failure("listing governors", err);
  }
  return out.sort();
}

/** Who holds the slots, oldest first. */
export async function governorEntries(nc: NatsConnection, name: string): Promise<GovernorEntry[]> {
  const jsm = await manager(nc);
  const si = await streamInfo(jsm, name);
  const out: GovernorEntry[] = [];
  if (si.state.messages === 0) return out;
  for (let seq = si.state.first_seq; seq <= si.state.last_seq; seq++) {
    // interior sequences are holes where slots were released
    const m = await jsm.streams.getMessage(governorStreamName(name), { seq }).catch(() => null);
    if (m) out.push({ seq, holder: m.string(), time: m.time.toISOString() });
  }
  return out;
}

/** Frees one slot by sequence; returns the holder it belonged to. */
export async function evictGovernorEntry(nc: NatsConnection, name: string, seq: number): Promise<string> {
  const jsm = await manager(nc);
  await streamInfo(jsm, name);
  const stream = governorStreamName(name);
  const m = await jsm.streams.getMessage(stream, { seq }).catch(() => null);
  if (!m) throw new StreamsError("no_entry", `governor ${name} has no entry ${seq}`);
  try {
    await jsm.streams.deleteMessage(stream, seq, false);
  } catch (err) {
    throw failure(`evicting entry ${seq} from governor ${name}`, err);
  }
  return m.string();
}

/** Empties a governor: every slot is free again, and so is the period budget. */
export async function resetGovernor(nc: NatsConnection, name: string): Promise<void> {
  const jsm = await manager(nc);
  await streamInfo(jsm, name);
  const pi = await periodStreamInfo(jsm, name);
  try {
    await jsm.streams.purge(governorStreamName(name));
    if (pi) await jsm.streams.purge(pi.config.name);
  } catch (err) {
    throw failure(`resetting governor ${name}`, err);
  }
}

export async function removeGovernor(nc: NatsConnection, name: string): Promise<void> {
  const jsm = await manager(nc);
  await streamInfo(jsm, name);
  const pi = await periodStreamInfo(jsm, name);
  try {
    await jsm.streams.delete(governorStreamName(name));
    if (pi) await jsm.streams.delete(pi.config.name);
  } catch (err) {
    throw failure(`removing governor ${name}`, err);
  }
}

export interface GovernorSlot {
  name: string;
  seq: number;
  /** gives the slot back (idempotent); the exit event fires here */
  release(): Promise<void>;
}

export interface AcquireOptions {
  collective: string;
  /** recorded as the slot holder */
  holder: string;
  /** give up after this long (default 5 min) */
  timeoutMs?: number;
  /** wait between tries while full (default 250 ms, doubling up to maxIntervalMs) */
  intervalMs?: number;
  maxIntervalMs?: number;
  signal?: AbortSignal;
  /** lifecycle hook: enter / exit / timeouts */
  onEvent?: (type: GovernorEventType, seq: number) => void;
}

interface PubAckReply {
  stream?: string;
  seq?: number;
  error?: { code?: number; err_code?: number; description?: string };
}

/** Publishes one entry as a request and reads the JetStream ack. */
async function publishEntry(nc: NatsConnection, subject: string, holder: string, what: string) {
  try {
    const res = await nc.request(subject, holder, { timeout: 2000 });
    return JSON.parse(res.string()) as PubAckReply;
  } catch (err) {
    throw failure(what, err);
  }
}

/**
 * Campaigns for a slot: publishes the holder name to the governor subject as a
 * request and reads the JetStream ack. A sequence is a slot; error 10077 means the
 * governor is full, so it waits and tries again until `timeoutMs`. Any other
 * failure (including a lost ack, after which the entry may exist) ends the attempt
 * rather than risk filling the governor with entries nobody will release.
 *
 * A governor with a period limit first appends an entry to its period stream the
 * same way; 10077 there means the period's budget is spent, so it waits until the
 * oldest entry ages out. Period entries are never released: they count runs.
 */
export async function acquireGovernorSlot(
  nc: NatsConnection,
  name: string,
  o: AcquireOptions,
): Promise<GovernorSlot> {
  const jsm = await manager(nc);
  await streamInfo(jsm, name);
  const timeoutMs = o.timeoutMs ?? 300_000;
  const deadline = Date.now() + timeoutMs;
  const firstWait = o.intervalMs ?? 250;
  // waits double from intervalMs up to maxIntervalMs
  const retry = { initialMs: firstWait, maxMs: o.maxIntervalMs ?? Math.max(firstWait, 2000) };
  const timedOut = (what: string) => {
    o.onEvent?.("timeouts", 0);
    return new StreamsError("timeout", `${what} on governor ${name} within ${timeoutMs}ms`);
  };

  let periodSeq: number | undefined;
  const period = await periodStreamInfo(jsm, name);
  if (period) {
    const subject = period.config.subjects?.[0] ?? governorPeriodSubject(o.collective, name);
    const backoff = new Backoff(retry);
    for (;;) {
      if (o.signal?.aborted) throw new StreamsError("aborted", `gave up waiting for governor ${name}`);
      const ack = await publishEntry(nc, subject, o.holder, `counting a run on governor ${name}`);
      if (typeof ack.seq === "number" && !ack.error) {
        periodSeq = ack.seq;
        break;
      }
      if (ack.error?.err_code !== GOVERNOR_FULL_ERR_CODE) {
        throw new StreamsError(
          "governor",
          `governor ${name} refused the period entry: ${ack.error?.description ?? "not a JetStream ack"}`,
        );
      }
      // sleep until the oldest entry ages out rather than poll blindly; fall back to backoff
      const si = await jsm.streams.info(period.config.name).catch(() => undefined);
      const first = si?.state.first_ts ? Date.parse(si.state.first_ts) : NaN;
      const until =
        si && Number.isFinite(first)
          ? Math.max(20, first + si.config.max_age / 1_000_000 - Date.now() + 20)
          : backoff.next();
      if (Date.now() + until > deadline) throw timedOut("period limit not lifted");
      await sleep(until, o.signal);
    }
  }
  // a run that never gets a slot gives its period entry back (best effort)
  const dropPeriodEntry = async () => {
    if (periodSeq === undefined) return;
    await jsm.streams.deleteMessage(governorPeriodStreamName(name), periodSeq, false).catch(() => {});
  };

  const subject = governorSubject(o.collective, name);
  const backoff = new Backoff(retry);
  try {
    for (;;) {
      if (o.signal?.aborted) throw new StreamsError("aborted", `gave up waiting for governor ${name}`);
      const ack = await publishEntry(nc, subject, o.holder, `campaigning for a slot on governor ${name}`);
      if (typeof ack.seq === "number" && !ack.error) {
        const seq = ack.seq;
        o.onEvent?.("enter", seq);
        let released = false;
        return {
          name,
          seq,
          release: async () => {
            if (released) return;
            released = true;
            try {
              await jsm.streams.deleteMessage(governorStreamName(name), seq, false);
            } catch (err) {
              // evicted or expired already: the slot is free either way
              if (!/no message found|not found/i.test((err as Error).message ?? "")) {
                throw failure(`releasing slot ${seq} on governor ${name}`, err);
              }
            }
            o.onEvent?.("exit", seq);
          },
        };
      }
      if (ack.error?.err_code !== GOVERNOR_FULL_ERR_CODE) {
        throw new StreamsError(
          "governor",
          `governor ${name} refused the entry: ${ack.error?.description ?? "not a JetStream ack"}`,
        );
      }
      const wait = backoff.next();
      if (Date.now() + wait > deadline) throw timedOut("no free slot");
      await sleep(wait, o.signal);
    }
  } catch (err) {
    await dropPeriodEntry();
    throw err;
  }
}
