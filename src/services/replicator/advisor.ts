/**
 * Age advisories about sampled values (Choria's `io.choria.sr.v2.age_advisory`).
 *
 * Public API:
 * - `ADVISORY_PROTOCOL`, `AgeAdvisory`, `AdvisoryEvent` (alias `AgeAdvisoryEvent`).
 * - `advisorySubject(template, event, value)`: `%s` -> event, `%v` -> subject-safe value.
 * - `newEventId()`: a KSUID (27 base62 characters, time-ordered), as Choria's event_id.
 * - `new Advisor(o: AdvisorOptions)`: `advise(event, value, item)` queues one advisory
 *   (false when the queue is full: dropped and counted); `start()` publishes the queue,
 *   `stop()` ends that (the rest of the queue is dropped); `pause()`/`resume()` for a
 *   replicator that lost leadership (advisories dequeued while paused are discarded).
 *   `counters`: queued, published, errors, dropped, discarded.
 * - `wireAdvisor(sampler, advisor)`: sends the sampler's four events to the advisor and
 *   marks a timeout advised once it is queued.
 */
import { randomBytes } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import { silentLogger, type Logger } from "../../core/util/index.js";
import type { Sampler, SamplingEvent, TrackedItem } from "./sampling.js";

export const ADVISORY_PROTOCOL = "io.choria.sr.v2.age_advisory";

export type AdvisoryEvent = SamplingEvent;
/** the same, by the name service code uses */
export type AgeAdvisoryEvent = AdvisoryEvent;

export interface AgeAdvisory {
  protocol: typeof ADVISORY_PROTOCOL;
  event_id: string;
  inspect_field: string;
  /** seconds since the value was last seen, -1 when unknown */
  age: number;
  /** unix seconds of the last sighting (0 when unknown) */
  seen: number;
  replicator: string;
  /** unix seconds the advisory was made */
  timestamp: number;
  event: AdvisoryEvent;
  value: string;
}

/** What the publish function is told about an outcome (for metrics by event). */
export type AdvisoryOutcome = "published" | "error" | "dropped" | "discarded";

export interface AdvisorOptions {
  /** subject template: %s event, %v value */
  subject: string;
  /** JetStream publish with Nats-Msg-Id = event_id, retried; else one core publish */
  reliable: boolean;
  replicator: string;
  inspectField: string;
  /**
   * Publishes one advisory; `msgId` is given when reliable. Rejects on failure (a reliable
   * publish must reject when the JetStream ack does not come).
   */
  publish: (subject: string, data: Uint8Array, msgId?: string) => Promise<void>;
  /** default 1000, as Choria */
  queueSize?: number;
  /** attempts of a reliable publish, default 10 */
  tries?: number;
  /** wait before attempt n+1 after n failures; default up to 5 s with jitter */
  retryDelayMs?: (failures: number) => number;
  /** per advisory outcome, for metrics labelled by event */
  observe?: (outcome: AdvisoryOutcome, event: AdvisoryEvent) => void;
  now?: () => number;
  logger?: Logger;
}

export interface AdvisorCounters {
  queued: number;
  published: number;
  /** failed publish attempts */
  errors: number;
  /** not queued: the queue was full */
  dropped: number;
  /** dequeued while paused, or given up after the last try */
  discarded: number;
}

const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/** KSUID's epoch, 2014-05-13T16:53:20Z */
const KSUID_EPOCH = 1_400_000_000;

/**
 * A KSUID like Choria's (segmentio/ksuid): 4 bytes of seconds since the KSUID epoch and
 * 16 random bytes, base62 in 27 characters, so ids sort by time.
 */
export function newEventId(nowMs: number = Date.now()): string {
  const b = randomBytes(20);
  b.writeUInt32BE(Math.max(0, Math.floor(nowMs / 1000) - KSUID_EPOCH) >>> 0, 0);
  let n = BigInt(`0x${b.toString("hex")}`);
  let out = "";
  while (n > 0n) {
    out = BASE62[Number(n % 62n)] + out;
    n /= 62n;
  }
  return out.padStart(27, "0");
}

/**
 * The advisory subject: `%s` becomes the event, `%v` the value. Unlike Choria the value is
 * made one subject token (whitespace, `.`, `*`, `>` become `_`, empty becomes `_`): a
 * value like `web1.example.net` would otherwise add tokens or, with `*`/`>`, make a
 * subject that cannot be published to.
 */
export function advisorySubject(template: string, event: AdvisoryEvent, value: string): string {
  const safe = value === "" ? "_" : value.replace(/[\s.*>]/g, "_");
  return template.replaceAll("%s", event).replaceAll("%v", safe);
}

