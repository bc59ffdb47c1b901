import { jetstreamManager, type JetStreamManager, type StreamConfig } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { StreamsError } from "./errors.js";

const HOUR = 3_600_000;

/** JetStream durations are nanoseconds. */
export const nanos = (ms: number): number => Math.round(ms * 1_000_000);

/**
 * Retention and replica settings of the streams the broker manages. Key names follow
 * go-choria's `plugin.choria.network.stream.*` options; replicas -1 means "as many
 * as there are peers", which for a single broker is 1.
 */
export interface ManagedStreamsOptions {
  eventRetentionMs?: number;
  eventReplicas?: number;
  machineRetentionMs?: number;
  machineReplicas?: number;
  advisoryRetentionMs?: number;
  advisoryReplicas?: number;
  leaderElectionTtlMs?: number;
  leaderElectionReplicas?: number;
  /** CHORUS_JOBS: workflow events nodes submit (`*.submission.in.chorus.jobs.>`). */
  jobsRetentionMs?: number;
  jobsReplicas?: number;
  /** Cluster size used to resolve replicas of -1 (default 1). */
  peers?: number;
}

export const MANAGED_STREAM_DEFAULTS = {
  eventRetentionMs: 24 * HOUR,
  machineRetentionMs: 24 * HOUR,
  advisoryRetentionMs: 168 * HOUR,
  leaderElectionTtlMs: 60_000,
  jobsRetentionMs: 24 * HOUR,
} as const;

/** Workflow events: nodes submit `chorus.jobs.<execution>.<event>` through their spool. */
export const JOBS_STREAM = "CHORUS_JOBS";
export const JOBS_STREAM_SUBJECT = "*.submission.in.chorus.jobs.>";

export const LEADER_ELECTION_BUCKET = "CHORIA_LEADER_ELECTION";

export type ManagedStreamConfig = Partial<StreamConfig> & { name: string; subjects: string[] };

function replicas(n: number | undefined, peers: number): number {
  const r = n === undefined || n < 1 ? peers : n;
  // JetStream refuses more replicas than peers, and at most 5.
  return Math.max(1, Math.min(r, peers, 5));
}

/** The stream configurations the broker keeps in shape, in creation order. */
export function managedStreamConfigs(o: ManagedStreamsOptions = {}): ManagedStreamConfig[] {
  const peers = Math.max(1, o.peers ?? 1);
  const d = MANAGED_STREAM_DEFAULTS;
  const plain = (name: string, subject: string, ageMs: number, r?: number): ManagedStreamConfig => ({
    name,
    subjects: [subject],
    max_age: nanos(ageMs),
    num_replicas: replicas(r, peers),
    storage: "file" as StreamConfig["storage"],
    retention: "limits" as StreamConfig["retention"],
    discard: "old" as StreamConfig["discard"],
  });
  const ttl = o.leaderElectionTtlMs ?? d.leaderElectionTtlMs;
  if (ttl < 1000 || ttl > HOUR) {
    throw new StreamsError("config", `leader election TTL must be between 1s and 1h, got ${ttl}ms`);
  }
  return [
    plain("CHORIA_EVENTS", "choria.lifecycle.>", o.eventRetentionMs ?? d.eventRetentionMs, o.eventReplicas),
    plain(
      "CHORIA_MACHINE",
      "choria.machine.>",
      o.machineRetentionMs ?? d.machineRetentionMs,
      o.machineReplicas,
    ),
    plain(
      "CHORIA_STREAM_ADVISORIES",
      "$JS.EVENT.ADVISORY.>",
      o.advisoryRetentionMs ?? d.advisoryRetentionMs,
      o.advisoryReplicas,
    ),
    {
      // Shaped like a KV bucket (as the KV client would create it) so KV clients
      // and go-choria's election code read it as the CHORIA_LEADER_ELECTION bucket.
      name: `KV_${LEADER_ELECTION_BUCKET}`,
      subjects: [`$KV.${LEADER_ELECTION_BUCKET}.>`],
      max_age: nanos(ttl),
      num_replicas: replicas(o.leaderElectionReplicas, peers),
      storage: "file" as StreamConfig["storage"],
      retention: "limits" as StreamConfig["retention"],
      discard: "new" as StreamConfig["discard"],
      max_msgs_per_subject: 1,
      max_msgs: -1,
      max_bytes: -1,
      max_msg_size: -1,
      // the duplicate window may not exceed max_age
      duplicate_window: nanos(Math.min(ttl, 120_000)),
      allow_rollup_hdrs: true,
      deny_delete: true,
      deny_purge: false,
      allow_direct: true,
      mirror_direct: false,
    },
    {
      ...plain(JOBS_STREAM, JOBS_STREAM_SUBJECT, o.jobsRetentionMs ?? d.jobsRetentionMs, o.jobsReplicas),
      // spools resend after a lost ack or a crash with the same Nats-Msg-Id: stored once
      duplicate_window: nanos(120_000),
    },
  ];
}

