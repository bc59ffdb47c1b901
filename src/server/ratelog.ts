import type { Logger } from "../core/util/index.js";

/**
 * Logs each kind of problem at most once per window, with how many were
 * suppressed, so a flood of bad messages cannot flood the log too.
 */
export class RateLimitedLog {
  private readonly last = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly log: Pick<Logger, "warn" | "error">,
    private readonly windowMs = 10_000,
  ) {}

  warn(kind: string, fields: Record<string, unknown>, msg: string): void {
    this.emit("warn", kind, fields, msg);
  }

  /** For what looks like an attack or a fault that stops work (deep nesting, a thrown callback). */
  error(kind: string, fields: Record<string, unknown>, msg: string): void {
    this.emit("error", kind, fields, msg);
  }

  private emit(level: "warn" | "error", kind: string, fields: Record<string, unknown>, msg: string): void {
    const now = Date.now();
    const seen = this.last.get(kind);
    if (seen && now - seen.at < this.windowMs) {
      seen.suppressed++;
      return;
    }
    const suppressed = seen?.suppressed ?? 0;
    this.last.set(kind, { at: now, suppressed: 0 });
    this.log[level](suppressed > 0 ? { ...fields, kind, suppressed } : { ...fields, kind }, msg);
  }
}
