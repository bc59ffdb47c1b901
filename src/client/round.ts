import type { NatsConnection } from "../core/connector/index.js";
import { ReplyCollector } from "./collect.js";
import { openReply, replyOpener, type OpenedReply, type ReplyTrust } from "./replies.js";
import type { ClientLogger, DropCounts } from "./types.js";

/** A reply that passed every check: opened (hash, and signature when asked), for this request, first from its sender. */
export type AcceptedReply = Extract<OpenedReply, { ok: true }>;

export interface ReplyRoundOptions {
  /** the request the replies must answer */
  requestId: string;
  /** check reply signatures with this; hashes are always checked */
  trust: ReplyTrust | undefined;
  /** senders already accepted (a request's rounds share it): another reply from one is a duplicate */
  seen: Set<string>;
  /** counts the replies thrown away, by reason */
  dropped: DropCounts;
  log: ClientLogger;
  /** what the log calls a reply ("reply", "discovery reply") */
  what: string;
  /** each accepted reply, on the calling thread; may end the round with `finish()` */
  accept: (reply: AcceptedReply) => void;
}

/**
 * One publish and its replies, for discovery pings and each round (batch, retry) of
 * a request: the reply subscription exists before anything is published, so no early
 * reply is lost. Replies are opened (off-thread when signatures are checked), dropped
 * with a counted reason, or accepted once per sender; the round ends at its time cap,
 * `quietMs` after the last accepted reply (windowed), at `finish()`, or on abort.
 * Per reply it costs the opening and one call of `accept`, nothing more.
 */
export class ReplyRound {
  private readonly collector: ReplyCollector;

  constructor(
    nc: NatsConnection,
    subject: string,
    private readonly o: ReplyRoundOptions,
  ) {
    const trust = o.trust;
    this.collector = new ReplyCollector(
      nc,
      subject,
      (data, opened) => this.take(opened ?? openReply(data, trust)),
      replyOpener(trust),
      (err) => {
        o.dropped.malformed++;
        o.log.warn(`${o.what} could not be handled: ${err instanceof Error ? err.message : String(err)}`);
      },
    );
  }

  private take(r: OpenedReply): void {
    const o = this.o;
    if (!r.ok) {
      o.dropped[r.reason]++;
      o.log.debug(`${o.what} dropped (${r.reason}): ${r.detail}`);
      return;
    }
    if (r.requestId !== o.requestId) {
      o.dropped.request++;
      return;
    }
    if (o.seen.has(r.sender)) {
      o.dropped.duplicate++;
      return;
    }
    o.seen.add(r.sender);
    o.accept(r);
    this.collector.touch();
  }

  /**
   * Publishes (`publish` runs once the subscription is up), collects until the round
   * ends, and unsubscribes whatever happens. The cap counts from just before
   * publishing; `flush`, when given, runs after the clock has started and counts as
   * publishing. Returns the ms spent publishing.
   */
  async run(
    publish: () => void,
    capMs: number,
    o: { quietMs?: number; signal?: AbortSignal | undefined; flush?: () => Promise<void> } = {},
  ): Promise<number> {
    const c = this.collector;
    const t0 = performance.now();
    try {
      publish();
      c.start(Math.max(0, capMs - (performance.now() - t0)), o.quietMs);
      const release = c.stopOn(o.signal);
      try {
        // the cap and the signal end a flush that never completes (connection closed meanwhile)
        if (o.flush) await Promise.race([o.flush(), c.done]);
        const publishMs = performance.now() - t0;
        await c.done;
        return publishMs;
      } finally {
        release();
      }
    } finally {
      c.finish();
    }
  }

  /** Ends the round now (every expected node answered, or a service replied). */
  finish(): void {
    this.collector.finish();
  }

  /** performance.now() at which the round ended (0 while it runs). */
  get ended(): number {
    return this.collector.ended;
  }
}
