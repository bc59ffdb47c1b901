import { jetstream, type JetStreamClient } from "@nats-io/jetstream";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { availableParallelism } from "node:os";
import type { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { AdapterSettings } from "../core/config/index.js";
import { Backoff, promClient, sleep, type Logger } from "../core/util/index.js";
import { decodeIngest, IngestPool, type IngestDecodeOptions, type IngestItem } from "./adapter-worker.js";

/** One message as adapters write it into a stream (choria:adapters:<type>:output:1). */
export interface AdapterOutput {
  protocol: string;
  /** the message payload, unmodified (e.g. the registration JSON) */
  data: string;
  sender: string;
  /** unix seconds when it was converted */
  time: number;
  requestid: string;
}

interface Item {
  subject: string;
  data: Uint8Array;
  tries: number;
}

/** A FIFO with O(1) push/shift and a hard bound (JS arrays shift in O(n)). */
class BoundedQueue<T> {
  private buf: (T | undefined)[];
  private head = 0;
  private count = 0;
  private readonly size: number;
  /** `reserve` extra slots take items handed back for a retry, so a retry never evicts another. */
  constructor(
    readonly capacity: number,
    reserve: number,
  ) {
    this.size = capacity + reserve;
    this.buf = new Array<T | undefined>(this.size);
  }
  get length(): number {
    return this.count;
  }
  push(v: T): boolean {
    if (this.count >= this.capacity) return false;
    this.buf[(this.head + this.count) % this.size] = v;
    this.count++;
    return true;
  }
  /** Back at the head (a publish that has to be retried keeps its place). */
  unshift(v: T): void {
    this.head = (this.head - 1 + this.size) % this.size;
    this.buf[this.head] = v;
    this.count++;
  }
  shift(): T | undefined {
    if (this.count === 0) return undefined;
    const v = this.buf[this.head];
    this.buf[this.head] = undefined;
    this.head = (this.head + 1) % this.size;
    this.count--;
    return v;
  }
}

/** Prometheus series for every adapter in a broker, labelled by adapter name. */
export class AdapterMetrics {
  readonly registry: Registry;
  readonly received: Counter;
  readonly bad: Counter;
  readonly dropped: Counter;
  readonly published: Counter;
  readonly errors: Counter;
  readonly failed: Counter;
  readonly workerFailures: Counter;
  readonly queue: Gauge;
  readonly publishTime: Histogram;
  private readonly queues = new Map<string, () => number>();

  constructor(registry?: Registry) {
    // loaded here, not at import: a broker without adapters or metrics never needs prom-client
    const { Counter, Gauge, Histogram, Registry } = promClient();
    this.registry = registry ?? new Registry();
    const registers = [this.registry];
    const labelNames = ["adapter"];
    const c = (name: string, help: string) => new Counter({ name, help, labelNames, registers });
    this.received = c("choria_adapter_received_total", "Messages received on the ingest subject");
    this.bad = c(
      "choria_adapter_bad_messages_total",
      "Ingest messages that could not be decoded and were skipped",
    );
    this.dropped = c("choria_adapter_dropped_total", "Messages dropped because the buffer was full");
    this.published = c("choria_adapter_published_total", "Messages stored in the stream (acknowledged)");
    this.errors = c("choria_adapter_publish_errors_total", "Failed publish attempts (retried)");
    this.failed = c(
      "choria_adapter_failed_total",
      "Messages given up on after repeated non-transient errors",
    );
    this.workerFailures = c(
      "choria_adapter_ingest_worker_failures_total",
      "Ingest decode worker threads that errored, exited or stalled (their messages were decoded inline)",
    );
    const queues = this.queues;
    this.queue = new Gauge({
      name: "choria_adapter_queue_length",
      help: "Messages waiting to be published",
      labelNames,
      registers,
      // read at scrape time rather than set on every message
      collect() {
        for (const [adapter, len] of queues) this.set({ adapter }, len());
      },
    });
    this.publishTime = new Histogram({
      name: "choria_adapter_publish_seconds",
      help: "Time to an acknowledged publish",
      labelNames,
      registers,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1],
    });
  }

  /** Reports an adapter's buffer length at scrape time. */
  watchQueue(adapter: string, len: () => number): void {
    this.queues.set(adapter, len);
  }
}

export interface AdapterStats {
  received: number;
  bad: number;
  dropped: number;
  published: number;
  errors: number;
  failed: number;
  queued: number;
  /** received messages still being decoded in worker threads */
  decoding: number;
  ingestWorkerFailures: number;
}

export interface StreamAdapterOptions {
  metrics?: AdapterMetrics;
  logger?: Logger;
  /** first retry delay when Streams are unavailable (doubles to 5 s) */
  retryMs?: number;
  /** ack wait per publish */
  publishTimeoutMs?: number;
  /** non-transient failures before a message is given up (default 5) */
  maxTries?: number;
  /** an ingest worker with pending messages and no progress for this long is replaced (default 10 s) */
  ingestStallMs?: number;
}

