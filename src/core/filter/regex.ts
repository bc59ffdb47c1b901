/**
 * Filters are matched against every hosted node (the emulator runs thousands per
 * process), and their patterns come from whoever sends a request: they compile with
 * the shared linear-time engine and its bounded LRU cache (protocol/regex.ts). A
 * pattern that does not compile, or is too large, matches nothing, as in go-choria.
 */
export {
  MAX_REGEX_LENGTH,
  MAX_REGEX_PROGRAM,
  type SafeRegex,
  compileRegex,
  regexProblem,
  isSafeRegex,
} from "../protocol/index.js";

/** `/x/` marks a regular expression in identity, class, agent and fact values. */
export function isSlashRegex(s: string): boolean {
  return s.length >= 2 && s.startsWith("/") && s.endsWith("/");
}

export function stripSlashes(s: string): string {
  return isSlashRegex(s) ? s.slice(1, -1) : s;
}
