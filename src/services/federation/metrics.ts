import type { Counter, Summary } from "prom-client";
import { CHORUS_VERSION, ServedMetrics, promClient } from "../../core/util/index.js";

/** The path a message takes through a federation broker. */
export type FederationPath = "request" | "reply";

/** Why a message was dropped. */
export type BadMessageReason =
  "malformed" | "not_federated" | "no_targets" | "bad_target" | "no_reply" | "bad_reply" | "publish";

type Labels = "name" | "worker" | "connected_to" | "cluster" | "identity";

/** One path's counts since start, as the stats subject reports them. */
export interface PathCounts {
  /** messages taken off the path's subject */
  received: number;
  /** messages published onward (a request to N targets counts N) */
  published: number;
  /** messages dropped or publishes that failed */
  errors: number;
  /** the errors by reason */
  bad: Partial<Record<BadMessageReason, number>>;
}

/** A worker stage's bound series (see FederationMetrics.stage). */
export interface Stage {
  labels: Record<Labels, string>;
  received: { inc(): void };
  published: { inc(): void };
  time: { observe(v: number): void };
}

function emptyCounts(): PathCounts {
  return { received: 0, published: 0, errors: 0, bad: {} };
}

/**
 * go-choria's federation metrics (choria_federation_received_msgs, _published_msgs,
 * _errors, _time with labels name, worker, connected_to, cluster, identity), plus
 * chorus_federation_bad_messages_total by path and reason.
 */
export class FederationMetrics extends ServedMetrics {
  readonly received: Counter<Labels>;
  readonly published: Counter<Labels>;
  readonly errors: Counter<Labels>;
  readonly time: Summary<Labels>;
  readonly bad: Counter<"cluster" | "path" | "reason">;
  /** plain totals per path, for the stats subject (the registry stays Prometheus') */
  readonly counts: Record<FederationPath, PathCounts> = { request: emptyCounts(), reply: emptyCounts() };

  constructor(
    readonly cluster: string,
    readonly identity: string,
  ) {
    super();
    const p = promClient();
    const registers = [this.registry];
    const labelNames: Labels[] = ["name", "worker", "connected_to", "cluster", "identity"];
    this.received = new p.Counter({
      name: "choria_federation_received_msgs",
      help: "Number of messages received by a Federation Broker worker",
      labelNames,
      registers,
    });
    this.published = new p.Counter({
      name: "choria_federation_published_msgs",
      help: "Number of messages published by a Federation Broker worker",
      labelNames,
      registers,
    });
    this.errors = new p.Counter({
      name: "choria_federation_errors",
      help: "Messages that could not be handled",
      labelNames,
      registers,
    });
    this.time = new p.Summary({
      name: "choria_federation_time",
      help: "Time taken to process messages, seconds",
      labelNames,
      registers,
      maxAgeSeconds: 600,
      // every observation goes into each age bucket's digest: two keep the cost down
      ageBuckets: 2,
    });
    this.bad = new p.Counter({
      name: "chorus_federation_bad_messages_total",
      help: "Messages dropped by path (request, reply) and reason",
      labelNames: ["cluster", "path", "reason"],
      registers,
    });
    new p.Gauge({
      name: "choria_federation_build_info",
      help: "Build information about the running federation broker",
      labelNames: ["cluster", "version"],
      registers,
    }).set({ cluster, version: CHORUS_VERSION }, 1);
  }

  /** The label set of one worker's stage (name: nats_ingest or nats_egest, as go-choria). */
  labels(name: string, worker: number, connectedTo: "federation" | "collective"): Record<Labels, string> {
    return {
      name,
      worker: String(worker),
      connected_to: connectedTo,
      cluster: this.cluster,
      identity: this.identity,
    };
  }

  /** Counts a dropped message or failed publish under its reason. */
  drop(path: FederationPath, reason: BadMessageReason, labels: Record<Labels, string>): void {
    this.errors.inc(labels);
    this.bad.inc({ cluster: this.cluster, path, reason });
    const c = this.counts[path];
    c.errors++;
    c.bad[reason] = (c.bad[reason] ?? 0) + 1;
  }

  /** One stage's series, bound once (no label hashing per message). */
  stage(name: string, worker: number, connectedTo: "federation" | "collective"): Stage {
    const labels = this.labels(name, worker, connectedTo);
    return {
      labels,
      received: this.received.labels(labels),
      published: this.published.labels(labels),
      time: this.time.labels(labels),
    };
  }

  /** Sum of a metric over the series matching `labels` (0 when none). */
  async value(name: string, labels: Record<string, string> = {}): Promise<number> {
    const m = this.registry.getSingleMetric(name);
    if (!m) return 0;
    const data = await m.get();
    let sum = 0;
    for (const v of data.values) {
      const l = v.labels as Record<string, unknown>;
      if ((v as { metricName?: string }).metricName?.endsWith("_count") === false) continue;
      if (Object.entries(labels).every(([k, x]) => l[k] === x)) sum += v.value;
    }
    return sum;
  }
}
