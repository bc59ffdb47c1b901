import type { FactFilter } from "../protocol/index.js";
import { FilterError } from "./errors.js";
import { compileRegex, isSlashRegex, regexProblem, stripSlashes } from "./regex.js";

/** Operators a fact filter may carry on the wire (go-choria's list). */
export const FACT_OPERATORS = ["==", "=~", "!=", "<", ">", "<=", ">="] as const;
export type FactOperator = (typeof FACT_OPERATORS)[number];

// go-choria's operator pattern, alternatives in its order, so the same text splits the same way.
const OPERATOR_RE = /<=|>=|=>|=<|<|>|!=|=~|==?/g;
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
 * Splits `fact<op>value` without judging the value: go-choria's rule, the right-most
 * operator, so fact paths may hold operators (`storage.#(name="sda").size>=64`). One
 * exception: the left-most operator whose value is a whole `/regex/` wins, so a regex
 * may contain operator characters (go-choria would split inside the regex).
 */
function splitFactFilter(input: string): FactFilter {
  const bad = (why: string): FilterError =>
    new FilterError("bad_fact_filter", `could not parse fact filter ${JSON.stringify(input)}: ${why}`);

  const ops = [...input.matchAll(OPERATOR_RE)];
  if (ops.length === 0) throw bad("no operator (expected one of == =~ != < > <= >=)");
  const at = (m: RegExpMatchArray) => ({
    fact: input.slice(0, m.index).trim(),
    op: m[0],
    value: input.slice((m.index as number) + m[0].length).trim(),
  });
  const split =
    ops.map(at).find((c) => c.fact !== "" && isSlashRegex(c.value)) ??
    at(ops[ops.length - 1] as RegExpMatchArray);
  const { fact, value } = split;
  if (fact === "") throw bad("missing fact name");
  if (value === "") throw bad("missing value");
  // e.g. "a==b<" or "a===b": a stray operator character means the input is ambiguous.
  if (
    OPERATOR_CHAR.test(value[value.length - 1] as string) ||
    OPERATOR_CHAR.test(fact[0] as string) ||
    OPERATOR_CHAR.test(fact[fact.length - 1] as string)
  ) {
    throw bad("unexpected operator character");
  }
  // Operators belong inside `#(...)` queries only; "motd==a=b" would otherwise name
  // a fact "motd==a" that no node has.
  if (new RegExp(OPERATOR_RE.source).test(withoutQueries(fact))) {
    throw bad("more than one operator outside a #(...) query (use =~ for values containing operators)");
  }
  let operator = ALIASES[split.op] as FactOperator;
  if (isSlashRegex(value)) operator = "=~";
  return { fact, operator, value };
}

const INNER_QUERY = /#\((?:"(?:[^"\\]|\\.)*"|[^()"])*\)#?/g;

/** A fact path with its `#(...)` queries removed, innermost first. */
function withoutQueries(path: string): string {
  for (let prev = ""; prev !== path;) {
    prev = path;
    path = path.replace(INNER_QUERY, "");
  }
  return path;
}

/** The pattern a fact filter matches with, when it is a regex: `=~`, or a `/x/` value. */
function factRegex(f: FactFilter): string | undefined {
  if (f.operator === "=~") return stripSlashes(f.value);
  if (isSlashRegex(f.value)) return f.value.slice(1, -1);
  return undefined;
}

/**
 * Throws FilterError when a fact filter's regex would not compile on the nodes, where
 * it would silently match nothing; checked before anything is sent.
 */
export function checkFactFilter(f: FactFilter, input = `${f.fact}${f.operator}${f.value}`): FactFilter {
  const re = factRegex(f);
  const why = re === undefined ? undefined : regexProblem(re, "i");
  if (why !== undefined) {
    throw new FilterError(
      "bad_fact_filter",
      `invalid regular expression in fact filter ${JSON.stringify(input)}: ${why}`,
    );
  }
  return f;
}

/**
 * Parses `fact<op>value` as typed on a command line (`-F`). `=`, `=<` and `=>` are
 * accepted as `==`, `<=` and `>=`; a `/x/` value means `=~`. A regex that does not
 * compile is refused here.
 */
export function parseFactFilter(input: string): FactFilter {
  return checkFactFilter(splitFactFilter(input), input);
}

/**
 * For `-W` and `with()`: a fact filter when the word splits as one (whose regex must
 * then compile), undefined when it does not (the word is a class).
 */
export function parseFactWord(word: string): FactFilter | undefined {
  let f: FactFilter;
  try {
    f = splitFactFilter(word);
  } catch {
    return undefined;
  }
  return checkFactFilter(f, word);
}

type PathPart =
  | { kind: "key"; key: string }
  /** `#`: an array's length, or with more path after it, that path over each element */
  | { kind: "each" }
  /** `#(path op value)`, first match; `#(...)#`, every match */
  | ({ kind: "query"; all: boolean } & Query);

/** A query's left side (empty: the element itself), gjson operator (`=` for `==`), value. */
interface Query {
  path: PathPart[];
  op: string;
  value: string;
}

const QUERY_OP = /^(==|=|!=|<=|>=|<|>)/;

/**
 * Splits a gjson-style path on dots outside `#(...)` and quotes; `\` escapes the next
 * character. Undefined when it does not parse (unbalanced parentheses or quotes).
 */
