import { DYNAMIC, compileExpression, contains, type ExprEnv } from "./expr.js";
import { lookupFact, matchFact, parseFactFilter } from "./facts.js";
import { FilterError } from "./errors.js";
import { matchClasses, type NodeInfo } from "./match.js";
import { compileSemVerRange, semverSatisfies } from "./semver.js";
import { isSlashRegex, regexProblem } from "./regex.js";
import type { FactFilter } from "../protocol/index.js";

/** `with("x")` reads its word like `-W` does: a fact filter when it parses as one, else a class. */
type WithTest = { fact: FactFilter } | { cls: string };

const withCache = new Map<string, WithTest>();

function parseWith(word: string): WithTest {
  let w = withCache.get(word);
  if (w) return w;
  try {
    w = { fact: parseFactFilter(word) };
  } catch {
    w = { cls: word };
  }
  if (withCache.size > 512) withCache.clear();
  withCache.set(word, w);
  return w;
}

function checkRegexWord(word: string): string | undefined {
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

/**
 * The `-S` environment, Choria's compound filter names: `facts`, `classes`,
 * `agents`, `identity`, and `with()`, `fact()`, `include()`, `semver()`.
 */
export const NODE_ENV: ExprEnv<NodeInfo> = {
  what: "compound filter",
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
        return "fact" in w ? matchFact(w.fact, n.facts) : matchClasses([w.cls], n.classes);
      },
      check([word]) {
        if (word === DYNAMIC) return undefined;
        if (typeof word !== "string" || word.trim() === "")
          return 'expects a string such as "os=linux" or "role::web"';
        return checkRegexWord(word.trim());
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
  f = compileExpression(expr, NODE_ENV);
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
