import { parseGoDuration } from "../duration.js";
import { MachineError } from "../errors.js";
import type { WatcherDef } from "../types.js";

/**
 * Reads a watcher's `properties` with checks that name the key
 * (`watchers[2].properties.timeout: ...`). Any watcher type may use it.
 */
export class WatcherProps {
  private readonly raw: Record<string, unknown>;

  /** `known`: every key the type accepts; others are refused so typos do not pass silently. */
  constructor(
    def: WatcherDef,
    private readonly path: string,
    known: readonly string[],
  ) {
    const p: unknown = def.properties ?? {};
    if (p === null || typeof p !== "object" || Array.isArray(p)) {
      throw this.error("", "must be a map of properties");
    }
    this.raw = p as Record<string, unknown>;
    for (const k of Object.keys(this.raw)) {
      if (!known.includes(k)) {
        throw this.error(k, `unknown property for a ${def.type} watcher (known: ${known.join(", ")})`);
      }
    }
  }

  error(key: string, why: string): MachineError {
    return new MachineError("bad_watcher", `${this.path}.properties${key ? `.${key}` : ""}: ${why}`);
  }

  has(key: string): boolean {
    return this.raw[key] !== undefined && this.raw[key] !== null;
  }

  string(key: string, opts: { required: true }): string;
  string(key: string, opts?: { required?: false }): string | undefined;
  string(key: string, opts: { required?: boolean } = {}): string | undefined {
    const v = this.raw[key];
    if (v === undefined || v === null) {
      if (opts.required) throw this.error(key, "is required");
      return undefined;
    }
    if (typeof v !== "string") throw this.error(key, `must be a string, got ${JSON.stringify(v)}`);
    if (opts.required && v.trim() === "") throw this.error(key, "must not be empty");
    return v;
  }

  bool(key: string, dflt = false): boolean {
    const v = this.raw[key];
    if (v === undefined || v === null) return dflt;
    if (typeof v === "boolean") return v;
    // YAML authors write "true"; Go's mapstructure (weakly typed) accepts it too
    if (v === "true" || v === "false") return v === "true";
    throw this.error(key, `must be true or false, got ${JSON.stringify(v)}`);
  }

  /** a Go duration in ms; numbers are taken as Go's time.Duration does, as nanoseconds */
  duration(key: string, dfltMs: number): number {
    const v = this.raw[key];
    if (v === undefined || v === null || v === "") return dfltMs;
    if (typeof v === "number" && Number.isFinite(v) && v >= 0) return Math.round(v / 1e6);
    return parseGoDuration(v as string, `${this.path}.properties.${key}`, "bad_watcher");
  }

  stringList(key: string): string[] {
    const v = this.raw[key];
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) {
      throw this.error(key, "must be a list of strings");
    }
    return v as string[];
  }

  value(key: string): unknown {
    return this.raw[key];
  }
}
