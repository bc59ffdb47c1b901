import { DYNAMIC, compileExpression, contains, type ExprEnv, type ExprFunction } from "./expr.js";
import { lookupFact, matchFact, parseFactWord } from "./facts.js";
import { FilterError } from "./errors.js";
import { matchClasses, type NodeInfo } from "./match.js";
import { compileSemVerRange, semverSatisfies } from "./semver.js";
import { isSlashRegex, regexProblem } from "./regex.js";
import type { FactFilter } from "../protocol/index.js";

/**
 * `with("x")` reads its word like `-W` does: a fact filter when it parses as one, else a
 * class; a fact filter whose regex does not compile matches nothing.
 */
type WithTest = { fact: FactFilter } | { cls: string } | { none: true };

const withCache = new Map<string, WithTest>();

function parseWith(word: string): WithTest {
  let w = withCache.get(word);
  if (w) return w;
  try {
    const fact = parseFactWord(word);
    w = fact ? { fact } : { cls: word };
  } catch {
    w = { none: true };
  }
  if (withCache.size > 512) withCache.clear();
  withCache.set(word, w);
  return w;
}

function checkWithWord(word: string): string | undefined {
  try {
    if (parseFactWord(word)) return undefined;
  } catch (err) {
    return (err as Error).message;
  }
  if (!isSlashRegex(word)) return undefined;
  const why = regexProblem(word.slice(1, -1));
  return why === undefined ? undefined : `bad regular expression: ${why}`;
}

/** semver(value, range), with the range checked when it is a constant. */
const semverFn = {
  min: 2,
  max: 2,
  call: (_: unknown, [v, range]: unknown[]) => typeof range === "string" && semverSatisfies(v, range),
  check([, range]: unknown[]) {
    if (range === DYNAMIC || range === undefined) return undefined;
    if (typeof range !== "string") return 'the range must be a string such as ">= 1.2.3"';
    try {
      compileSemVerRange(range);
      return undefined;
    } catch (err) {
      return (err as Error).message;
    }
  },
};

const includeFn = {
  min: 2,
  max: 2,
  call: (_: unknown, [list, value]: unknown[]) => contains(list, value),
};

/** Functions every expression language here shares (filters and reply filters). */
export const COMMON_FUNCTIONS = { include: includeFn, semver: semverFn };

/** Thrown inside an evaluation when a data function has no answer: the node does not match. */
class NoData extends Error {}

/**
 * Any other function, `fstat("/etc/hosts")` or `name()`, is a data plugin of the node,
 * answered by NodeInfo.data with an object whose fields the expression reads.
 */
function dataFunction(name: string): ExprFunction<NodeInfo> {
  return {
    min: 0,
    max: 1,
    call(n, [query]) {
      if (n.data === undefined) throw new NoData();
      let out: unknown;
      try {
        out = n.data(name, typeof query === "string" ? query : query === undefined ? "" : String(query));
      } catch {
        throw new NoData();
      }
      if (out === null || typeof out !== "object") throw new NoData();
      return out;
    },
    check: ([query]) =>
      query === undefined || query === DYNAMIC || typeof query === "string"
        ? undefined
        : "a data query is a string",
  };
}

/**
 * The `-S` environment, Choria's compound filter names: `facts`, `classes`,
 * `agents`, `identity`, and `with()`, `fact()`, `include()`, `semver()`; any other
 * function is a data plugin (built-in names win, as in go-choria).
 */
export const NODE_ENV: ExprEnv<NodeInfo> = {
  what: "compound filter",
  otherFunction: dataFunction,
  vars: {
    facts: (n) => n.facts,
    classes: (n) => n.classes,
    agents: (n) => n.agents,
    identity: (n) => n.identity,
  },
  funcs: {
    ...COMMON_FUNCTIONS,
    with: {
      min: 1,
      max: 1,
      call(n, [word]) {
        if (typeof word !== "string") return false;
        const w = parseWith(word.trim());
        if ("fact" in w) return matchFact(w.fact, n.facts);
        return "cls" in w && matchClasses([w.cls], n.classes);
      },
      check([word]) {
        if (word === DYNAMIC) return undefined;
        if (typeof word !== "string" || word.trim() === "")
          return 'expects a string such as "os=linux" or "role::web"';
        return checkWithWord(word.trim());
      },
    },
    fact: {
      min: 1,
      max: 1,
      call: (n, [path]) => (typeof path === "string" ? lookupFact(n.facts, path) : undefined),
      check: ([path]) =>
        path === DYNAMIC || typeof path === "string" ? undefined : "expects a fact path string",
    },
  },
};

const compiled = new Map<string, (n: NodeInfo) => boolean>();

/**
 * A compound expression compiled for node matching, cached by text: every hosted
 * node of an emulator evaluates the same expression. Throws ExpressionError.
 */
export function compileCompound(expr: string): (n: NodeInfo) => boolean {
  let f = compiled.get(expr);
  if (f) return f;
  const run = compileExpression(expr, NODE_ENV);
  // A data function without an answer fails the whole expression, as a failed run
  // does in go-choria, rather than reading as a value that `not` could turn true.
  f = (n) => {
    try {
      return run(n);
    } catch (err) {
      if (err instanceof NoData) return false;
      throw err;
    }
  };
  if (compiled.size > 256) compiled.clear();
  compiled.set(expr, f);
  return f;
}

/** Checks that an expression parses (CLI `-S`), returning it trimmed. */
export function parseCompoundFilter(expr: string): string {
  const e = expr.trim();
  if (e === "") throw new FilterError("bad_compound", "empty compound filter");
  compileCompound(e);
  return e;
}

/** go-choria's compound list: groups of `{expr}` maps, every expression must hold. */
export function matchCompound(groups: readonly { expr: string }[][], node: NodeInfo): boolean {
  for (const group of groups) {
    for (const q of group) {
      if (typeof q?.expr !== "string")
        throw new FilterError("bad_compound", "compound entry without an expr");
      if (!compileCompound(q.expr)(node)) return false;
    }
  }
  return true;
}
