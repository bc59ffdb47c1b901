/**
 * Waits `ms`; an aborted `signal` ends the wait early (resolving, not rejecting: the
 * caller checks the signal, as after any other wake-up).
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

export interface BackoffOptions {
  /** the first delay, ms */
  initialMs: number;
  /** no delay is longer than this, ms */
  maxMs: number;
  /** growth per attempt (default 2: doubling) */
  factor?: number;
  /**
   * Spread, as a fraction: 0.2 makes each delay 80-120 % of the nominal one, so many
   * processes recovering from one outage do not retry in step (default 0).
   */
  jitter?: number;
}

/** The delay before retry number `attempt` (1 = the first): initialMs × factor^(attempt−1), capped at maxMs. */
export function backoffDelay(attempt: number, o: BackoffOptions): number {
  const exp = Math.min(Math.max(0, attempt - 1), 64);
  const base = Math.min(o.maxMs, o.initialMs * (o.factor ?? 2) ** exp);
  const jitter = o.jitter ?? 0;
  return jitter > 0 ? Math.round(base * (1 - jitter + Math.random() * 2 * jitter)) : base;
}

/** A retry delay that grows with every next() and starts over after reset(). */
export class Backoff {
  private attempt = 0;
  constructor(private readonly o: BackoffOptions) {}

  /** The delay to wait now; the one after it is longer (up to maxMs). */
  next(): number {
    return backoffDelay(++this.attempt, this.o);
  }

  /** After a success: the next delay is initialMs again. */
  reset(): void {
    this.attempt = 0;
  }
}