// "no responders" (503, which nats.js reports as "jetstream is not enabled") and
// timeouts mean JetStream or the stream is not there right now; everything else is a property of the message or the stream config.
function transient(err: unknown): boolean {
  const e = err as { code?: unknown; message?: string; name?: string };
  const text = `${e?.name ?? ""} ${e?.message ?? ""} ${String(e?.code ?? "")}`.toLowerCase();
  return /503|no responders|not enabled|timeout|timed out|disconnect|closed|connection|draining|stream not found|10059/.test(
    text,
  );
}

/**
 * A broker-hosted adapter: takes Choria messages (request or reply protocol) from an
 * ingest subject and stores each in a stream subject, `%s` replaced by the sender,
 * as choria:adapters:<type>:output:1 JSON. Messages wait in a bounded buffer while
 * Streams are unavailable; when it is full, new ones are dropped and counted.
 */
export class StreamAdapter {
  readonly settings: AdapterSettings;
  readonly metrics: AdapterMetrics;
  private readonly o: StreamAdapterOptions;
  private readonly queue: BoundedQueue<Item>;
  private readonly waiters: (() => void)[] = [];
  private readonly s: AdapterStats = {
    received: 0,
    bad: 0,
    dropped: 0,
    published: 0,
    errors: 0,
    failed: 0,
    queued: 0,
    decoding: 0,
    ingestWorkerFailures: 0,
  };
  private pool: IngestPool | undefined;
  private readonly decodeOptions: IngestDecodeOptions;
  private sub: Subscription | undefined;
  private js: JetStreamClient | undefined;
  private workers: Promise<void>[] = [];
  private running = false;
  private readonly label: { adapter: string };
  // Label children resolved once: prom-client hashes the labels on every labelled call.
  private readonly m: {
    received: { inc(n?: number): void };
    bad: { inc(n?: number): void };
    dropped: { inc(n?: number): void };
    published: { inc(n?: number): void };
    errors: { inc(n?: number): void };
    failed: { inc(n?: number): void };
    publishTime: { observe(v: number): void };
  };

  constructor(settings: AdapterSettings, o: StreamAdapterOptions = {}) {
    this.settings = settings;
    this.o = o;
    this.metrics = o.metrics ?? new AdapterMetrics();
    this.queue = new BoundedQueue(settings.queueLen, settings.streamWorkers);
    this.decodeOptions = {
      protocol: `choria:adapters:${settings.type}:output:1`,
      ingestProtocol: settings.ingestProtocol,
      streamTopic: settings.streamTopic,
    };
    this.label = { adapter: settings.name };
    const mt = this.metrics;
    this.m = {
      received: mt.received.labels(this.label),
      bad: mt.bad.labels(this.label),
      dropped: mt.dropped.labels(this.label),
      published: mt.published.labels(this.label),
      errors: mt.errors.labels(this.label),
      failed: mt.failed.labels(this.label),
      publishTime: mt.publishTime.labels(this.label),
    };
    mt.watchQueue(settings.name, () => this.queue.length);
  }

  get stats(): AdapterStats {
    return { ...this.s, queued: this.queue.length, decoding: this.pool?.inFlight ?? 0 };
  }

  start(nc: NatsConnection): void {
    if (this.running) return;
    this.running = true;
    this.js = jetstream(nc, { timeout: this.o.publishTimeoutMs ?? 5000 });
    this.startPool();
    // A queue group lets several brokers share one ingest subject without duplicates.
    this.sub = nc.subscribe(this.settings.ingestTopic, {
      queue: `${this.settings.name}_adapter`,
      callback: (err, msg) => {
        if (!err) this.ingest(msg.data);
      },
    });
    for (let i = 0; i < this.settings.streamWorkers; i++) this.workers.push(this.worker());
  }

  /**
   * Stops taking messages, gives the workers up to `flushMs` to empty the buffer,
   * then returns; whatever is still buffered is lost (and counted as dropped).
   */
  async stop(flushMs = 2000): Promise<void> {
    if (!this.running) return;
    this.sub?.unsubscribe();
    const deadline = Date.now() + flushMs;
    const pool = this.pool;
    if (pool) {
      let t: NodeJS.Timeout | undefined;
      await Promise.race([pool.idle(), new Promise((r) => (t = setTimeout(r, flushMs)))]);
      clearTimeout(t);
      // whatever a worker still holds is decoded inline, so it is buffered or counted
      await pool.close();
      this.pool = undefined;
    }
    while (this.queue.length > 0 && Date.now() < deadline) await sleep(20);
    this.running = false;
    for (const w of this.waiters.splice(0)) w();
    await Promise.allSettled(this.workers);
    this.workers = [];
    const left = this.queue.length;
    while (this.queue.shift()) {
      // drained below
    }
    if (left > 0) {
      this.s.dropped += left;
      this.m.dropped.inc(left);
    }
  }

