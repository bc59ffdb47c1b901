import type { FactFilter } from "../protocol/index.js";
import { FilterError } from "./errors.js";
import { compileRegex, isSlashRegex, stripSlashes } from "./regex.js";

/** Operators a fact filter may carry on the wire (go-choria's list). */
export const FACT_OPERATORS = ["==", "=~", "!=", "<", ">", "<=", ">="] as const;
export type FactOperator = (typeof FACT_OPERATORS)[number];

// Longest alternatives first so "<=" is not read as "<" followed by "=".
const OPERATOR_RE = /<=|>=|=>|=<|!=|=~|==|<|>|=/;
const OPERATOR_CHAR = /[<>=]/;

/** Spellings accepted from users, mapped to the wire operator. */
const ALIASES: Record<string, FactOperator> = {
  "=": "==",
  "==": "==",
  "=~": "=~",
  "!=": "!=",
  "<": "<",
  ">": ">",
  "<=": "<=",
  ">=": ">=",
  "=<": "<=",
  "=>": ">=",
};

/**
 * Parses `fact<op>value` as typed on a command line (`-F`). The first operator from
 * the left is used, so values such as regexes may contain operator characters.
 * `=`, `=<` and `=>` are accepted as `==`, `<=` and `>=`; a `/x/` value means `=~`.
 */
export function parseFactFilter(input: string): FactFilter {
  const bad = (why: string): FilterError =>
    new FilterError("bad_fact_filter", `could not parse fact filter ${JSON.stringify(input)}: ${why}`);

  const m = OPERATOR_RE.exec(input);
  if (!m) throw bad("no operator (expected one of == =~ != < > <= >=)");
  const fact = input.slice(0, m.index).trim();
  const value = input.slice(m.index + m[0].length).trim();
  if (fact === "") throw bad("missing fact name");
  if (value === "") throw bad("missing value");
  // e.g. "a==<" or "a=>=b": a stray operator character means the input is ambiguous.
  if (OPERATOR_CHAR.test(value[value.length - 1] as string) || OPERATOR_CHAR.test(value[0] as string)) {
    throw bad("unexpected operator character in value");
  }
  let operator = ALIASES[m[0]] as FactOperator;
  if (isSlashRegex(value)) operator = "=~";
  return { fact, operator, value };
}

/** Walks a dotted path (`os.family`, `networking.interfaces.0.ip`); a literal dotted key wins. */
export function lookupFact(facts: Record<string, unknown>, path: string): unknown {
  if (Object.hasOwn(facts, path)) return facts[path];
  if (!path.includes(".")) return undefined;
  let cur: unknown = facts;
  for (const seg of path.split(".")) {
    if (cur === null || typeof cur !== "object") return undefined;
    if (Array.isArray(cur)) {
      if (!/^\d+$/.test(seg)) return undefined;
      cur = cur[Number(seg)];
    } else {
      if (!Object.hasOwn(cur, seg)) return undefined;
      cur = (cur as Record<string, unknown>)[seg];
    }
  }
  return cur;
}

const NUMBER_RE = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

function asNumber(s: string): number | undefined {
  const t = s.trim();
  if (!NUMBER_RE.test(t)) return undefined;
  const n = Number(t);
  return Number.isFinite(n) ? n : undefined;
}

/** strconv.ParseBool's spellings, compared case-insensitively. */
function asBool(s: string): boolean | undefined {
  switch (s.trim().toLowerCase()) {
    case "1":
    case "t":
    case "true":
      return true;
    case "0":
    case "f":
    case "false":
      return false;
    default:
      return undefined;
  }
}

function ordered(op: FactOperator, cmp: number): boolean {
  switch (op) {
    case "==":
      return cmp === 0;
    case "!=":
      return cmp !== 0;
    case "<":
      return cmp < 0;
    case ">":
      return cmp > 0;
    case "<=":
      return cmp <= 0;
    case ">=":
      return cmp >= 0;
    default:
      return false;
  }
}

function regexMatch(subject: string, value: string): boolean {
  // Fact regexes are case-insensitive, as are go-choria's fact string comparisons.
  const re = compileRegex(stripSlashes(value), "i");
  return re !== null && re.test(subject);
}

/**
 * Evaluates one fact filter against a node's facts. A missing fact, null, or an
 * object/array value never matches (not even `!=`), as in go-choria.
 */
export function matchFact(filter: FactFilter, facts: Record<string, unknown>): boolean {
  const op = ALIASES[filter.operator];
  if (op === undefined) {
    throw new FilterError("bad_fact_filter", `unknown fact operator ${JSON.stringify(filter.operator)}`);
  }
  const actual = lookupFact(facts, filter.fact);
  const value = filter.value;

  if (actual === undefined || actual === null || typeof actual === "object") return false;

  if (op === "=~") return regexMatch(String(actual), value);
  // `/x/` with == or != is a regex too (older clients send it that way).
  if (isSlashRegex(value) && (op === "==" || op === "!=")) {
    return regexMatch(String(actual), value) === (op === "==");
  }

  if (typeof actual === "boolean") {
    if (op !== "==" && op !== "!=") return false;
    const want = asBool(value);
    const eq = want !== undefined && want === actual;
    return op === "==" ? eq : !eq;
  }

  if (typeof actual === "number" || typeof actual === "string") {
    const a = typeof actual === "number" ? actual : asNumber(actual);
    const b = asNumber(value);
    if (a !== undefined && b !== undefined) return ordered(op, a === b ? 0 : a < b ? -1 : 1);
    if (typeof actual === "number") {
      // A number fact against a non-numeric value: only "not equal" can hold.
      return op === "!=";
    }
    const x = actual.toLowerCase();
    const y = value.toLowerCase();
    return ordered(op, x === y ? 0 : x < y ? -1 : 1);
  }

  return false;
}
