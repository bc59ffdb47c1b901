/**
 * The `metric` watcher: runs a command every `interval` and exports what it prints as
 * Prometheus gauges `choria_machine_metric_watcher_<watcher>_<metric>` (go-choria's names).
 * The output is either Choria's JSON format `{"labels": {...}, "metrics": {"name": 1.5}}` or
 * Nagios perfdata (`text|a=1 b=2s`). `store: true` also puts the result in machine data
 * under `metric.<watcher>`. Graphite and the `http` switch are refused, not ignored: a
 * machine that asks for them would otherwise look as if it published somewhere it does not.
 *
 * `properties.interval` (where Choria's schema puts it) is the engine's interval for this
 * watcher unless the watcher also has a top-level `interval`; go-choria's floor of 1s applies.
 */
import type { Metric as PromMetric, Registry } from "prom-client";
import { parseGoDuration } from "../duration.js";
import type { Watcher, WatcherDef, WatcherFactory, WatcherHost } from "../types.js";
import { parseNagiosOutput, pluginEnv, runShell, stringMapProp } from "./nagios.js";
import { WatcherProps } from "./properties.js";

/** One gathering (go-choria's Metric). */
export interface MetricResult {
  labels: Record<string, string>;
  metrics: Record<string, number>;
  /** unix seconds */
  time: number;
}

const METRIC_PROPERTIES = [
  "command",
  "interval",
  "labels",
  "skip_prometheus",
  "store",
  "timeout",
  "http",
  "graphite_host",
  "graphite_port",
  "graphite_prefix",
] as const;

/** Lower case, spaces, commas and quotes to `_` (go-choria's promName), then whatever Prometheus refuses. */
export function promName(name: string): string {
  return name
    .toLowerCase()
    .replace(/[ ,"]/g, "_")
    .replace(/[^a-zA-Z0-9_:]/g, "_");
}

/**
 * Parses a metric command's output: JSON when it starts with `{`, else Nagios perfdata.
 * Throws on malformed JSON or non-numeric metrics so the watcher can report the failure.
 */
export function parseMetricOutput(output: string): {
  labels: Record<string, string>;
  metrics: Record<string, number>;
} {
  const trimmed = output.trim();
  if (trimmed.startsWith("{")) {
    const raw = JSON.parse(trimmed) as unknown;
    if (typeof raw !== "object" || raw === null || Array.isArray(raw))
      throw new Error("output is not a JSON object");
    const o = raw as { labels?: unknown; metrics?: unknown };
    const labels: Record<string, string> = { format: "choria" };
    if (o.labels !== undefined && o.labels !== null) {
      if (typeof o.labels !== "object" || Array.isArray(o.labels))
        throw new Error("labels must be an object");
      for (const [k, v] of Object.entries(o.labels as Record<string, unknown>)) labels[k] = String(v);
    }
    const metrics: Record<string, number> = {};
    if (o.metrics !== undefined && o.metrics !== null) {
      if (typeof o.metrics !== "object" || Array.isArray(o.metrics))
        throw new Error("metrics must be an object");
      for (const [k, v] of Object.entries(o.metrics as Record<string, unknown>)) {
        if (typeof v !== "number" || !Number.isFinite(v)) throw new Error(`metrics.${k} is not a number`);
        metrics[k] = v;
      }
    }
    return { labels, metrics };
  }
  const metrics: Record<string, number> = {};
  for (const p of parseNagiosOutput(output).perfdata) metrics[p.label] = p.value;
  return { labels: { format: "nagios" }, metrics };
}

interface Series {
  labels: Record<string, string>;
  value: number;
}

/**
 * One Prometheus gauge whose label names differ between series (each command chooses its
 * own labels), which prom-client's Gauge cannot hold; the registry only needs `get()`.
 */
class DynamicGauge {
  readonly type = "gauge";
  readonly aggregator = "sum";
  /** owner key (machine/watcher) => series */
  readonly series = new Map<string, Series[]>();
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}
  get(): { name: string; help: string; type: string; aggregator: string; values: Series[] } {
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values: [...this.series.values()].flat(),
    };
  }
  reset(): void {
    this.series.clear();
  }
}

function dynamicGauge(reg: Registry, name: string): DynamicGauge {
  const existing = reg.getSingleMetric(name) as unknown;
  if (existing instanceof DynamicGauge) return existing;
  const g = new DynamicGauge(name, "Choria Metric");
  reg.registerMetric(g as unknown as PromMetric);
  return g;
}

class MetricWatcher implements Watcher {
  readonly type = "metric";
  private readonly command: string;
  readonly defaultIntervalMs: number;
  private readonly timeoutMs: number;
  private readonly labels: Record<string, string>;
  private readonly skipPrometheus: boolean;
  private readonly store: boolean;
  private result: MetricResult | undefined;
  private runtime = 0;
  private running: Promise<void> | undefined;
  private closed = false;
  /** metric names this watcher has series in, to remove them when the metrics change or it closes */
  private exported = new Set<string>();

