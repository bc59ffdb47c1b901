import { hostname, userInfo } from "node:os";
import type { KvEntry } from "@nats-io/kv";
import { sleep } from "../../core/util/index.js";
import { StreamsError, acquireGovernorSlot, governorEntries, governorInfo } from "../streams/index.js";
import { KvStore, type DataDeps } from "./data.js";
import { PlaybookError } from "./errors.js";
import type { DataStore, Playbook, PlaybookEvent } from "./types.js";

/** How long a KV lock outlives its last refresh: a run that dies frees it after this. */
export const LOCK_TTL_MS = 30_000;
/** Choria's collective, for governors when none is given. */
const DEFAULT_COLLECTIVE = "mcollective";

export interface LockDeps extends DataDeps {
  /** who holds the lock (default user@host) */
  owner?: string;
  /** how long to wait for a lock someone else holds (default 0: fail at once) */
  waitMs?: number;
  /** KV lock lifetime without a refresh; refreshed every third of it while held */
  ttlMs?: number;
  /** the collective governors live in (default mcollective) */
  collective?: string;
  /** ends a wait early */
  signal?: AbortSignal;
}

/** What a KV lock key holds: who has it, so the one who waits can be told. */
export interface LockRecord {
  owner: string;
  host: string;
  pid: number;
  playbook: string;
  /** when it was taken (ISO) */
  time: string;
  /** the holder's TTL: a contender uses it, not its own */
  ttl_ms: number;
}

/** The KV key of a lock: `store` locks the playbook's name (Choria's consul path), `store/path` the path. */
export function lockKey(lock: string, playbook: string): { store: string; key: string } {
  const slash = lock.indexOf("/");
  if (slash < 0) return { store: lock, key: `choria/locks/playbook/${playbook}` };
  return { store: lock.slice(0, slash), key: lock.slice(slash + 1) };
}

const KEY_RE = /^[-/_=a-zA-Z0-9]+(\.[-/_=a-zA-Z0-9]+)*$/;

function holderText(r: Partial<LockRecord> | undefined, fallback: string): string {
  if (!r?.owner) return fallback;
  return `${r.owner}${r.host ? ` on ${r.host}` : ""}${r.pid ? ` (pid ${r.pid})` : ""}${r.time ? ` since ${r.time}` : ""}`;
}

function parseRecord(e: KvEntry): Partial<LockRecord> | undefined {
  try {
    const v = JSON.parse(e.string()) as unknown;
    return v && typeof v === "object" ? (v as Partial<LockRecord>) : undefined;
  } catch {
    return undefined;
  }
}

const isConflict = (err: unknown): boolean =>
  /wrong last sequence|key exists|expected last/i.test((err as Error)?.message ?? "");

interface Held {
  lock: string;
  release(): Promise<void>;
}

/**
 * A lock as a KV key. Taking it is an atomic create; the holder rewrites it (a
 * compare-and-set on its revision) every ttl/3. The key carries no server-side TTL:
 * the lock lives in the store's own bucket, whose data must not expire, and
 * nats-server before 2.11 has no per-key TTL. Instead a contender treats a key whose
 * last write is older than the holder's TTL as abandoned (its holder died) and takes
 * it over with a compare-and-set on that revision, so of several contenders exactly
 * one wins. Staleness is judged two ways: by the server's timestamp of the last write
 * (hosts' clocks within a few seconds of the broker's, as NTP gives), and, for a
 * contender that waits, by seeing the revision unchanged for a whole TTL on its own
 * clock, which needs no clock agreement at all.
 */
