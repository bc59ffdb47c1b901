import type { Counter, Gauge, Summary } from "prom-client";
import { ServedMetrics, promClient } from "../../core/util/index.js";

const LABELS = ["stream", "replicator", "worker"] as const;
type L = (typeof LABELS)[number];

/**
 * The replicator's Prometheus metrics under go-choria's stream replicator names
 * (`choria_stream_replicator_*`, labels stream, replicator, worker) so its Grafana
 * dashboards keep working; Chorus's additions are named `chorus_replicator_*`.
 */
export class ReplicatorMetrics extends ServedMetrics {
  readonly totalMessages: Counter<L>;
  readonly totalBytes: Counter<L>;
  readonly handlerErrors: Counter<L>;
  readonly processingTime: Summary<L>;
  readonly streamSequence: Gauge<L>;
  readonly tooOld: Counter<L>;
  readonly copied: Counter<L>;
  readonly copiedBytes: Counter<L>;
  readonly skipped: Counter<L>;
  readonly skippedBytes: Counter<L>;
  readonly metaParseFailed: Counter<L>;
  readonly ackFailed: Counter<L>;
  readonly consumerRecreated: Counter<L>;
  readonly duplicates: Counter<L>;
  readonly inFlight: Gauge<L>;
  readonly trackedItems: Gauge<L>;
  readonly seenByGossip: Counter<L>;
  readonly limiterNoValue: Counter<L>;
  readonly limiterForced: Counter<L>;
  readonly advisories: Counter<L | "event">;
  readonly advisoryErrors: Counter<L>;
  readonly advisoriesDropped: Counter<L>;
  readonly isLeader: Gauge<"election" | "identity" | "replicator">;
  readonly heartbeats: Counter<"subject" | "replicator">;
  readonly heartbeatErrors: Counter<"subject" | "replicator">;

  constructor() {
    super();
    const p = promClient();
    const registers = [this.registry];
    const counter = (name: string, help: string) =>
      new p.Counter({ name, help, labelNames: LABELS, registers });
    const gauge = (name: string, help: string) => new p.Gauge({ name, help, labelNames: LABELS, registers });
    const sr = "choria_stream_replicator_replicator_";
    this.totalMessages = counter(`${sr}total_messages`, "Messages received from the source");
    this.totalBytes = counter(`${sr}total_bytes`, "Bytes received from the source");
    this.handlerErrors = counter(`${sr}handler_error_count`, "Failed attempts to copy a message");
    this.processingTime = new p.Summary({
      name: `${sr}processing_time_seconds`,
      help: "Time to copy one message (target publish and acknowledgement)",
      labelNames: LABELS,
      percentiles: [0.5, 0.9, 0.99],
      maxAgeSeconds: 600,
      ageBuckets: 2,
      registers,
    });
    this.streamSequence = gauge(`${sr}stream_sequence`, "The last source stream sequence handled");
    this.tooOld = counter(`${sr}too_old_messages`, "Messages skipped for being older than max_age");
    this.copied = counter(`${sr}copied_messages`, "Messages copied to the target");
    this.copiedBytes = counter(`${sr}copied_bytes`, "Bytes copied to the target");
    this.skipped = counter(`${sr}skipped_messages`, "Messages not copied by sampling");
    this.skippedBytes = counter(`${sr}skipped_bytes`, "Bytes not copied by sampling");
    this.metaParseFailed = counter(`${sr}meta_parse_failed_count`, "Messages without JetStream metadata");
    this.ackFailed = counter(`${sr}ack_failed_count`, "Source acknowledgements that failed");
    this.consumerRecreated = counter(`${sr}consumer_recreated`, "Times the source consumer was recreated");
    this.duplicates = counter(
      "chorus_replicator_duplicates_total",
      "Copies the target already held (its Nats-Msg-Id deduplication or a resume check): not stored twice",
    );
    this.inFlight = gauge(
      "chorus_replicator_in_flight",
      "Messages received and not yet copied and acknowledged",
    );
    this.trackedItems = gauge("choria_stream_replicator_tracker_total_items", "Sampled values being tracked");
    this.seenByGossip = counter(
      "choria_stream_replicator_tracker_seen_by_gossip",
      "Sampled values learned from another replicator instance",
    );
    this.limiterNoValue = counter(
      "choria_stream_replicator_limiter_messages_without_limit_field_count",
      "Messages without the sampled value (always copied)",
    );
    this.limiterForced = counter(
      "choria_stream_replicator_limiter_messages_copy_forced_count",
      "Messages copied because the force field was present",
    );
    this.advisories = new p.Counter({
      name: "choria_stream_replicator_advisor_total_messages",
      help: "Age advisories published, by event",
      labelNames: [...LABELS, "event"],
      registers,
    });
    this.advisoryErrors = counter(
      "choria_stream_replicator_advisor_publish_errors",
      "Advisories that failed to publish",
    );
    this.advisoriesDropped = counter(
      "chorus_replicator_advisories_dropped_total",
      "Advisories dropped because the queue was full",
    );
    this.isLeader = new p.Gauge({
      name: "choria_stream_replicator_election_leader",
      help: "1 while this instance leads the election",
      labelNames: ["election", "identity", "replicator"],
      registers,
    });
    this.heartbeats = new p.Counter({
      name: "choria_stream_replicator_heartbeat_published_count",
      help: "Heartbeats published",
      labelNames: ["subject", "replicator"],
      registers,
    });
    this.heartbeatErrors = new p.Counter({
      name: "choria_stream_replicator_heartbeat_published_error_count",
      help: "Heartbeats that failed to publish",
      labelNames: ["subject", "replicator"],
      registers,
    });
  }
}
