import type { Counter, Gauge, Registry } from "prom-client";
import { MetricsEndpoint, promClient } from "../core/util/index.js";
import { BrokerError } from "./trust.js";

/** What the exporter needs from a running broker (BrokerSupervisor satisfies it). */
export interface BrokerMetricsSource {
  readonly monitorUrl: string;
  readonly up: boolean;
  readonly restarts: number;
  /** Adapter metrics (the supervisor's adapters), served beside the broker's own. */
  readonly adapters?: { readonly registry: Registry } | undefined;
  /** The x509 edge's nats-server (plugin.chorus.network.x509.port), when there is one. */
  readonly x509?:
    { readonly up: boolean; readonly restarts: number; readonly monitorUrl: string } | undefined;
}

export interface BrokerMetricsOptions {
  port: number;
  /** Interface to bind; defaults to loopback. */
  host?: string;
  /** Value of the `identity` label, as Choria labels its network metrics. */
  identity: string;
  source: BrokerMetricsSource;
}

// /varz field → Choria metric name and help.
const VARZ_GAUGES: [keyof Varz, string, string][] = [
  ["connections", "choria_network_connections", "Current client connections"],
  ["total_connections", "choria_network_total_connections", "Client connections since the broker started"],
  ["routes", "choria_network_routes", "Cluster routes"],
  ["in_msgs", "choria_network_in_msgs", "Messages received since the broker started"],
  ["out_msgs", "choria_network_out_msgs", "Messages sent since the broker started"],
  ["in_bytes", "choria_network_in_bytes", "Bytes received since the broker started"],
  ["out_bytes", "choria_network_out_bytes", "Bytes sent since the broker started"],
  ["slow_consumers", "choria_network_slow_consumers", "Slow consumers since the broker started"],
  ["subscriptions", "choria_network_subscriptions", "Current subscriptions"],
  ["mem", "choria_network_mem_bytes", "Resident memory of nats-server"],
  ["cpu", "choria_network_cpu_percent", "CPU use of nats-server in percent"],
];

interface Varz {
  connections?: number;
  total_connections?: number;
  routes?: number;
  in_msgs?: number;
  out_msgs?: number;
  in_bytes?: number;
  out_bytes?: number;
  slow_consumers?: number;
  subscriptions?: number;
  mem?: number;
  cpu?: number;
}

/**
 * Prometheus endpoint for the broker: choria_network_* gauges read from nats-server's
 * /varz at scrape time, plus chorus_broker_up and chorus_broker_restarts_total.
 * nats-server counters are exposed as gauges because they reset when it restarts.
 */
export class BrokerMetrics extends MetricsEndpoint {
  private readonly opts: BrokerMetricsOptions;
  private readonly gauges = new Map<keyof Varz, Gauge>();
  private readonly upGauge: Gauge;
  private readonly restartsCounter: Counter;
  private countedRestarts = 0;
  private readonly x509UpGauge: Gauge;
  private readonly x509RestartsCounter: Counter;
  private countedX509Restarts = 0;

  constructor(opts: BrokerMetricsOptions) {
    super({
      port: opts.port,
      host: opts.host,
      listenError: (err) =>
        new BrokerError(
          "metrics",
          `cannot listen on ${opts.host ?? "127.0.0.1"}:${opts.port}: ${err.message}`,
        ),
    });
    this.opts = opts;
    const { Counter, Gauge } = promClient();
    const labelNames = ["identity"];
    for (const [field, name, help] of VARZ_GAUGES) {
      this.gauges.set(field, new Gauge({ name, help, labelNames, registers: [this.registry] }));
    }
    this.upGauge = new Gauge({
      name: "chorus_broker_up",
      help: "1 when the supervised nats-server is running and answering its monitor",
      labelNames,
      registers: [this.registry],
    });
    this.restartsCounter = new Counter({
      name: "chorus_broker_restarts_total",
      help: "Times the supervisor restarted nats-server after an unexpected exit",
      labelNames,
      registers: [this.registry],
    });
    this.x509UpGauge = new Gauge({
      name: "chorus_broker_x509_up",
      help: "1 when the x509 client port's nats-server (plugin.chorus.network.x509.port) is running and answering its monitor",
      labelNames,
      registers: [this.registry],
    });
    this.x509RestartsCounter = new Counter({
      name: "chorus_broker_x509_restarts_total",
      help: "Times the supervisor restarted the x509 client port's nats-server after an unexpected exit",
      labelNames,
      registers: [this.registry],
    });
  }

  /** The x509 edge's series exist only while the broker has one. */
  private async renderX509(labels: { identity: string }): Promise<void> {
    const edge = this.opts.source.x509;
    if (!edge) {
      this.x509UpGauge.remove(labels);
      return;
    }
    let up = false;
    if (edge.up) {
      try {
        const res = await fetch(`${edge.monitorUrl}/healthz`, { signal: AbortSignal.timeout(2000) });
        await res.body?.cancel();
        up = res.ok;
      } catch {
        up = false;
      }
    }
    this.x509UpGauge.set(labels, up ? 1 : 0);
    // a new edge supervisor (broker restarted in-process) counts from zero again
    if (edge.restarts < this.countedX509Restarts) this.countedX509Restarts = 0;
    this.x509RestartsCounter.inc(labels, edge.restarts - this.countedX509Restarts);
    this.countedX509Restarts = edge.restarts;
  }

  /** Scrapes /varz and renders the exposition text (served at /metrics and /choria/metrics). */
  override async render(): Promise<string> {
    const labels = { identity: this.opts.identity };
    const src = this.opts.source;
    const newRestarts = src.restarts - this.countedRestarts;
    if (newRestarts > 0) {
      this.restartsCounter.inc(labels, newRestarts);
      this.countedRestarts = src.restarts;
    }
    this.restartsCounter.inc(labels, 0); // make the series exist before the first restart
    await this.renderX509(labels);
    let varz: Varz | undefined;
    if (src.up) {
      try {
        const res = await fetch(`${src.monitorUrl}/varz`, { signal: AbortSignal.timeout(2000) });
        if (res.ok) varz = (await res.json()) as Varz;
      } catch {
        varz = undefined;
      }
    }
    this.upGauge.set(labels, varz ? 1 : 0);
    for (const [field, gauge] of this.gauges) {
      const v = varz?.[field];
      if (typeof v === "number") gauge.set(labels, v);
      else gauge.remove(labels); // a stale value would look like a live broker
    }
    const adapters = this.opts.source.adapters?.registry;
    return adapters
      ? promClient().Registry.merge([this.registry, adapters]).metrics()
      : this.registry.metrics();
  }
}
