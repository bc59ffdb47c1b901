import type { Logger } from "pino";
import type { ReceiverMetrics } from "./metrics.js";
import type { ReplyRow, ReplyStore, RequestRow } from "./store.js";

/** What a stored message is settled through: a JetStream message (ack after commit), or nothing. */
export interface Settle {
  ack(): void;
  nak(delayMs?: number): void;
}

// on a connection that may be closing, a lost ack or nak only means a redelivery (stored once)
function ack(s: Settle): void {
  try {
    s.ack();
  } catch {
    // redelivered after ack_wait
  }
}

function nak(s: Settle, delayMs: number): void {
  try {
    s.nak(delayMs);
  } catch {
    // redelivered after ack_wait
  }
}

class Batch {
  replies: ReplyRow[] = [];
  records: RequestRow[] = [];
  settle: Settle[] = [];
  /** when its first message arrived, ms */
  firstMs = 0;

  get size(): number {
    return this.replies.length + this.records.length;
  }
}

export interface BatcherOptions {
  store: ReplyStore;
  metrics: ReceiverMetrics;
  log: Logger;
  batch: number;
  flushIntervalMs: number;
  /**
   * Stream mode: a failed commit naks its messages (redelivered later, maybe to another
   * receiver). Direct mode: nothing would redeliver them, so the rows are kept and
   * retried, up to this many held messages; beyond that the oldest are dropped.
   */
  holdLimit?: number;
}

/**
 * Gathers parsed messages into batches and commits each in one transaction: when `batch`
 * messages are waiting, or `flushIntervalMs` after the first. One commit at a time; what
 * arrives meanwhile forms the next batch, however large (the consumer's max_ack_pending
 * bounds it). Messages are acked only after their batch committed.
 */
export class Batcher {
  private cur = new Batch();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private retryDelayMs = 0;
  private draining = false;
  private closed = false;

  constructor(private readonly o: BatcherOptions) {}

  reply(row: ReplyRow, s: Settle | undefined): void {
    if (this.cur.size === 0) this.cur.firstMs = Date.now();
    this.cur.replies.push(row);
    if (s) this.cur.settle.push(s);
    this.added();
  }

  record(row: RequestRow, s: Settle | undefined): void {
    if (this.cur.size === 0) this.cur.firstMs = Date.now();
    this.cur.records.push(row);
    if (s) this.cur.settle.push(s);
    this.added();
  }

  private added(): void {
    // a commit in progress looks at what gathered meanwhile when it ends
    if (this.running) return;
    if (this.cur.size >= this.o.batch) this.kick();
    else this.timer ??= setTimeout(() => this.kick(), this.o.flushIntervalMs);
  }

  private kick(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.running || this.cur.size === 0) return;
    this.running = this.loop().finally(() => {
      this.running = undefined;
      if (this.cur.size > 0 && !this.closed) this.added();
    });
  }

  private async loop(): Promise<void> {
    for (;;) {
      const b = this.cur;
      this.cur = new Batch();
      const ok = await this.commit(b);
      // a batch that is not full yet waits for its timer, unless everything is to go now
      const more = this.draining ? ok && this.cur.size > 0 : this.cur.size >= this.o.batch;
      if (!more) return;
    }
  }

  private async commit(b: Batch): Promise<boolean> {
    const { metrics, store, log } = this.o;
    const end = metrics.commitTime.startTimer();
    try {
      const r = await store.write(b.records, b.replies);
      end();
      this.retryDelayMs = 0;
      const now = Date.now();
      metrics.batchSize.observe(b.size);
      metrics.lag.set((now - b.firstMs) / 1000);
      metrics.stored.inc({ kind: "reply" }, r.replies);
      metrics.stored.inc({ kind: "record" }, r.records);
      metrics.duplicates.inc({ kind: "reply" }, b.replies.length - r.replies);
      metrics.duplicates.inc({ kind: "record" }, b.records.length - r.records);
      for (const s of b.settle) ack(s);
      return true;
    } catch (err) {
      metrics.storeErrors.inc();
      this.retryDelayMs = Math.min(5000, Math.max(100, this.retryDelayMs * 2));
      log.error(
        { err: (err as Error).message, batch: b.size, retry_ms: this.retryDelayMs },
        "cannot store a batch",
      );
      if (b.settle.length > 0) {
        for (const s of b.settle) nak(s, this.retryDelayMs);
      } else this.hold(b);
      await new Promise((r) => setTimeout(r, this.retryDelayMs));
      return false;
    }
  }

  /** Direct mode: puts a failed batch back in front of what arrived since, within the limit. */
  private hold(b: Batch): void {
    const limit = this.o.holdLimit ?? this.o.batch * 50;
    const next = this.cur;
    next.replies = b.replies.concat(next.replies);
    next.records = b.records.concat(next.records);
    next.firstMs = b.firstMs;
    const over = next.size - limit;
    if (over > 0) {
      const fromReplies = Math.min(over, next.replies.length);
      next.replies.splice(0, fromReplies);
      next.records.splice(0, over - fromReplies);
      this.o.metrics.drop("overflow", over);
      this.o.log.error({ dropped: over }, "store unavailable: dropped the oldest held messages");
    }
  }

  /** Commits everything received so far (after a commit in progress); one try. */
  async flush(): Promise<void> {
    this.draining = true;
    try {
      while (this.running) await this.running;
      this.kick();
      await this.running;
    } finally {
      this.draining = false;
    }
  }

  /** Last flush before stopping; nothing is committed after it. */
  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