async function takeKvLock(
  lock: string,
  store: KvStore,
  key: string,
  pb: Playbook,
  deps: LockDeps,
  emit: (e: PlaybookEvent) => void,
): Promise<Held> {
  if (!KEY_RE.test(key)) {
    throw new PlaybookError(
      "bad_playbook",
      `lock ${lock}: "${key}" is not a valid KV key (letters, digits, - / _ = and .)`,
    );
  }
  const kv = store.kv;
  const ttlMs = deps.ttlMs ?? LOCK_TTL_MS;
  const waitMs = deps.waitMs ?? 0;
  const deadline = Date.now() + waitMs;
  // `time` is when the lock was taken: refreshes keep it
  let since = "";
  const record = (): string =>
    JSON.stringify({
      owner: deps.owner ?? defaultOwner(),
      host: hostname(),
      pid: process.pid,
      playbook: pb.metadata.name,
      time: since,
      ttl_ms: ttlMs,
    } satisfies LockRecord);

  let rev: number | undefined;
  let waiting = false;
  // the revision seen, and when (our clock) it was first seen
  let seen: { revision: number; at: number } | undefined;
  let pause = 100;
  while (rev === undefined) {
    if (deps.signal?.aborted)
      throw new PlaybookError("locked", `lock ${lock}: gave up waiting (interrupted)`);
    try {
      since = new Date().toISOString();
      rev = await kv.create(key, record());
      break;
    } catch (err) {
      if (!isConflict(err)) {
        throw new PlaybookError(
          "locked",
          `lock ${lock}: cannot take ${key} in bucket ${store.bucket}: ${(err as Error).message}`,
          {
            cause: err,
          },
        );
      }
    }
    const e = await kv.get(key).catch(() => null);
    if (!e || e.operation !== "PUT") continue; // released meanwhile: try again at once
    const r = parseRecord(e);
    const theirTtl = typeof r?.ttl_ms === "number" && r.ttl_ms > 0 ? r.ttl_ms : ttlMs;
    if (seen?.revision !== e.revision) seen = { revision: e.revision, at: Date.now() };
    const stale = Date.now() - e.created.getTime() > theirTtl || Date.now() - seen.at > theirTtl;
    if (stale) {
      try {
        since = new Date().toISOString();
        rev = await kv.update(key, record(), e.revision);
        emit({
          kind: "log",
          entry: {
            time: new Date().toISOString(),
            level: "warn",
            from: "locks",
            msg: `lock ${lock}: took over from ${holderText(r, "an unknown holder")}, whose lock was not refreshed for ${Math.round(theirTtl / 1000)}s`,
          },
        });
        break;
      } catch (err) {
        if (!isConflict(err))
          throw new PlaybookError("locked", `lock ${lock}: ${(err as Error).message}`, { cause: err });
        continue; // another contender took it first
      }
    }
    const left = deadline - Date.now();
    if (left <= 0) {
      throw new PlaybookError(
        "locked",
        `lock ${lock} is held by ${holderText(r, "another run")}${waitMs > 0 ? ` (waited ${Number((waitMs / 1000).toFixed(1))}s)` : ""}`,
      );
    }
    if (!waiting) {
      waiting = true;
      emit({ kind: "lock", lock, state: "waiting" });
    }
    await sleep(Math.min(pause, left), deps.signal);
    pause = Math.min(pause * 2, 1000);
  }

  let current = rev;
  let lost = false;
  // one refresh at a time: two with the same revision would make the second look like a loss
  let inflight: Promise<void> | undefined;
  const refresh = setInterval(
    () => {
      if (lost || inflight) return;
      inflight = kv
        .update(key, record(), current)
        .then(
          (r) => {
            current = r;
          },
          (err: unknown) => {
            if (!isConflict(err)) return; // the broker is away: try again next time
            lost = true;
            clearInterval(refresh);
            emit({
              kind: "log",
              entry: {
                time: new Date().toISOString(),
                level: "error",
                from: "locks",
                msg: `lock ${lock}: lost, another run took it over (this run could not refresh it for ${Math.round(ttlMs / 1000)}s)`,
              },
            });
          },
        )
        .finally(() => {
          inflight = undefined;
        });
    },
    Math.max(50, Math.floor(ttlMs / 3)),
  );
  // a lock must not keep the process alive on its own
  refresh.unref();
  return {
    lock,
    async release() {
      clearInterval(refresh);
      // a refresh landing after the delete would bring the lock back until its TTL ran out
      await inflight;
      if (lost) return;
      try {
        // only our own revision: a run that took it over keeps it
        await kv.delete(key, { previousSeq: current });
      } catch (err) {
        if (!isConflict(err)) throw err;
      }
    },
  };
}