  /**
   * Takes one ingest message: decoded here, or handed to the ingest worker threads
   * (results come back in arrival order). Garbage is counted and skipped either way.
   */
  ingest(bytes: Uint8Array): void {
    this.s.received++;
    this.m.received.inc();
    const pool = this.pool;
    if (!pool) {
      this.enqueue(decodeIngest(bytes, this.decodeOptions));
      return;
    }
    // queue.len bounds what waits to be decoded as well as what waits to be published
    if (pool.inFlight + this.queue.length >= this.settings.queueLen) {
      this.s.dropped++;
      this.m.dropped.inc();
      return;
    }
    pool.submit(bytes, this.enqueueOne);
  }

  /** The ingest worker pool, when ingest.workers runs one (tests use its failure hooks). */
  get ingestPool(): IngestPool | undefined {
    return this.pool;
  }

  private readonly enqueueOne = (d: IngestItem | undefined): void => this.enqueue(d);

  private enqueue(d: IngestItem | undefined): void {
    if (!d) {
      this.s.bad++;
      this.m.bad.inc();
      return;
    }
    if (!this.queue.push({ subject: d.subject, data: d.record, tries: 0 })) {
      this.s.dropped++;
      this.m.dropped.inc();
      return;
    }
    this.waiters.shift()?.();
  }

  /** ingest.workers >= 2 runs a pool (capped at the CPU count) when running from built JS. */
  private startPool(): void {
    const want = this.settings.ingestWorkers;
    if (want < 2) return;
    const name = this.settings.name;
    if (!import.meta.url.endsWith(".js")) {
      this.o.logger?.warn(
        `adapter ${name}: ingest.workers = ${want} needs the built JS (worker threads cannot load TypeScript sources); decoding inline`,
      );
      return;
    }
    const cpus = Math.max(1, availableParallelism());
    const size = Math.min(want, cpus);
    if (size < want)
      this.o.logger?.warn(
        `adapter ${name}: ingest.workers = ${want} capped at ${size}, the number of CPUs available`,
      );
    const failures = this.metrics.workerFailures.labels(this.label);
    this.pool = new IngestPool({
      size,
      decode: this.decodeOptions,
      stallMs: this.o.ingestStallMs ?? 10_000,
      onFailure: (why, messages, disabled) => {
        this.s.ingestWorkerFailures++;
        failures.inc();
        this.o.logger?.[disabled ? "error" : "warn"](
          `adapter ${name}: ingest worker failed (${why}); ${messages} pending messages decoded inline; ${
            disabled ? "too many failures, decoding inline from now on" : "worker replaced"
          }`,
        );
      },
    });
  }

  private next(): Promise<Item | undefined> {
    const item = this.queue.shift();
    if (item || !this.running) return Promise.resolve(item);
    return new Promise<void>((r) => this.waiters.push(r)).then(() => this.queue.shift());
  }

  private async worker(): Promise<void> {
    // Streams away: wait before hammering them, longer each time (up to 5 s)
    const backoff = new Backoff({ initialMs: this.o.retryMs ?? 250, maxMs: 5000 });
    while (this.running) {
      const item = await this.next();
      if (!item) continue;
      const t0 = performance.now();
      try {
        await (this.js as JetStreamClient).publish(item.subject, item.data);
        this.m.publishTime.observe((performance.now() - t0) / 1000);
        this.s.published++;
        this.m.published.inc();
        backoff.reset();
      } catch (err) {
        this.s.errors++;
        this.m.errors.inc();
        const again = transient(err) || ++item.tries < (this.o.maxTries ?? 5);
        if (again && this.running) {
          this.queue.unshift(item);
          if (transient(err)) await sleep(backoff.next());
        } else if (!again) {
          this.s.failed++;
          this.m.failed.inc();
          this.o.logger?.warn(
            `adapter ${this.settings.name}: giving up on ${item.subject}: ${(err as Error).message}`,
          );
        } else {
          this.queue.unshift(item);
        }
      }
    }
  }
}

/** All adapters of a broker on one connection, sharing one metrics registry. */
export class AdapterManager {
  readonly adapters: StreamAdapter[];
  readonly metrics: AdapterMetrics;

  constructor(settings: AdapterSettings[], o: StreamAdapterOptions = {}) {
    this.metrics = o.metrics ?? new AdapterMetrics();
    this.adapters = settings.map((s) => new StreamAdapter(s, { ...o, metrics: this.metrics }));
  }

  get registry(): Registry {
    return this.metrics.registry;
  }

  start(nc: NatsConnection): void {
    for (const a of this.adapters) a.start(nc);
  }

  async stop(flushMs?: number): Promise<void> {
    await Promise.all(this.adapters.map((a) => a.stop(flushMs)));
  }
}
