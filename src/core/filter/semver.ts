import { FilterError } from "./errors.js";

/** major.minor.patch plus an optional pre-release; build metadata is ignored. */
export interface SemVer {
  major: number;
  minor: number;
  patch: number;
  pre: string[];
}

const VERSION_RE = /^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$/;

/** Parses a version; missing minor/patch count as 0 (`1.2` is `1.2.0`). Undefined when not a version. */
export function parseSemVer(input: string): SemVer | undefined {
  const m = VERSION_RE.exec(input.trim());
  if (!m) return undefined;
  return {
    major: Number(m[1]),
    minor: Number(m[2] ?? 0),
    patch: Number(m[3] ?? 0),
    pre: m[4] ? m[4].split(".") : [],
  };
}

/** -1, 0 or 1, with semver.org precedence (a pre-release sorts before its release). */
export function compareSemVer(a: SemVer, b: SemVer): number {
  for (const k of ["major", "minor", "patch"] as const) {
    if (a[k] !== b[k]) return a[k] < b[k] ? -1 : 1;
  }
  if (a.pre.length === 0 || b.pre.length === 0) {
    return a.pre.length === b.pre.length ? 0 : a.pre.length === 0 ? 1 : -1;
  }
  for (let i = 0; i < Math.max(a.pre.length, b.pre.length); i++) {
    const x = a.pre[i];
    const y = b.pre[i];
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    if (x === y) continue;
    const xn = /^\d+$/.test(x);
    const yn = /^\d+$/.test(y);
    if (xn && yn) return Number(x) < Number(y) ? -1 : 1;
    if (xn !== yn) return xn ? -1 : 1;
    return x < y ? -1 : 1;
  }
  return 0;
}

type Comparator = (v: SemVer) => boolean;

const COMPARATOR_RE = /^(>=|<=|!=|==|=|>|<|~|\^)?\s*(\S+)$/;

function comparator(text: string, range: string): Comparator {
  const m = COMPARATOR_RE.exec(text);
  const v = m ? parseSemVer(m[2] as string) : undefined;
  if (!m || !v) throw new FilterError("bad_filter", `invalid semver range ${JSON.stringify(range)}`);
  const cmp = (x: SemVer) => compareSemVer(x, v);
  switch (m[1] ?? "=") {
    case ">=":
      return (x) => cmp(x) >= 0;
    case "<=":
      return (x) => cmp(x) <= 0;
    case ">":
      return (x) => cmp(x) > 0;
    case "<":
      return (x) => cmp(x) < 0;
    case "!=":
      return (x) => cmp(x) !== 0;
    case "~":
      // ~1.2.3: same major.minor, at least the patch
      return (x) => cmp(x) >= 0 && x.major === v.major && x.minor === v.minor;
    case "^":
      // ^1.2.3: same major (same minor below 1.0), at least the version
      return (x) => cmp(x) >= 0 && x.major === v.major && (v.major > 0 || x.minor === v.minor);
    default:
      return (x) => cmp(x) === 0;
  }
}

const rangeCache = new Map<string, Comparator>();

/**
 * A range: comparators separated by spaces or commas are ANDed, `||` alternatives
 * are ORed (`>= 1.2.0, < 2`, `~1.4 || ^2.0.0`). Operators: = == != < > <= >= ~ ^.
 * Throws FilterError for a range that does not parse.
 */
export function compileSemVerRange(range: string): Comparator {
  let c = rangeCache.get(range);
  if (c) return c;
  const alternatives = range.split("||").map((alt) => {
    // "> = 1.2" is not accepted, but ">= 1.2" (operator, space, version) is.
    const parts = alt
      .replace(/(>=|<=|!=|==|=|>|<|~|\^)\s+/g, "$1")
      .split(/[\s,]+/)
      .filter((p) => p !== "");
    if (parts.length === 0)
      throw new FilterError("bad_filter", `empty semver range ${JSON.stringify(range)}`);
    const cs = parts.map((p) => comparator(p, range));
    return (v: SemVer) => cs.every((f) => f(v));
  });
  c = (v) => alternatives.some((f) => f(v));
  if (rangeCache.size > 512) rangeCache.clear();
  rangeCache.set(range, c);
  return c;
}

/** True when `version` parses and satisfies `range`; a value that is not a version never matches. */
export function semverSatisfies(version: unknown, range: string): boolean {
  const check = compileSemVerRange(range);
  if (typeof version !== "string" && typeof version !== "number") return false;
  const v = parseSemVer(String(version));
  return v !== undefined && check(v);
}
