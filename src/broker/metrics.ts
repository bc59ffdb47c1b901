import { createServer, type Server } from "node:http";
import { Counter, Gauge, Registry } from "prom-client";
import { BrokerError } from "./trust.js";

/** What the exporter needs from a running broker (BrokerSupervisor satisfies it). */
export interface BrokerMetricsSource {
  readonly monitorUrl: string;
  readonly up: boolean;
  readonly restarts: number;
  /** Adapter metrics (the supervisor's adapters), served beside the broker's own. */
  readonly adapters?: { readonly registry: Registry } | undefined;
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
export class BrokerMetrics {
  readonly registry = new Registry();
  private readonly opts: BrokerMetricsOptions;
  private readonly gauges = new Map<keyof Varz, Gauge>();
  private readonly upGauge: Gauge;
  private readonly restartsCounter: Counter;
  private countedRestarts = 0;
  private server: Server | undefined;

  constructor(opts: BrokerMetricsOptions) {
    this.opts = opts;
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
  }

  /** Scrapes /varz and renders the exposition text. */
  async render(): Promise<string> {
    const labels = { identity: this.opts.identity };
    const src = this.opts.source;
    const newRestarts = src.restarts - this.countedRestarts;
    if (newRestarts > 0) {
      this.restartsCounter.inc(labels, newRestarts);
      this.countedRestarts = src.restarts;
    }
    this.restartsCounter.inc(labels, 0); // make the series exist before the first restart
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
    return adapters ? Registry.merge([this.registry, adapters]).metrics() : this.registry.metrics();
  }

  /** Serves GET /metrics on host:port. */
  async start(): Promise<void> {
    if (this.server) return;
    const server = createServer((req, res) => {
      const path = (req.url ?? "/").split("?")[0];
      if (req.method !== "GET" || (path !== "/metrics" && path !== "/")) {
        res.writeHead(404).end("not found\n");
        return;
      }
      this.render().then(
        (body) => res.writeHead(200, { "Content-Type": this.registry.contentType }).end(body),
        (err: unknown) => res.writeHead(500).end(`${String(err)}\n`),
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", (err) =>
        reject(
          new BrokerError(
            "metrics",
            `cannot listen on ${this.opts.host ?? "127.0.0.1"}:${this.opts.port}: ${err.message}`,
          ),
        ),
      );
      server.listen(this.opts.port, this.opts.host ?? "127.0.0.1", () => resolve());
    });
    this.server = server;
  }

  get port(): number {
    const addr = this.server?.address();
    return typeof addr === "object" && addr ? addr.port : this.opts.port;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
