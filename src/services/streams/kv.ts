import {
  jetstream,
  jetstreamManager,
  type JetStreamManager,
  type StreamConfig,
  type StreamInfo,
} from "@nats-io/jetstream";
import { Kvm, type KV, type KvEntry } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { StreamsError } from "./errors.js";
import { nanos } from "./managed.js";

/** Choria's `choria kv add` defaults. */
export const KV_DEFAULTS = {
  history: 5,
  replicas: 1,
  maxValueSize: 10_240,
  duplicateWindowMs: 120_000,
} as const;

export interface BucketOptions {
  /** values kept per key (1..64) */
  history?: number;
  replicas?: number;
  /** largest value in bytes; -1 = unlimited */
  maxValueSize?: number;
  /** whole-bucket size limit in bytes; -1 = unlimited */
  maxBytes?: number;
  /** expire values after this long; 0 = never */
  ttlMs?: number;
  description?: string;
}

const BUCKET_RE = /^[a-zA-Z0-9_-]+$/;
// JetStream keeps at most 64 messages per subject in a KV.
const MAX_HISTORY = 64;

export function validateBucketName(name: string): void {
  if (!BUCKET_RE.test(name)) {
    throw new StreamsError("bad_bucket", `invalid bucket name "${name}": use letters, digits, _ and -`);
  }
}

/**
 * The stream behind a KV bucket with Choria's settings: file storage, one subject per
 * key holding `history` values, DiscardNew (a full bucket refuses writes instead of
 * silently dropping old keys), rollups for purge, deletes only through markers, and
 * direct gets so reads need no stream leader round trip.
 */
export function kvStreamConfig(
  bucket: string,
  o: BucketOptions = {},
): Partial<StreamConfig> & { name: string } {
  validateBucketName(bucket);
  const history = o.history ?? KV_DEFAULTS.history;
  if (!Number.isInteger(history) || history < 1 || history > MAX_HISTORY) {
    throw new StreamsError("bad_option", `history must be between 1 and ${MAX_HISTORY}, got ${history}`);
  }
  const ttl = o.ttlMs ?? 0;
  if (ttl < 0) throw new StreamsError("bad_option", `ttl must not be negative`);
  // JetStream refuses a duplicate window longer than max_age.
  const dupe = ttl > 0 ? Math.min(ttl, KV_DEFAULTS.duplicateWindowMs) : KV_DEFAULTS.duplicateWindowMs;
  return {
    name: `KV_${bucket}`,
    subjects: [`$KV.${bucket}.>`],
    ...(o.description && { description: o.description }),
    retention: "limits" as StreamConfig["retention"],
    storage: "file" as StreamConfig["storage"],
    discard: "new" as StreamConfig["discard"],
    max_msgs_per_subject: history,
    max_msgs: -1,
    max_bytes: o.maxBytes ?? -1,
    max_msg_size: o.maxValueSize ?? KV_DEFAULTS.maxValueSize,
    max_age: nanos(ttl),
    num_replicas: o.replicas ?? KV_DEFAULTS.replicas,
    duplicate_window: nanos(dupe),
    allow_rollup_hdrs: true,
    deny_delete: true,
    deny_purge: false,
    allow_direct: true,
    mirror_direct: false,
  };
}

/** Connection-level errors (permissions, no JetStream) become StreamsErrors naming the step. */
function wrap(what: string, err: unknown): StreamsError {
  if (err instanceof StreamsError) return err;
  const msg = (err as Error)?.message ?? String(err);
  if (/permissions violation/i.test(msg)) {
    return new StreamsError("denied", `${what}: not permitted by the broker (${msg})`, { cause: err });
  }
  if (/no responders|jetstream not enabled|503/i.test(msg)) {
    return new StreamsError("unavailable", `${what}: JetStream is not available (${msg})`, { cause: err });
  }
  if (/timeout/i.test(msg)) {
    return new StreamsError("timeout", `${what}: timed out (${msg})`, { cause: err });
  }
  return new StreamsError("kv", `${what}: ${msg}`, { cause: err });
}

export function isStreamNotFound(err: unknown): boolean {
  const e = err as { code?: unknown; message?: string; name?: string; api_error?: { err_code?: number } };
  return (
    e?.name === "StreamNotFoundError" ||
    e?.api_error?.err_code === 10059 ||
    /stream not found/i.test(e?.message ?? "")
  );
}

async function manager(nc: NatsConnection): Promise<JetStreamManager> {
  // No $JS.API.INFO probe: users with only election or KV rights may not send it.
  return jetstreamManager(nc, { checkAPI: false, timeout: 5000 });
}

