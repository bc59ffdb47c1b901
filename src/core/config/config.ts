import { readFileSync } from "node:fs";
import { ChorusError } from "../protocol/errors.js";

/** Any problem with a configuration file; the message always starts with `FILE:LINE:` or `FILE:`. */
export class ConfigError extends ChorusError {
  readonly file: string;
  readonly line: number | undefined;
  constructor(file: string, line: number | undefined, reason: string, options?: { cause?: unknown }) {
    super("config", line === undefined ? `${file}: ${reason}` : `${file}:${line}: ${reason}`, options);
    this.file = file;
    this.line = line;
  }
}

interface Entry {
  value: string;
  line: number;
}

const TRUE_WORDS = new Set(["1", "y", "yes", "true", "t", "on"]);
const FALSE_WORDS = new Set(["0", "n", "no", "false", "f", "off"]);

/** Parses a Choria boolean word; undefined when the word is neither true nor false. */
export function parseBool(value: string): boolean | undefined {
  const v = value.trim().toLowerCase();
  if (TRUE_WORDS.has(v)) return true;
  if (FALSE_WORDS.has(v)) return false;
  return undefined;
}

const DURATION_UNITS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/**
 * Parses a Go-style duration ("2s", "500ms", "1m30s") into milliseconds.
 * A bare number is taken in `bareUnit` (Choria mixes seconds and milliseconds per key).
 */
export function parseDuration(value: string, bareUnit: "s" | "ms" = "s"): number | undefined {
  const v = value.trim();
  if (/^\d+(\.\d+)?$/.test(v)) return Number(v) * (bareUnit === "s" ? 1000 : 1);
  if (!/^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/.test(v)) return undefined;
  let total = 0;
  for (const m of v.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) {
    total += Number(m[1]) * (DURATION_UNITS[m[2] as string] as number);
  }
  return total;
}

/**
 * A parsed Choria-style configuration. Keys are kept verbatim, unknown keys included,
 * because Choria tolerates keys it does not know and so must we.
 */
export class Config {
  readonly file: string;
  private readonly entries: Map<string, Entry>;

  constructor(file: string, entries: Map<string, Entry> = new Map()) {
    this.file = file;
    this.entries = entries;
  }

  get(key: string): string | undefined {
    return this.entries.get(key)?.value;
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  /** Line the (winning) value of `key` came from, for error messages. */
  line(key: string): number | undefined {
    return this.entries.get(key)?.line;
  }

  keys(): string[] {
    return [...this.entries.keys()];
  }

  /** Returns a copy with `key` set, for callers that derive configs (setup, tests). */
  with(key: string, value: string): Config {
    const copy = new Map(this.entries);
    copy.set(key, { value, line: 0 });
    return new Config(this.file, copy);
  }

  /** An error located at the line `key` was set on (or at the file when it was not set). */
  error(key: string, reason: string): ConfigError {
    const line = this.line(key);
    return new ConfigError(this.file, line === 0 ? undefined : line, reason);
  }

  string(key: string, dflt?: string): string {
    const v = this.get(key);
    if (v !== undefined && v !== "") return v;
    if (dflt !== undefined) return dflt;
    throw this.error(key, `${key} is required`);
  }

  int(key: string, dflt?: number): number {
    const v = this.get(key);
    if (v === undefined || v === "") {
      if (dflt !== undefined) return dflt;
      throw this.error(key, `${key} is required`);
    }
    if (!/^[-+]?\d+$/.test(v)) throw this.error(key, `${key}: "${v}" is not an integer`);
    const n = Number(v);
    if (!Number.isSafeInteger(n)) throw this.error(key, `${key}: "${v}" is out of range`);
    return n;
  }

  bool(key: string, dflt?: boolean): boolean {
    const v = this.get(key);
    if (v === undefined || v === "") {
      if (dflt !== undefined) return dflt;
      throw this.error(key, `${key} is required`);
    }
    const b = parseBool(v);
    if (b === undefined) {
      throw this.error(
        key,
        `${key}: "${v}" is not a boolean (use true/false, yes/no, y/n, 1/0, t/f, on/off)`,
      );
    }
    return b;
  }

  /** Comma separated, trimmed, empty items dropped. */
  list(key: string, dflt?: string[]): string[] {
    const v = this.get(key);
    if (v === undefined || v.trim() === "") {
      if (dflt !== undefined) return [...dflt];
      throw this.error(key, `${key} is required`);
    }
    return splitList(v, ",");
  }

  /** Milliseconds; "2s", "500ms", "1m"; bare numbers are seconds unless `bareUnit` says otherwise. */
  duration(key: string, dflt?: number, bareUnit: "s" | "ms" = "s"): number {
    const v = this.get(key);
    if (v === undefined || v === "") {
      if (dflt !== undefined) return dflt;
      throw this.error(key, `${key} is required`);
    }
    const ms = parseDuration(v, bareUnit);
    if (ms === undefined) throw this.error(key, `${key}: "${v}" is not a duration (e.g. 2s, 500ms, 1m)`);
    return ms;
  }

  /** Keys below `prefix.` with the prefix removed, e.g. prefix "plugin.security.issuer". */
  keysUnder(prefix: string): string[] {
    const p = prefix.endsWith(".") ? prefix : `${prefix}.`;
    return this.keys()
      .filter((k) => k.startsWith(p))
      .map((k) => k.slice(p.length));
  }
}

export function splitList(value: string, sep: string): string[] {
  return value
    .split(sep)
    .map((s) => s.trim())
    .filter((s) => s !== "");
}

/** Parses `key = value` text. Later keys override earlier ones, as in Choria. */
export function parseConfig(text: string, file = "<config>"): Config {
  const entries = new Map<string, Entry>();
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const raw = (lines[i] as string).trim();
    if (raw === "" || raw.startsWith("#") || raw.startsWith(";")) continue;
    const eq = raw.indexOf("=");
    if (eq < 0) throw new ConfigError(file, i + 1, `expected "key = value", got "${truncate(raw)}"`);
    const key = raw.slice(0, eq).trim();
    if (key === "") throw new ConfigError(file, i + 1, "missing key before '='");
    if (/\s/.test(key))
      throw new ConfigError(file, i + 1, `invalid key "${truncate(key)}" (contains whitespace)`);
    entries.set(key, { value: raw.slice(eq + 1).trim(), line: i + 1 });
  }
  return new Config(file, entries);
}

/** Reads and parses a config file; unreadable files become a ConfigError naming the path. */
export function loadConfig(path: string): Config {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : String(err);
    throw new ConfigError(path, undefined, `cannot read configuration: ${why}`, { cause: err });
  }
  return parseConfig(text, path);
}

function truncate(s: string): string {
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}
