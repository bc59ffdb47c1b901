import type { Counter, Gauge, Summary } from "prom-client";
import { CHORUS_VERSION, ServedMetrics, promClient } from "../../core/util/index.js";

/**
 * The provisioner's Prometheus metrics under Choria's names (label `site` on all),
 * plus Chorus's chorus_provisioner_* extras. Scraped on monitor_port at /metrics.
 */
export class ProvisionerMetrics extends ServedMetrics {
  readonly site: string;
  readonly discovered: Counter<"site">;
  readonly eventDiscovered: Counter<"site">;
  readonly discoverCycles: Counter<"site">;
  readonly discoveryErrors: Counter<"site">;
  readonly provisionErrors: Counter<"site">;
  readonly provisioned: Counter<"site">;
  readonly busyWorkers: Gauge<"site">;
  readonly workQueueEntries: Gauge<"site">;
  readonly waitingNodes: Gauge<"site">;
  readonly paused: Gauge<"site">;
  readonly helperTime: Summary<"site">;
  readonly helperErrors: Counter<"site">;
  readonly helperShutdownRequests: Counter<"site">;
  readonly rpcTime: Summary<"site" | "rpc">;
  readonly rpcErrors: Counter<"site" | "rpc">;
  readonly enqueued: Counter<"site" | "result">;
  readonly outcomes: Counter<"site" | "outcome">;
  readonly badEvents: Counter<"site">;

  constructor(site: string) {
    super();
    const p = promClient();
    this.site = site;
    const registers = [this.registry];
    const labelNames = ["site"] as const;
    const counter = (name: string, help: string) =>
      new p.Counter({ name, help, labelNames: [...labelNames], registers });
    const gauge = (name: string, help: string) =>
      new p.Gauge({ name, help, labelNames: [...labelNames], registers });
    this.discovered = counter("choria_provisioner_discovered", "Nodes found by discovery");
    this.eventDiscovered = counter("choria_provisioner_event_discovered", "Nodes found by lifecycle events");
    this.discoverCycles = counter("choria_provisioner_discover_cycles", "Discovery cycles run");
    this.discoveryErrors = counter("choria_provisioner_discovery_errors", "Discovery cycles that failed");
    this.provisionErrors = counter(
      "choria_provisioner_provision_errors",
      "Node provisioning attempts that failed",
    );
    this.provisioned = counter("choria_provisioner_provisioned", "Nodes provisioned");
    this.busyWorkers = gauge("choria_provisioner_busy_workers", "Workers provisioning a node now");
    this.workQueueEntries = gauge(
      "choria_provisioner_work_queue_entries",
      "Nodes in the persistent work queue, waiting or in progress",
    );
    this.waitingNodes = gauge("choria_provisioner_waiting_nodes", "Nodes waiting for a worker");
    this.paused = gauge("choria_provisioner_paused", "1 while this provisioner is not the leader");
    this.helperTime = new p.Summary({
      name: "choria_provisioner_helper_time",
      help: "Time taken by the helper, seconds",
      labelNames: [...labelNames],
      registers,
    });
    this.helperErrors = counter(
      "choria_provisioner_helper_errors",
      "Helper runs that failed: timeout, exit status, empty, garbage or too large output",
    );
    this.helperShutdownRequests = counter(
      "choria_provisioner_helper_shutdown_requests",
      "Nodes the helper asked to shut down",
    );
    this.rpcTime = new p.Summary({
      name: "choria_provisioner_rpc_time",
      help: "Time taken by RPCs to nodes, seconds",
      labelNames: ["site", "rpc"],
      registers,
    });
    this.rpcErrors = new p.Counter({
      name: "choria_provisioner_rpc_errors",
      help: "RPCs to nodes that failed or went unanswered",
      labelNames: ["site", "rpc"],
      registers,
    });
    this.enqueued = new p.Counter({
      name: "chorus_provisioner_enqueued_total",
      help: "Nodes offered to the work queue: queued, duplicate (already queued or just done) or error",
      labelNames: ["site", "result"],
      registers,
    });
    this.outcomes = new p.Counter({
      name: "chorus_provisioner_items_total",
      help: "Work items finished by outcome: provisioned, already_done, deferred, shutdown, retry, dropped, interrupted, malformed",
      labelNames: ["site", "outcome"],
      registers,
    });
    this.badEvents = counter(
      "chorus_provisioner_bad_events_total",
      "Lifecycle events that could not be decoded",
    );
    const build = new p.Gauge({
      name: "choria_provisioner_build_info",
      help: "Build information about the running provisioner",
      labelNames: ["site", "version"],
      registers,
    });
    build.set({ site, version: CHORUS_VERSION }, 1);
    for (const g of [this.busyWorkers, this.workQueueEntries, this.waitingNodes, this.paused])
      g.set({ site }, 0);
  }

  /** The value of a metric with these labels (0 when unset): for tests and status output. */
  async value(name: string, labels: Record<string, string> = {}): Promise<number> {
    const m = this.registry.getSingleMetric(name);
    if (!m) return 0;
    const data = await m.get();
    const want = { site: this.site, ...labels };
    const hit = data.values.find((v) =>
      Object.entries(want).every(([k, x]) => (v.labels as Record<string, unknown>)[k] === x),
    );
    return hit?.value ?? 0;
  }
}