export interface EnsureResult {
  name: string;
  action: "created" | "updated" | "unchanged";
}

// The fields we own; anything else an operator changed by hand is left alone.
const OWNED: (keyof StreamConfig)[] = [
  "subjects",
  "max_age",
  "num_replicas",
  "max_msgs_per_subject",
  "duplicate_window",
  "allow_rollup_hdrs",
  "deny_delete",
  "allow_direct",
  "discard",
];

function differs(have: Partial<StreamConfig>, want: ManagedStreamConfig): boolean {
  return OWNED.some((k) => {
    if (!(k in want)) return false;
    const a = (have as Record<string, unknown>)[k];
    const b = (want as Record<string, unknown>)[k];
    return JSON.stringify(a ?? null) !== JSON.stringify(b ?? null);
  });
}

function isNotFound(err: unknown): boolean {
  const e = err as { code?: unknown; message?: string; name?: string };
  return e?.name === "StreamNotFoundError" || e?.code === 10059 || /stream not found/i.test(e?.message ?? "");
}

/**
 * Creates the managed streams that are missing and updates the ones whose owned
 * settings (subjects, retention, replicas, KV shape) drifted from `configs`.
 * Idempotent: the broker runs it at every start and nats-server restart.
 */
export async function ensureStreams(
  jsm: JetStreamManager,
  configs: ManagedStreamConfig[],
): Promise<EnsureResult[]> {
  const out: EnsureResult[] = [];
  for (const want of configs) {
    let have: Partial<StreamConfig> | undefined;
    try {
      have = (await jsm.streams.info(want.name)).config;
    } catch (err) {
      if (!isNotFound(err)) {
        throw new StreamsError("stream", `cannot look up stream ${want.name}: ${(err as Error).message}`, {
          cause: err,
        });
      }
    }
    try {
      if (!have) {
        await jsm.streams.add(want);
        out.push({ name: want.name, action: "created" });
      } else if (differs(have, want)) {
        // Replica changes are applied by JetStream as a separate step; keep them in one update.
        await jsm.streams.update(want.name, { ...have, ...want } as StreamConfig);
        out.push({ name: want.name, action: "updated" });
      } else {
        out.push({ name: want.name, action: "unchanged" });
      }
    } catch (err) {
      throw new StreamsError(
        "stream",
        `cannot ${have ? "update" : "create"} stream ${want.name}: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }
  return out;
}

/** ensureStreams for the managed set over an admin (streams_admin) connection. */
export async function ensureManagedStreams(
  nc: NatsConnection,
  opts: ManagedStreamsOptions = {},
): Promise<EnsureResult[]> {
  let jsm: JetStreamManager;
  try {
    jsm = await jetstreamManager(nc, { timeout: 5000 });
  } catch (err) {
    throw new StreamsError("unavailable", `JetStream is not available: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return ensureStreams(jsm, managedStreamConfigs(opts));
}
