import type { NatsConnection, Subscription } from "@nats-io/transport-node";

/**
 * One reply-collection window on a subject: ends at the cap, at `finish()`, or
 * (windowed) `quietMs` after the last `touch()`. Uses a callback subscription so
 * each reply costs one function call and no promise.
 */
export class ReplyCollector {
  readonly done: Promise<void>;
  private readonly sub: Subscription;
  private resolve!: () => void;
  private cap?: NodeJS.Timeout;
  private quiet?: NodeJS.Timeout;
  private finished = false;
  private quietMs = 0;
  private endedAt = 0;

  constructor(nc: NatsConnection, subject: string, onMessage: (data: Uint8Array) => void) {
    this.done = new Promise<void>((r) => (this.resolve = r));
    this.sub = nc.subscribe(subject, {
      callback: (err, msg) => {
        if (err || this.finished) return;
        onMessage(msg.data);
      },
    });
  }

  /** Starts the clock; call after publishing. */
  start(capMs: number, quietMs = 0): void {
    if (this.finished) return;
    this.quietMs = quietMs;
    this.cap = setTimeout(() => this.finish(), Math.max(0, capMs));
  }

  /** Ends collection early when `signal` aborts (^C in the CLI); returns a cleanup. */
  stopOn(signal: AbortSignal | undefined): () => void {
    if (!signal) return () => {};
    if (signal.aborted) {
      this.finish();
      return () => {};
    }
    const onAbort = () => this.finish();
    signal.addEventListener("abort", onAbort, { once: true });
    return () => signal.removeEventListener("abort", onAbort);
  }

  /** A reply arrived: in windowed mode, push the end out to quietMs from now. */
  touch(): void {
    if (this.quietMs <= 0 || this.finished) return;
    if (this.quiet) this.quiet.refresh();
    else this.quiet = setTimeout(() => this.finish(), this.quietMs);
  }

  finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.endedAt = performance.now();
    clearTimeout(this.cap);
    clearTimeout(this.quiet);
    this.sub.unsubscribe();
    this.resolve();
  }

  /** performance.now() at which collection ended (0 while running). */
  get ended(): number {
    return this.endedAt;
  }
}