function splitPath(path: string): PathPart[] | undefined {
  const parts: PathPart[] = [];
  let i = 0;
  while (i <= path.length) {
    if (path.startsWith("#(", i)) {
      let depth = 0;
      let quote = false;
      let j = i + 1;
      for (; j < path.length; j++) {
        const c = path[j];
        if (quote) {
          if (c === "\\") j++;
          else if (c === '"') quote = false;
        } else if (c === '"') quote = true;
        else if (c === "(") depth++;
        else if (c === ")" && --depth === 0) break;
      }
      if (j >= path.length) return undefined;
      const q = parseQuery(path.slice(i + 2, j));
      if (!q) return undefined;
      const all = path[j + 1] === "#";
      parts.push({ kind: "query", ...q, all });
      i = j + (all ? 2 : 1);
      if (i < path.length && path[i] !== ".") return undefined;
      i++;
      continue;
    }
    let key = "";
    let escaped = false;
    for (; i < path.length && path[i] !== "."; i++) {
      if (path[i] === "\\" && i + 1 < path.length) {
        i++;
        escaped = true;
      }
      key += path[i] as string;
    }
    parts.push(key === "#" && !escaped ? { kind: "each" } : { kind: "key", key });
    i++;
  }
  return parts;
}

/** `name=="x"`, `size>10`, `=="x"` (the element itself), or just `name` (the element has it). */
function parseQuery(q: string): Query | undefined {
  let k = 0;
  let quote = false;
  let depth = 0;
  for (; k < q.length; k++) {
    const c = q[k];
    if (quote) {
      if (c === "\\") k++;
      else if (c === '"') quote = false;
    } else if (c === '"') quote = true;
    else if (c === "(") depth++;
    else if (c === ")") depth--;
    else if (depth === 0 && (c === "=" || c === "!" || c === "<" || c === ">")) break;
  }
  const left = q.slice(0, k).trim();
  const path = left === "" ? [] : splitPath(left);
  if (path === undefined) return undefined;
  if (k === q.length) return left === "" ? undefined : { path, op: "", value: "" };
  const m = QUERY_OP.exec(q.slice(k));
  if (!m) return undefined;
  let value = q.slice(k + m[0].length).trim();
  if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) {
    try {
      value = JSON.parse(value) as string;
    } catch {
      value = value.slice(1, -1);
    }
  }
  return { path, op: m[0] === "==" ? "=" : m[0], value };
}

/** gjson's query comparison: strings exactly, numbers numerically, booleans by name. */
function queryMatches(q: Query, element: unknown): boolean {
  const v = walk(element, q.path);
  if (v === undefined) return false;
  if (q.op === "") return true;
  const cmp = (x: number | string, y: number | string): boolean | undefined => {
    switch (q.op) {
      case "=":
        return x === y;
      case "!=":
        return x !== y;
      case "<":
        return x < y;
      case "<=":
        return x <= y;
      case ">":
        return x > y;
      case ">=":
        return x >= y;
      default:
        return undefined;
    }
  };
  if (typeof v === "string") return cmp(v, q.value) === true;
  if (typeof v === "number") {
    const n = asNumber(q.value);
    return n !== undefined && cmp(v, n) === true;
  }
  if (typeof v === "boolean") {
    // false < true, as gjson orders them
    const want = q.value === "true" ? 1 : q.value === "false" ? 0 : undefined;
    return want !== undefined && cmp(v ? 1 : 0, want) === true;
  }
  return false;
}

function walk(cur: unknown, parts: readonly PathPart[]): unknown {
  for (let p = 0; p < parts.length; p++) {
    const part = parts[p] as PathPart;
    if (cur === null || typeof cur !== "object") return undefined;
    if (part.kind === "key") {
      if (Array.isArray(cur)) {
        if (!/^\d+$/.test(part.key)) return undefined;
        cur = cur[Number(part.key)];
      } else {
        if (!Object.hasOwn(cur, part.key)) return undefined;
        cur = (cur as Record<string, unknown>)[part.key];
      }
      continue;
    }
    if (!Array.isArray(cur)) return undefined;
    const rest = parts.slice(p + 1);
    if (part.kind === "each") {
      if (rest.length === 0) return cur.length;
      return cur.map((e) => walk(e, rest)).filter((e) => e !== undefined);
    }
    if (part.all) {
      const hits = cur.filter((e) => queryMatches(part, e));
      return rest.length === 0 ? hits : hits.map((e) => walk(e, rest)).filter((e) => e !== undefined);
    }
    const hit = cur.find((e) => queryMatches(part, e));
    return hit === undefined ? undefined : walk(hit, rest);
  }
  return cur;
}

const pathCache = new Map<string, PathPart[] | null>();

/**
 * Looks a fact up by a gjson-style path, as go-choria does: dots (`os.family`), array
 * indexes (`networking.interfaces.0.ip`), `#` (length), and queries on arrays of
 * objects, `#(name=="sda")` for the first match and `#(size>10)#` for all. A literal
 * key containing dots wins. Other gjson syntax (wildcards, `%`, modifiers) is not
 * supported and matches nothing.
 */
export function lookupFact(facts: Record<string, unknown>, path: string): unknown {
  if (Object.hasOwn(facts, path)) return facts[path];
  if (!path.includes(".") && !path.includes("#")) return undefined;
  let parts = pathCache.get(path);
  if (parts === undefined) {
    parts = splitPath(path) ?? null;
    // every hosted node of an emulator looks the same few paths up
    if (pathCache.size > 512) pathCache.clear();
    pathCache.set(path, parts);
  }
  return parts === null ? undefined : walk(facts, parts);
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
    // go-choria's neMatch, for true and false facts alike: "the value is not a true
    // spelling". So `false != false` holds and `false != true` does not; kept so a
    // mixed fleet answers a filter the same way.
    if (op === "!=") return asBool(value) !== true;
    if (op !== "==") return false;
    const want = asBool(value);
    return want !== undefined && want === actual;
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
