import { hostname } from "node:os";
import { jetstream } from "@nats-io/jetstream";
import { headers as natsHeaders, type NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "../../core/util/index.js";
import type { HeartbeatConfig } from "./config.js";
import type { ReplicatorMetrics } from "./metrics.js";

export const ORIGINATOR_HEADER = "Choria-SR-Originator";
export const SUBJECT_HEADER = "Choria-SR-Subject";

/**
 * Publishes the unix time to each heartbeat subject at its interval (a JetStream publish,
 * with Choria's originator and subject headers), so the far side can tell a quiet stream
 * from a cut-off cell. `active()` gates it when heartbeats follow a leader election.
 */
export class Heartbeats {
  private timers: NodeJS.Timeout[] = [];
  private readonly originator = hostname();

  constructor(
    private readonly cfg: HeartbeatConfig,
    private readonly nc: NatsConnection,
    private readonly replicator: string,
    private readonly metrics: ReplicatorMetrics,
    private readonly log: Logger,
    private readonly active: () => boolean = () => true,
  ) {}

  start(): void {
    const js = jetstream(this.nc);
    for (const s of this.cfg.subjects) {
      const beat = async () => {
        if (!this.active()) return;
        const h = natsHeaders();
        for (const [k, v] of Object.entries({ ...this.cfg.headers, ...s.headers })) h.set(k, v);
        h.set(ORIGINATOR_HEADER, this.originator);
        h.set(SUBJECT_HEADER, s.subject);
        const labels = { subject: s.subject, replicator: this.replicator };
        try {
          await js.publish(s.subject, String(Math.floor(Date.now() / 1000)), { headers: h, timeout: 2000 });
          this.metrics.heartbeats.inc(labels);
        } catch (err) {
          this.metrics.heartbeatErrors.inc(labels);
          this.log.warn({ subject: s.subject, err: (err as Error).message }, "heartbeat not published");
        }
      };
      void beat();
      const t = setInterval(() => void beat(), s.intervalMs);
      t.unref();
      this.timers.push(t);
    }
  }

  stop(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
  }
}
