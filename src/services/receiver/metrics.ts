import type { Counter, Gauge, Histogram, Registry } from "prom-client";
import { CHORUS_VERSION, promClient } from "../../core/util/index.js";
import { DROP_REASONS, type DropReason } from "./ingest.js";

export type MessageKind = "reply" | "record";

/** The receiver's Prometheus metrics (chorus_receiver_*), served on monitor_port at /metrics. */
export class ReceiverMetrics {
  readonly registry: Registry;
  /** messages received, counted in plain numbers on the hot path and exported at scrape */
  readonly counts: Record<MessageKind, number> = { reply: 0, record: 0 };
  readonly received: Counter<"kind">;
  readonly stored: Counter<"kind">;
  readonly duplicates: Counter<"kind">;
  readonly dropped: Counter<"reason">;
  readonly batchSize: Histogram;
  readonly commitTime: Histogram;
  readonly storeErrors: Counter;
  readonly httpUnauthorized: Counter;
  readonly lag: Gauge;
  readonly pending: Gauge;

  constructor() {
    const p = promClient();
    this.registry = new p.Registry();
    const registers = [this.registry];
    const kind = ["kind"] as const;
    const counts = this.counts;
    this.received = new p.Counter({
      name: "chorus_receiver_received_total",
      help: "Messages received, by kind (reply, record)",
      labelNames: kind,
      registers,
      collect() {
        this.reset();
        this.inc({ kind: "reply" }, counts.reply);
        this.inc({ kind: "record" }, counts.record);
      },
    });
    this.stored = new p.Counter({
      name: "chorus_receiver_stored_total",
      help: "Replies and request records newly stored",
      labelNames: kind,
      registers,
    });
    this.duplicates = new p.Counter({
      name: "chorus_receiver_duplicates_total",
      help: "Replies and request records already in the store (redeliveries, republished messages)",
      labelNames: kind,
      registers,
    });
    this.dropped = new p.Counter({
      name: "chorus_receiver_dropped_total",
      help: "Messages not stored, by reason: malformed, hash, signature, bad_id, forged, subject, overflow",
      labelNames: ["reason"],
      registers,
    });
    this.batchSize = new p.Histogram({
      name: "chorus_receiver_batch_size",
      help: "Messages per committed batch",
      buckets: [1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10_000],
      registers,
    });
    this.commitTime = new p.Histogram({
      name: "chorus_receiver_commit_seconds",
      help: "Time to commit one batch to the store, seconds",
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.storeErrors = new p.Counter({
      name: "chorus_receiver_store_errors_total",
      help: "Batches the store refused (retried: redelivered in stream mode, held in direct mode)",
      registers,
    });
    this.httpUnauthorized = new p.Counter({
      name: "chorus_receiver_http_unauthorized_total",
      help: "HTTP API calls refused for a missing or wrong bearer token",
      registers,
    });
    this.lag = new p.Gauge({
      name: "chorus_receiver_lag_seconds",
      help: "Age of the oldest message of the last committed batch when it was committed, seconds",
      registers,
    });
    this.pending = new p.Gauge({
      name: "chorus_receiver_pending_messages",
      help: "Stream mode: messages in the stream not yet delivered to a receiver plus those awaiting an ack",
      registers,
    });
    const build = new p.Gauge({
      name: "chorus_receiver_build_info",
      help: "Build information about the running receiver",
      labelNames: ["version"],
      registers,
    });
    build.set({ version: CHORUS_VERSION }, 1);
    for (const k of ["reply", "record"]) {
      this.stored.inc({ kind: k }, 0);
      this.duplicates.inc({ kind: k }, 0);
    }
    for (const r of [...DROP_REASONS, "overflow"]) this.dropped.inc({ reason: r }, 0);
  }

  drop(reason: DropReason | "overflow", n = 1): void {
    this.dropped.inc({ reason }, n);
  }
}
