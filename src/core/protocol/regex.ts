import { RE2JS } from "re2js";

/**
 * Regular expressions from requests and configuration (filters, policies, DDL
 * validations, lifecycle watches) run on RE2JS, a linear-time engine: a JS RegExp
 * backtracks, and one broadcast with `/^(.*)*(.*)*!$/` as a filter froze whole
 * servers. RE2 is also the syntax go-choria gets from Go's regexp, so a pattern
 * means the same on both; JS-only forms (lookaround, backreferences) do not compile.
 *
 * A pattern that does not compile, or is over the limits below, yields null, which
 * callers treat as "matches nothing", as go-choria does with a regex that does not
 * compile.
 */

/** Longest pattern compiled, in UTF-16 code units. */
export const MAX_REGEX_LENGTH = 1024;

/**
 * Largest compiled program, in RE2 instructions. Counted repetition expands
 * (`.{1000}` alone is ~1000), and matching costs about program size × input length.
 */
export const MAX_REGEX_PROGRAM = 10_000;

/** The compiled-pattern cache holds at most this many patterns (least recently used go first)... */
export const REGEX_CACHE_ENTRIES = 2048;

/** ...and at most this total program size: an RE2JS program weighs much more than a RegExp. */
export const REGEX_CACHE_PROGRAM = 200_000;

/** A compiled pattern. `test` is an unanchored search, like RegExp.prototype.test. */
export interface SafeRegex {
  readonly source: string;
  readonly flags: string;
  test(s: string): boolean;
}

class Re2Regex implements SafeRegex {
  readonly #re: RE2JS;
  constructor(
    readonly source: string,
    readonly flags: string,
    re: RE2JS,
  ) {
    this.#re = re;
  }

  test(s: string): boolean {
    return this.#re.test(s);
  }
}

export function isSafeRegex(v: unknown): v is SafeRegex {
  return v instanceof Re2Regex;
}

const FLAG_BITS: Record<string, number> = {
  i: RE2JS.CASE_INSENSITIVE,
  m: RE2JS.MULTILINE,
  s: RE2JS.DOTALL,
  u: 0, // RE2 always matches by code point
};

/** A compiled pattern, or why it was refused. */
type Entry = { re: Re2Regex; weight: number } | { why: string; weight: number };

function build(pattern: string, flags: string): Entry {
  let bits = 0;
  for (const f of flags) {
    const b = FLAG_BITS[f];
    if (b === undefined || flags.indexOf(f) !== flags.lastIndexOf(f)) {
      return { why: `invalid flags ${JSON.stringify(flags)}`, weight: 1 };
    }
    bits |= b;
  }
  let re: RE2JS;
  try {
    re = RE2JS.compile(pattern, bits);
  } catch (err) {
    return { why: err instanceof Error ? err.message : String(err), weight: 1 };
  }
  const size = re.programSize();
  if (size > MAX_REGEX_PROGRAM) {
    return { why: `too large: ${size} instructions (at most ${MAX_REGEX_PROGRAM})`, weight: 1 };
  }
  return { re: new Re2Regex(pattern, flags, re), weight: Math.max(1, size) };
}

// A Map iterates in insertion order: re-inserting on use keeps the least recently
// used first, where eviction takes from.
const cache = new Map<string, Entry>();
let cacheWeight = 0;
let lastKey: string | undefined;
let lastEntry: Entry | undefined;

function lookup(pattern: string, flags: string): Entry {
  if (pattern.length > MAX_REGEX_LENGTH) {
    // Not cached: the check is cheap and the key would be large.
    return { why: `longer than ${MAX_REGEX_LENGTH} characters`, weight: 0 };
  }
  const key = flags + "\0" + pattern;
  // Every hosted node tests the same filter in turn: skip the reordering then.
  if (key === lastKey && lastEntry) return lastEntry;
  let e = cache.get(key);
  if (e) {
    cache.delete(key);
  } else {
    e = build(pattern, flags);
    cacheWeight += e.weight;
    while (cache.size > 0 && (cache.size >= REGEX_CACHE_ENTRIES || cacheWeight > REGEX_CACHE_PROGRAM)) {
      const [oldKey, old] = cache.entries().next().value as [string, Entry];
      cache.delete(oldKey);
      cacheWeight -= old.weight;
    }
  }
  cache.set(key, e);
  lastKey = key;
  lastEntry = e;
  return e;
}

/**
 * Compiles `pattern` (RE2 syntax; flags from "imsu") with the linear-time engine,
 * through a bounded LRU cache. Null when it does not compile or is over the limits.
 */
export function compileRegex(pattern: string, flags = ""): SafeRegex | null {
  const e = lookup(pattern, flags);
  return "re" in e ? e.re : null;
}

/** Why compileRegex refuses `pattern`, for error messages; undefined when it compiles. */
export function regexProblem(pattern: string, flags = ""): string | undefined {
  const e = lookup(pattern, flags);
  return "why" in e ? e.why : undefined;
}

/** How many compiled patterns are cached, and their total program size (for tests). */
export function regexCacheStats(): { entries: number; program: number } {
  return { entries: cache.size, program: cacheWeight };
}
