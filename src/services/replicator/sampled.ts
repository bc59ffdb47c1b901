import { randomBytes } from "node:crypto";
import { jetstream } from "@nats-io/jetstream";
import type { MsgHdrs, NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "../../core/util/index.js";
import { Advisor, wireAdvisor } from "./advisor.js";
import type { StreamConfig } from "./config.js";
import type { CopyFilter } from "./copier.js";
import type { ReplicatorMetrics } from "./metrics.js";
import { Sampler, type TrackedItem } from "./sampling.js";

/** `choria.stream-replicator.sync.<stream>.<name>`: instances share what they sampled. */
export function gossipSubject(stream: string, name: string): string {
  return `choria.stream-replicator.sync.${stream}.${name}`;
}

interface GossipBatch {
  instance: string;
  items: Record<string, TrackedItem>;
}

/**
 * Sampling for one stream wired to NATS: the Sampler decides what to copy; its events
 * become age advisories on the source side (only while this instance is active); what it
 * saw is gossiped to the other instances once a second (Choria sends one message per
 * sighting) so a new leader knows what the old one had sampled.
 */
export class SampledCopy implements CopyFilter {
  readonly sampler: Sampler;
  private readonly advisor: Advisor | undefined;
  private readonly instance = randomBytes(8).toString("hex");
  private gossipTimer: NodeJS.Timeout | undefined;
  private paused = true;
  private reported = { withoutValue: 0, forced: 0 };
  private statsTimer: NodeJS.Timeout | undefined;
  private readonly labels: { stream: string; replicator: string; worker: string };

  constructor(
    private readonly cfg: StreamConfig,
    private readonly replicator: string,
    private readonly nc: NatsConnection,
    private readonly metrics: ReplicatorMetrics,
    private readonly log: Logger,
    private readonly opts: { now?: () => number; scrubIntervalMs?: number; gossipIntervalMs?: number },
  ) {
    const s = cfg.sampling;
    if (!s) throw new Error("sampling is not configured for this stream");
    this.labels = { stream: cfg.stream, replicator, worker: cfg.name };
    this.sampler = new Sampler({
      stream: cfg.stream,
      replicator,
      ...(s.inspect_field !== undefined && { inspectField: s.inspect_field }),
      ...(s.inspect_force_field !== undefined && { inspectForceField: s.inspect_force_field }),
      ...(s.inspect_header !== undefined && { inspectHeader: s.inspect_header }),
      ...(s.inspect_subject_token !== undefined && { inspectSubjectToken: s.inspect_subject_token }),
      inspectDurationMs: s.inspectDurationMs,
      warnDurationMs: s.warnDurationMs,
      ...(s.size_trigger !== undefined && { sizeTrigger: s.size_trigger }),
      ...(cfg.stateFile !== undefined && { stateFile: cfg.stateFile }),
      ...(opts.now !== undefined && { now: opts.now }),
      ...(opts.scrubIntervalMs !== undefined && { scrubIntervalMs: opts.scrubIntervalMs }),
      logger: log,
    });
    const a = cfg.advisory;
    if (a) {
      const js = jetstream(nc);
      this.advisor = new Advisor({
        subject: a.subject,
        reliable: a.reliable,
        replicator,
        inspectField: s.inspect_field ?? s.inspect_header ?? String(s.inspect_subject_token ?? ""),
        publish: async (subject, data, msgId) => {
          if (msgId !== undefined) await js.publish(subject, data, { msgID: msgId, timeout: 2000 });
          else nc.publish(subject, data);
        },
        observe: (outcome, event) => {
          if (outcome === "published") metrics.advisories.inc({ ...this.labels, event });
          else if (outcome === "error") metrics.advisoryErrors.inc(this.labels);
          else if (outcome === "dropped") metrics.advisoriesDropped.inc(this.labels);
        },
        logger: log,
      });
      this.advisor.pause();
      wireAdvisor(this.sampler, this.advisor);
    }
  }

  /** The sampler's counts as metrics (they are plain numbers on the hot path). */
  private report(): void {
    const c = this.sampler.counters;
    this.metrics.trackedItems.set(this.labels, this.sampler.size);
    this.metrics.limiterNoValue.inc(this.labels, c.withoutValue - this.reported.withoutValue);
    this.metrics.limiterForced.inc(this.labels, c.forced - this.reported.forced);
    this.reported = { withoutValue: c.withoutValue, forced: c.forced };
  }

  decide(msg: { subject: string; data: Uint8Array; headers?: MsgHdrs | undefined }): {
    copy: boolean;
    value: string;
  } {
    return this.sampler.decide(msg);
  }

  copied(value: string): void {
    this.sampler.copied(value);
  }

  start(): void {
    this.sampler.start();
    this.advisor?.start();
    if (this.advisor) this.startGossip();
    this.statsTimer = setInterval(() => this.report(), 1000);
    this.statsTimer.unref();
  }

  private startGossip(): void {
    const subject = gossipSubject(this.cfg.stream, this.cfg.name);
    this.nc.subscribe(subject, {
      callback: (err, m) => {
        if (err) return;
        try {
          const b = JSON.parse(m.string()) as GossipBatch;
          if (b.instance === this.instance || typeof b.items !== "object" || b.items === null) return;
          for (const [v, item] of Object.entries(b.items)) {
            this.sampler.adopt(v, item);
            this.metrics.seenByGossip.inc(this.labels);
          }
        } catch {
          this.log.debug("ignored a gossip message that is not JSON");
        }
      },
    });
    this.gossipTimer = setInterval(() => {
      if (this.paused) return;
      const items = this.sampler.drainGossip();
      if (Object.keys(items).length === 0) return;
      const batch: GossipBatch = { instance: this.instance, items };
      this.nc.publish(subject, JSON.stringify(batch));
    }, this.opts.gossipIntervalMs ?? 1000);
    this.gossipTimer.unref();
  }

  /** Standing by (not the leader): no advisories, no gossip sent. */
  pause(): void {
    this.paused = true;
    this.advisor?.pause();
  }

  resume(): void {
    this.paused = false;
    this.advisor?.resume();
  }

  async stop(): Promise<void> {
    clearInterval(this.gossipTimer);
    clearInterval(this.statsTimer);
    this.report();
    this.sampler.stop();
    await this.advisor?.stop();
  }
}
