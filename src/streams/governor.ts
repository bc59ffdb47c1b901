import { jetstreamManager, type JetStreamManager, type StreamConfig } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { StreamsError } from "./errors.js";
import { isStreamNotFound } from "./kv.js";
import { nanos } from "./managed.js";

/** JetStream's "store failed" code: for a DiscardNew stream at MaxMsgs it means "full". */
export const GOVERNOR_FULL_ERR_CODE = 10077;

export type GovernorEventType = "enter" | "exit" | "timeouts" | "eviction";

export const governorStreamName = (name: string): string => `GOVERNOR_${name}`;
/** `<collective>.governor.<name>`, go-choria's GovernorSubject. */
export const governorSubject = (collective: string, name: string): string => `${collective}.governor.${name}`;

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

export interface GovernorInfo {
  name: string;
  capacity: number;
  expireMs: number;
  replicas: number;
  subject: string;
  /** slots in use */
  active: number;
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

/** Creates a governor, or updates its capacity, expiry and subject when it exists. */
export async function addGovernor(
  nc: NatsConnection,
  name: string,
  s: GovernorSettings,
): Promise<GovernorInfo> {
  const cfg = governorStreamConfig(name, s);
  const jsm = await manager(nc);
  try {
    const have = await jsm.streams.info(cfg.name).catch((err: unknown) => {
      if (isStreamNotFound(err)) return undefined;
      throw err;
    });
    if (!have) await jsm.streams.add(cfg);
    else await jsm.streams.update(cfg.name, { ...have.config, ...cfg } as StreamConfig);
  } catch (err) {
    throw failure(`creating governor ${name}`, err);
  }
  return governorInfo(nc, name);
}

export async function governorInfo(nc: NatsConnection, name: string): Promise<GovernorInfo> {
  const si = await streamInfo(await manager(nc), name);
  return {
    name,
    capacity: si.config.max_msgs,
    expireMs: Math.round(si.config.max_age / 1_000_000),
    replicas: si.config.num_replicas,
    subject: si.config.subjects?.[0] ?? "",
    active: si.state.messages,
  };
}

/** Governor names known in a collective (streams listening on `<c>.governor.*`). */
export async function listGovernors(nc: NatsConnection, collective: string): Promise<string[]> {
  const jsm = await manager(nc);
  const out: string[] = [];
  try {
    for await (const n of jsm.streams.names(governorSubject(collective, "*"))) {
      if (n.startsWith("GOVERNOR_")) out.push(n.slice("GOVERNOR_".length));
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

/** Empties a governor: every slot is free again. */
export async function resetGovernor(nc: NatsConnection, name: string): Promise<void> {
  const jsm = await manager(nc);
  await streamInfo(jsm, name);
  try {
    await jsm.streams.purge(governorStreamName(name));
  } catch (err) {
    throw failure(`resetting governor ${name}`, err);
  }
}

export async function removeGovernor(nc: NatsConnection, name: string): Promise<void> {
  const jsm = await manager(nc);
  await streamInfo(jsm, name);
  try {
    await jsm.streams.delete(governorStreamName(name));
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

/**
 * Campaigns for a slot: publishes the holder name to the governor subject as a
 * request and reads the JetStream ack. A sequence is a slot; error 10077 means the
 * governor is full, so it waits and tries again until `timeoutMs`. Any other
 * failure (including a lost ack, after which the entry may exist) ends the attempt
 * rather than risk filling the governor with entries nobody will release.
 */
export async function acquireGovernorSlot(
  nc: NatsConnection,
  name: string,
  o: AcquireOptions,
): Promise<GovernorSlot> {
  const jsm = await manager(nc);
  await streamInfo(jsm, name);
  const subject = governorSubject(o.collective, name);
  const deadline = Date.now() + (o.timeoutMs ?? 300_000);
  let wait = o.intervalMs ?? 250;
  const maxWait = o.maxIntervalMs ?? Math.max(wait, 2000);
  for (;;) {
    if (o.signal?.aborted) throw new StreamsError("aborted", `gave up waiting for governor ${name}`);
    let ack: PubAckReply;
    try {
      const res = await nc.request(subject, o.holder, { timeout: 2000 });
      ack = JSON.parse(res.string()) as PubAckReply;
    } catch (err) {
      throw failure(`campaigning for a slot on governor ${name}`, err);
    }
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
    if (Date.now() + wait > deadline) {
      o.onEvent?.("timeouts", 0);
      throw new StreamsError(
        "timeout",
        `no free slot on governor ${name} within ${o.timeoutMs ?? 300_000}ms`,
      );
    }
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, wait);
      o.signal?.addEventListener("abort", () => {
        clearTimeout(t);
        resolve();
      });
    });
    wait = Math.min(maxWait, wait * 2);
  }
}
