import { randomBytes } from "node:crypto";
import type { NatsConnection } from "../../core/connector/index.js";
import type { BadMessageReason, FederationPath, PathCounts } from "./metrics.js";

/** The protocol name in every stats answer. */
export const FEDERATION_STATS_PROTOCOL = "chorus:federation:stats:1";

/**
 * `choria.federation.<cluster>.stats` on the federation network: every instance of the
 * cluster's federation broker answers a message here (no queue group) with its
 * FederationStats, to the message's reply subject when that is a reply inbox.
 */
export function federationStatsSubject(cluster: string): string {
  return `choria.federation.${cluster}.stats`;
}

/** One federation broker instance's answer on the stats subject. */
export interface FederationStats {
  protocol: typeof FEDERATION_STATS_PROTOCOL;
  cluster: string;
  identity: string;
  /** random per start: tells apart instances that share an identity */
  instance: string;
  /** ISO time the instance started, and of this answer */
  started: string;
  time: string;
  workers: number;
  /** federation network → collective (requests) */
  request: PathCounts;
  /** collective → federation network (replies) */
  reply: PathCounts;
}

/** A new instance id (8 hex digits). */
export function newInstanceId(): string {
  return randomBytes(4).toString("hex");
}

const REASONS: readonly BadMessageReason[] = [
  "malformed",
  "not_federated",
  "no_targets",
  "bad_target",
  "no_reply",
  "bad_reply",
  "publish",
];

function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isInteger(v) && v >= 0;
}

function pathCounts(v: unknown, path: FederationPath): PathCounts {
  const o = (v ?? {}) as Record<string, unknown>;
  if (typeof v !== "object" || v === null) throw new Error(`${path}: not an object`);
  for (const k of ["received", "published", "errors"] as const)
    if (!isCount(o[k])) throw new Error(`${path}.${k}: not a count`);
  const bad: PathCounts["bad"] = {};
  const b = (o.bad ?? {}) as Record<string, unknown>;
  if (typeof b !== "object" || b === null) throw new Error(`${path}.bad: not an object`);
  for (const [k, n] of Object.entries(b)) {
    if (!REASONS.includes(k as BadMessageReason)) continue;
    if (!isCount(n)) throw new Error(`${path}.bad.${k}: not a count`);
    bad[k as BadMessageReason] = n;
  }
  return {
    received: o.received as number,
    published: o.published as number,
    errors: o.errors as number,
    bad,
  };
}

/** Checks one stats answer; throws naming the field at fault. */
export function parseFederationStats(data: Uint8Array): FederationStats {
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(data).toString("utf8"));
  } catch {
    throw new Error("not JSON");
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) throw new Error("not a JSON object");
  const o = doc as Record<string, unknown>;
  if (o.protocol !== FEDERATION_STATS_PROTOCOL) throw new Error(`protocol: not ${FEDERATION_STATS_PROTOCOL}`);
  for (const k of ["cluster", "identity", "instance", "started", "time"] as const)
    if (typeof o[k] !== "string" || o[k] === "") throw new Error(`${k}: not a string`);
  if (!isCount(o.workers)) throw new Error("workers: not a count");
  return {
    protocol: FEDERATION_STATS_PROTOCOL,
    cluster: o.cluster as string,
    identity: o.identity as string,
    instance: o.instance as string,
    started: o.started as string,
    time: o.time as string,
    workers: o.workers,
    request: pathCounts(o.request, "request"),
    reply: pathCounts(o.reply, "reply"),
  };
}

export interface CollectStatsOptions {
  /** the clusters to ask */
  clusters: readonly string[];
  /** a reply subject this connection may subscribe to and the brokers will answer to (a reply inbox) */
  inbox: string;
  /** how long answers are collected (default 500 ms) */
  waitMs?: number;
}

/** What one round of asking produced: the answers (sorted) and how many were unreadable. */
export interface CollectedStats {
  brokers: FederationStats[];
  malformed: number;
}

/**
 * Asks every instance of the clusters' federation brokers for their counts: one
 * message to each cluster's stats subject, answers collected on `inbox` for `waitMs`.
 * Sorted by cluster, identity, instance.
 */
export async function collectFederationStats(
  nc: NatsConnection,
  o: CollectStatsOptions,
): Promise<CollectedStats> {
  const brokers: FederationStats[] = [];
  let malformed = 0;
  const sub = nc.subscribe(o.inbox, {
    callback: (err, msg) => {
      if (err) return;
      try {
        brokers.push(parseFederationStats(msg.data));
      } catch {
        malformed++;
      }
    },
  });
  try {
    await nc.flush();
    for (const c of o.clusters) nc.publish(federationStatsSubject(c), new Uint8Array(0), { reply: o.inbox });
    await nc.flush();
    await new Promise((r) => setTimeout(r, o.waitMs ?? 500));
  } finally {
    sub.unsubscribe();
  }
  brokers.sort(
    (a, b) =>
      a.cluster.localeCompare(b.cluster) ||
      a.identity.localeCompare(b.identity) ||
      a.instance.localeCompare(b.instance),
  );
  return { brokers, malformed };
}