async function takeGovernor(
  name: string,
  lock: string,
  deps: LockDeps,
  emit: (e: PlaybookEvent) => void,
): Promise<Held> {
  if (!deps.nc)
    throw new PlaybookError("locked", `lock ${lock}: a governor needs a connection to the broker`);
  const nc = deps.nc;
  const waitMs = deps.waitMs ?? 0;
  let waitingSent = false;
  if (waitMs > 0) {
    // full now: the run will wait for a slot, and the view should say so
    const info = await governorInfo(nc, name).catch(() => undefined);
    if (info && info.active >= info.capacity) {
      waitingSent = true;
      emit({ kind: "lock", lock, state: "waiting" });
    }
  }
  try {
    const slot = await acquireGovernorSlot(nc, name, {
      collective: deps.collective ?? DEFAULT_COLLECTIVE,
      holder: deps.owner ?? defaultOwner(),
      timeoutMs: waitMs,
      ...(deps.signal && { signal: deps.signal }),
    });
    return { lock, release: () => slot.release() };
  } catch (err) {
    if (err instanceof StreamsError && err.code === "timeout") {
      const [info, holders] = await Promise.all([
        governorInfo(nc, name).catch(() => undefined),
        governorEntries(nc, name).catch(() => []),
      ]);
      const cap = info ? ` (all ${info.capacity} slots taken)` : "";
      const who = holders.length > 0 ? `: held by ${holders.map((h) => h.holder).join(", ")}` : "";
      throw new PlaybookError("locked", `lock ${lock}: governor ${name} is full${cap}${who}`, { cause: err });
    }
    if (err instanceof StreamsError && err.code === "no_governor") {
      throw new PlaybookError(
        "locked",
        `lock ${lock}: governor ${name} does not exist (chorus governor add ${name} ...)`,
        {
          cause: err,
        },
      );
    }
    const msg = err instanceof Error ? err.message : String(err);
    throw new PlaybookError("locked", `lock ${lock}: ${waitingSent ? "gave up: " : ""}${msg}`, {
      cause: err,
    });
  }
}

/** `user@host`, what a lock says about who holds it. */
export function defaultOwner(): string {
  let user = "unknown";
  try {
    user = userInfo().username;
  } catch {
    // no passwd entry (containers)
  }
  return `${user}@${hostname()}`;
}

/**
 * Takes every lock of the playbook in order, before any task runs: a KV key on a `kv`
 * store, or a slot of a Streams governor (`governor:NAME`). Another holder makes it
 * wait up to `waitMs`, then fail with PlaybookError("locked") naming the lock and its
 * holder; locks taken so far are given back. Memory, file, environment and shell
 * stores cannot lock across runs and are refused. Returns the release function
 * (idempotent; releases in reverse order).
 */
export async function takeLocks(
  pb: Playbook,
  stores: Record<string, DataStore>,
  deps: LockDeps = {},
  onEvent?: (e: PlaybookEvent) => void,
): Promise<() => Promise<void>> {
  const emit = (e: PlaybookEvent): void => onEvent?.(e);
  const held: Held[] = [];
  const releaseAll = async (): Promise<void> => {
    const errors: string[] = [];
    while (held.length > 0) {
      const h = held.pop() as Held;
      try {
        await h.release();
        emit({ kind: "lock", lock: h.lock, state: "released" });
      } catch (err) {
        errors.push(`${h.lock}: ${(err as Error).message}`);
      }
    }
    if (errors.length > 0) throw new PlaybookError("locked", `could not release ${errors.join("; ")}`);
  };
  try {
    for (const lock of pb.locks) {
      let h: Held;
      if (lock.startsWith("governor:")) {
        h = await takeGovernor(lock.slice("governor:".length), lock, deps, emit);
      } else {
        const { store: storeName, key } = lockKey(lock, pb.metadata.name);
        const store = stores[storeName];
        if (!store) {
          throw new PlaybookError("bad_playbook", `lock ${lock}: there is no data store named ${storeName}`);
        }
        if (!(store instanceof KvStore)) {
          throw new PlaybookError(
            "bad_playbook",
            `lock ${lock}: data store ${storeName} is a ${store.type} store, which cannot lock across runs: lock on a kv store (Choria Streams) or a governor:NAME`,
          );
        }
        h = await takeKvLock(lock, store, key, pb, deps, emit);
      }
      held.push(h);
      emit({ kind: "lock", lock, state: "held" });
    }
  } catch (err) {
    await releaseAll().catch(() => {});
    throw err;
  }
  let done: Promise<void> | undefined;
  return () => (done ??= releaseAll());
}