function defaultRetryDelay(failures: number): number {
  const base = Math.min(5000, 500 * failures);
  return base / 2 + Math.random() * (base / 2);
}

export class Advisor {
  readonly counters: AdvisorCounters = { queued: 0, published: 0, errors: 0, dropped: 0, discarded: 0 };

  private readonly o: AdvisorOptions;
  private readonly queue: AgeAdvisory[] = [];
  private readonly queueSize: number;
  private readonly tries: number;
  private readonly retryDelay: (failures: number) => number;
  private readonly now: () => number;
  private readonly log: Logger;
  private readonly enc = new TextEncoder();
  private paused = false;
  private running: Promise<void> | undefined;
  private abort: AbortController | undefined;
  private wake: (() => void) | undefined;

  constructor(o: AdvisorOptions) {
    this.o = o;
    this.queueSize = o.queueSize ?? 1000;
    this.tries = o.reliable ? Math.max(1, o.tries ?? 10) : 1;
    this.retryDelay = o.retryDelayMs ?? defaultRetryDelay;
    this.now = o.now ?? Date.now;
    this.log = o.logger ?? silentLogger;
  }

  /** advisories waiting to be published */
  get pending(): number {
    return this.queue.length;
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** builds the advisory now (age as of now) and queues it; false when the queue is full */
  advise(event: AdvisoryEvent, value: string, item: TrackedItem): boolean {
    if (this.queue.length >= this.queueSize) {
      this.counters.dropped++;
      this.o.observe?.("dropped", event);
      this.log.warn({ event, value, pending: this.queue.length }, "advisory queue full, advisory dropped");
      return false;
    }
    const now = this.now();
    this.queue.push({
      protocol: ADVISORY_PROTOCOL,
      event_id: newEventId(now),
      inspect_field: this.o.inspectField,
      age: item.seen > 0 ? Math.round((now - item.seen) / 1000) : -1,
      seen: item.seen > 0 ? Math.floor(item.seen / 1000) : 0,
      replicator: this.o.replicator,
      timestamp: Math.floor(now / 1000),
      event,
      value,
    });
    this.counters.queued++;
    this.wake?.();
    return true;
  }

  start(): void {
    if (this.running) return;
    this.abort = new AbortController();
    this.running = this.loop(this.abort.signal);
  }

  /** stops publishing (an attempt in progress finishes); what is still queued is dropped */
  async stop(): Promise<void> {
    const running = this.running;
    if (!running) return;
    this.abort?.abort();
    this.wake?.();
    await running;
    this.running = undefined;
    this.abort = undefined;
    this.queue.length = 0;
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
  }

  private async loop(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const a = this.queue.shift();
      if (a === undefined) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = undefined;
        continue;
      }
      if (this.paused) {
        this.counters.discarded++;
        this.o.observe?.("discarded", a.event);
        continue;
      }
      await this.publish(a, signal);
    }
  }

  private async publish(a: AgeAdvisory, signal: AbortSignal): Promise<void> {
    const subject = advisorySubject(this.o.subject, a.event, a.value);
    const data = this.enc.encode(JSON.stringify(a));
    for (let attempt = 1; attempt <= this.tries; attempt++) {
      try {
        await this.o.publish(subject, data, this.o.reliable ? a.event_id : undefined);
        this.counters.published++;
        this.o.observe?.("published", a.event);
        return;
      } catch (err) {
        this.counters.errors++;
        this.o.observe?.("error", a.event);
        const last = attempt === this.tries || signal.aborted;
        this.log.warn(
          { event: a.event, value: a.value, subject, attempt, err },
          last ? "could not publish advisory, giving up" : "could not publish advisory, retrying",
        );
        if (last) break;
        try {
          await delay(this.retryDelay(attempt), undefined, { signal });
        } catch {
          break; // stopped
        }
      }
    }
    this.counters.discarded++;
    this.o.observe?.("discarded", a.event);
  }
}

/** Advises on every sampler event; a timeout counts as advised once it is queued, as Choria. */
export function wireAdvisor(sampler: Sampler, advisor: Advisor): void {
  sampler.on("new", (v, i) => advisor.advise("new", v, i));
  sampler.on("recover", (v, i) => advisor.advise("recover", v, i));
  sampler.on("expire", (v, i) => advisor.advise("expire", v, i));
  sampler.on("timeout", (v, i) => {
    if (advisor.advise("timeout", v, i)) sampler.markAdvised(v);
  });
}