async function bucketInfo(jsm: JetStreamManager, bucket: string): Promise<StreamInfo> {
  validateBucketName(bucket);
  try {
    return await jsm.streams.info(`KV_${bucket}`);
  } catch (err) {
    if (isStreamNotFound(err)) {
      throw new StreamsError("no_bucket", `KV bucket ${bucket} does not exist`, { cause: err });
    }
    throw wrap(`looking up KV bucket ${bucket}`, err);
  }
}

/** Creates a bucket with Choria's defaults; fails when it exists with other settings. */
export async function createBucket(nc: NatsConnection, bucket: string, o: BucketOptions = {}): Promise<KV> {
  const cfg = kvStreamConfig(bucket, o);
  const jsm = await manager(nc);
  try {
    await jsm.streams.add(cfg);
  } catch (err) {
    const msg = (err as Error).message ?? "";
    if (/already in use/i.test(msg)) {
      throw new StreamsError("exists", `KV bucket ${bucket} already exists with different settings`, {
        cause: err,
      });
    }
    throw wrap(`creating KV bucket ${bucket}`, err);
  }
  return openBucket(nc, bucket);
}

/** Opens an existing bucket; a missing one is a StreamsError with code `no_bucket`. */
export async function openBucket(nc: NatsConnection, bucket: string): Promise<KV> {
  const jsm = await manager(nc);
  const info = await bucketInfo(jsm, bucket);
  try {
    // checkAPI off: election-only users may not send $JS.API.INFO
    return await new Kvm(jetstream(nc, { checkAPI: false, timeout: 5000 })).open(bucket, {
      allow_direct: info.config.allow_direct === true,
    });
  } catch (err) {
    throw wrap(`opening KV bucket ${bucket}`, err);
  }
}

export interface BucketSummary {
  bucket: string;
  values: number;
  bytes: number;
  history: number;
  ttlMs: number;
  replicas: number;
  maxValueSize: number;
  maxBytes: number;
  created: string;
}

function summary(si: StreamInfo): BucketSummary {
  const c = si.config;
  return {
    bucket: c.name.replace(/^KV_/, ""),
    values: si.state.messages,
    bytes: si.state.bytes,
    history: c.max_msgs_per_subject,
    ttlMs: Math.round((c.max_age ?? 0) / 1_000_000),
    replicas: c.num_replicas,
    maxValueSize: c.max_msg_size ?? -1,
    maxBytes: c.max_bytes ?? -1,
    created: si.created,
  };
}

export async function bucketStatus(nc: NatsConnection, bucket: string): Promise<BucketSummary> {
  return summary(await bucketInfo(await manager(nc), bucket));
}

/** Every KV bucket (streams named KV_*), sorted by name. */
export async function listBuckets(nc: NatsConnection): Promise<BucketSummary[]> {
  const jsm = await manager(nc);
  const out: BucketSummary[] = [];
  try {
    for await (const si of jsm.streams.list()) {
      if (si.config.name.startsWith("KV_")) out.push(summary(si));
    }
  } catch (err) {
    throw wrap("listing KV buckets", err);
  }
  return out.sort((a, b) => a.bucket.localeCompare(b.bucket));
}

/** Deletes the bucket and all its data. */
export async function removeBucket(nc: NatsConnection, bucket: string): Promise<void> {
  const jsm = await manager(nc);
  await bucketInfo(jsm, bucket);
  try {
    await jsm.streams.delete(`KV_${bucket}`);
  } catch (err) {
    throw wrap(`removing KV bucket ${bucket}`, err);
  }
}

/** Runs a KV operation, turning library errors (bad keys, limits) into StreamsErrors. */
export async function kvOp<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const msg = (err as Error)?.message ?? String(err);
    if (/invalid key/i.test(msg)) throw new StreamsError("bad_key", `${what}: ${msg}`, { cause: err });
    if (/maximum message size|message size exceeds/i.test(msg)) {
      throw new StreamsError("too_large", `${what}: value is larger than the bucket allows`, { cause: err });
    }
    if (/wrong last sequence|key exists/i.test(msg)) {
      throw new StreamsError("conflict", `${what}: the key changed or exists (${msg})`, { cause: err });
    }
    throw wrap(what, err);
  }
}

/** A plain-object view of an entry for printing or JSON output. */
export function entryView(e: KvEntry): {
  key: string;
  revision: number;
  operation: string;
  created: string;
  value: string;
} {
  return {
    key: e.key,
    revision: e.revision,
    operation: e.operation,
    created: e.created.toISOString(),
    value: Buffer.from(e.value).toString("utf8"),
  };
}
