import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import type { OpenedReply, ReplyOpener } from "./replies.js";

function warnHandlerFailed(err: unknown): void {
  process.emitWarning(
    `a reply could not be handled: ${(err as Error)?.message ?? String(err)}`,
    "ChorusWarning",
  );
}

/**
 * One reply-collection window on a subject: ends at the cap, at `finish()`, or
 * (windowed) `quietMs` after the last `touch()`. Uses a callback subscription so
 * each reply costs one function call and no promise. With an opener, replies are
 * opened (signature-checked) off-thread and handed over with `opened` set; `done`
 * then waits until every reply that arrived in time has been delivered.
 *
 * `onMessage` must not throw; if it does anyway, the error goes to `onError` (default:
 * a process warning) and collection goes on. Left alone, it would unwind into the NATS
 * client's message dispatch or a verifier thread's message event, and a single bad
 * reply could end the whole request.
 */
export class ReplyCollector {
  readonly done: Promise<void>;
  private readonly sub: Subscription;
  private resolve!: () => void;
  private cap?: NodeJS.Timeout;
  private quiet?: NodeJS.Timeout;
  private finished = false;
  private closedByCaller = false;
  private quietMs = 0;
  private endedAt = 0;

  constructor(
    nc: NatsConnection,
    subject: string,
    onMessage: (data: Uint8Array, opened?: OpenedReply) => void,
    private readonly opener?: ReplyOpener,
    onError: (err: unknown) => void = warnHandlerFailed,
  ) {
    this.done = new Promise<void>((r) => (this.resolve = r));
    const handle = (data: Uint8Array, opened?: OpenedReply): void => {
      try {
        onMessage(data, opened);
      } catch (err) {
        try {
          onError(err);
        } catch {
          // nothing more can be done for this reply
        }
      }
    };
    this.sub = nc.subscribe(subject, {
      callback: (err, msg) => {
        if (err || this.finished) return;
        const data = msg.data;
        // Replies still being opened when the caller ends collection itself (all answered,
        // first service reply) are dropped, as they would have been had they come later.
        if (opener) opener.open(data, (o) => this.closedByCaller || handle(data, o));
        else handle(data);
      },
    });
  }

  /** Starts the clock; call after publishing. */
  start(capMs: number, quietMs = 0): void {
    if (this.finished) return;
    this.quietMs = quietMs;
    this.cap = setTimeout(() => this.end(), Math.max(0, capMs));
  }

  /** Ends collection early when `signal` aborts (^C in the CLI); returns a cleanup. */
  stopOn(signal: AbortSignal | undefined): () => void {
    if (!signal) return () => {};
    if (signal.aborted) {
      this.end();
      return () => {};
    }
    const onAbort = () => this.end();
    signal.addEventListener("abort", onAbort, { once: true });
    return () => signal.removeEventListener("abort", onAbort);
  }

  /** A reply arrived: in windowed mode, push the end out to quietMs from now. */
  touch(): void {
    if (this.quietMs <= 0 || this.finished) return;
    if (this.quiet) this.quiet.refresh();
    else this.quiet = setTimeout(() => this.end(), this.quietMs);
  }

  /** Ends collection now; replies still being opened are not delivered. */
  finish(): void {
    if (!this.finished) this.closedByCaller = true;
    this.end();
  }

  /** Time is up (or aborted): replies that arrived before now are still delivered. */
  private end(): void {
    if (this.finished) return;
    this.finished = true;
    this.endedAt = performance.now();
    clearTimeout(this.cap);
    clearTimeout(this.quiet);
    this.sub.unsubscribe();
    if (this.opener) void this.opener.drain().then(this.resolve);
    else this.resolve();
  }

  /** performance.now() at which collection ended (0 while running). */
  get ended(): number {
    return this.endedAt;
  }
}