  constructor(
    readonly def: WatcherDef,
    private readonly host: WatcherHost,
    path: string,
  ) {
    const p = new WatcherProps(def, path, METRIC_PROPERTIES);
    this.command = p.string("command", { required: true });
    const fallback = def.interval ? parseGoDuration(def.interval, `${path}.interval`, "bad_watcher") : 0;
    // go-choria's floor: a metric command more often than once a second is a mistake
    this.defaultIntervalMs = Math.max(1000, p.duration("interval", 0) || fallback);
    this.timeoutMs = p.duration("timeout", 10_000);
    this.labels = stringMapProp(p, "labels");
    this.skipPrometheus = p.bool("skip_prometheus");
    this.store = p.bool("store");
    if (p.bool("http")) throw p.error("http", "the http switch is not supported by Chorus");
    for (const k of ["graphite_host", "graphite_port", "graphite_prefix"]) {
      if (p.has(k)) throw p.error(k, "Graphite is not supported by Chorus: metrics go to Prometheus");
    }
  }

  /** The engine's interval tick, a state change it is active in, or a trigger. */
  run(signal: AbortSignal): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.running) return this.running;
    this.running = this.doGather(signal).finally(() => (this.running = undefined));
    return this.running;
  }

  private async doGather(signal: AbortSignal): Promise<void> {
    const started = Date.now();
    const r = await runShell(this.command, {
      cwd: this.host.directory,
      env: pluginEnv(this.host, this.def.name),
      timeoutMs: this.timeoutMs,
      signal,
    });
    if (this.closed) return;
    this.runtime = (Date.now() - started) / 1000;
    if (r.exitCode !== 0) {
      const why = r.timedOut ? `timed out after ${this.timeoutMs / 1000}s` : `exited ${String(r.exitCode)}`;
      this.host.log.warn({ watcher: this.def.name, command: this.command }, `metric command ${why}`);
      this.host.announce();
      this.host.fail(`${this.def.name}: command ${why}`);
      return;
    }
    let parsed: ReturnType<typeof parseMetricOutput>;
    try {
      parsed = parseMetricOutput(r.output);
    } catch (err) {
      this.host.log.warn({ watcher: this.def.name, err: err as Error }, "could not parse metric output");
      this.host.announce();
      this.host.fail(`${this.def.name}: ${(err as Error).message}`);
      return;
    }
    const result: MetricResult = {
      labels: { ...parsed.labels, ...this.labels },
      metrics: parsed.metrics,
      time: Math.floor(Date.now() / 1000),
    };
    this.result = result;
    if (!this.skipPrometheus) this.export(result);
    if (this.store) {
      const prev = this.host.data().metric;
      const all = typeof prev === "object" && prev !== null && !Array.isArray(prev) ? { ...prev } : {};
      this.host.dataPut("metric", { ...all, [this.def.name]: result });
    }
    this.host.announce();
  }

  private ownerKey(): string {
    return `${this.host.machineName}\u0000${this.def.name}`;
  }

  private export(result: MetricResult): void {
    const reg = this.host.services.metrics;
    if (!reg) return;
    const labels: Record<string, string> = {};
    for (const [k, v] of Object.entries(result.labels)) labels[promName(k)] = v;
    // go-choria has no machine label; two machines with one watcher name would clash without it
    labels.machine ??= this.host.machineName;
    const now = new Set<string>();
    for (const [metric, value] of Object.entries(result.metrics)) {
      // go-choria lower-cases the watcher name but keeps the metric's case
      const name = `choria_machine_metric_watcher_${promName(this.def.name)}_${metric.replace(/[^a-zA-Z0-9_:]/g, "_")}`;
      dynamicGauge(reg, name).series.set(this.ownerKey(), [{ labels, value }]);
      now.add(name);
    }
    for (const name of this.exported) if (!now.has(name)) this.unexport(reg, name);
    this.exported = now;
  }

  private unexport(reg: Registry, name: string): void {
    const g = reg.getSingleMetric(name) as unknown;
    if (!(g instanceof DynamicGauge)) return;
    g.series.delete(this.ownerKey());
    if (g.series.size === 0) reg.removeSingleMetric(name);
  }

  snapshot(): Record<string, unknown> {
    const r = this.result ?? { labels: {}, metrics: {}, time: 0 };
    return {
      metrics: {
        labels: { ...r.labels },
        metrics: { ...r.metrics, choria_runtime_seconds: this.runtime },
        time: r.time,
      },
    };
  }

  close(): void {
    this.closed = true;
    const reg = this.host.services.metrics;
    if (reg) for (const name of this.exported) this.unexport(reg, name);
    this.exported.clear();
  }
}

export const metricWatcher: WatcherFactory = (def, host, path) => new MetricWatcher(def, host, path);
