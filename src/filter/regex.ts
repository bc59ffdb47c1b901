/**
 * Filters are matched against every hosted node (the emulator runs thousands per
 * process), so compiled patterns are cached. An invalid pattern is cached as null:
 * go-choria treats a regex that does not compile as "no match", not as an error.
 */
const cache = new Map<string, RegExp | null>();
const MAX_CACHE = 2048;

export function compileRegex(pattern: string, flags = ""): RegExp | null {
  const key = flags + "\0" + pattern;
  let re = cache.get(key);
  if (re !== undefined) return re;
  try {
    re = new RegExp(pattern, flags);
  } catch {
    re = null;
  }
  // Crude bound: filters are few and repeat, so a full reset is rare and cheap.
  if (cache.size >= MAX_CACHE) cache.clear();
  cache.set(key, re);
  return re;
}

/** `/x/` marks a regular expression in identity, class, agent and fact values. */
export function isSlashRegex(s: string): boolean {
  return s.length >= 2 && s.startsWith("/") && s.endsWith("/");
}

export function stripSlashes(s: string): string {
  return isSlashRegex(s) ? s.slice(1, -1) : s;
}
