import { FilterError } from "./errors.js";
import { compileRegex, isSafeRegex, regexProblem, stripSlashes, type SafeRegex } from "./regex.js";

/**
 * A small expression language (a subset of expr-lang as Choria's `-S` and
 * `--filter-replies` use it): a tokenizer and a recursive-descent parser that
 * compile straight to closures, so an expression is parsed once and evaluated per
 * node or reply at the cost of a few function calls.
 *
 *   or      := and (("||" | "or") and)*
 *   and     := unary (("&&" | "and") unary)*
 *   unary   := ("!" | "not") unary | compare
 *   compare := postfix (("==" | "!=" | "<" | ">" | "<=" | ">=" | "=~" | "matches" | "in" | "not in") postfix)?
 *   postfix := primary ("." name | "[" or "]")*
 *   primary := number | string | /regex/ | true | false | nil | name | name "(" args ")" | "(" or ")" | "[" args "]"
 */

/** A parse error: which column (1-based) of which expression, and why. */
export class ExpressionError extends FilterError {
  readonly column: number;
  readonly expression: string;
  readonly reason: string;
  constructor(expression: string, column: number, reason: string, what = "expression") {
    super("bad_compound", `invalid ${what} ${JSON.stringify(expression)}: column ${column}: ${reason}`);
    this.column = column;
    this.expression = expression;
    this.reason = reason;
  }

  /** The expression with a caret under the failing column, for terminals. */
  pointer(): string {
    return `${this.expression}\n${" ".repeat(Math.max(0, this.column - 1))}^`;
  }
}

type TokKind = "num" | "str" | "regex" | "name" | "op" | "eof";
interface Token {
  kind: TokKind;
  text: string;
  value?: unknown;
  col: number;
}

const OPERATORS = ["==", "!=", "<=", ">=", "=~", "&&", "||", "<", ">", "!", "(", ")", "[", "]", ",", "."];
const KEYWORDS = new Set(["and", "or", "not", "in", "matches", "true", "false", "nil", "null"]);

function tokenize(src: string, fail: (col: number, why: string) => never): Token[] {
  const out: Token[] = [];
  let i = 0;
  // A "/" starts a regex literal only where a value may start (there is no division).
  const valueExpected = () => {
    const last = out[out.length - 1];
    if (!last) return true;
    if (last.kind === "op") return ![")", "]"].includes(last.text);
    return (
      last.kind === "name" && KEYWORDS.has(last.text) && !["true", "false", "nil", "null"].includes(last.text)
    );
  };
  while (i < src.length) {
    const c = src[i] as string;
    const col = i + 1;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (/[0-9]/.test(c)) {
      const m = /^\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/.exec(src.slice(i)) as RegExpExecArray;
      out.push({ kind: "num", text: m[0], value: Number(m[0]), col });
      i += m[0].length;
      continue;
    }
    if (c === '"' || c === "'" || c === "`") {
      let j = i + 1;
      let s = "";
      for (;;) {
        if (j >= src.length) fail(col, "unterminated string");
        const d = src[j] as string;
        if (d === c) break;
        if (d === "\\" && c !== "`") {
          const e = src[j + 1];
          if (e === undefined) fail(col, "unterminated string");
          s += e === "n" ? "\n" : e === "t" ? "\t" : e;
          j += 2;
          continue;
        }
        s += d;
        j++;
      }
      out.push({ kind: "str", text: src.slice(i, j + 1), value: s, col });
      i = j + 1;
      continue;
    }
    if (c === "/" && valueExpected()) {
      let j = i + 1;
      let body = "";
      for (;;) {
        if (j >= src.length) fail(col, "unterminated regular expression");
        const d = src[j] as string;
        if (d === "/") break;
        if (d === "\\" && src[j + 1] === "/") {
          body += "/";
          j += 2;
          continue;
        }
        if (d === "\\" && j + 1 < src.length) {
          body += d + (src[j + 1] as string);
          j += 2;
          continue;
        }
        body += d;
        j++;
      }
      let k = j + 1;
      while (k < src.length && /[imsu]/.test(src[k] as string)) k++;
      const flags = src.slice(j + 1, k);
      const re = compileRegex(body, flags);
      if (!re) fail(col, `bad regular expression: ${regexProblem(body, flags) ?? "invalid"}`);
      out.push({ kind: "regex", text: src.slice(i, k), value: re, col });
      i = k;
      continue;
    }
    if (/[A-Za-z_]/.test(c)) {
      const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(src.slice(i)) as RegExpExecArray;
      out.push({ kind: "name", text: m[0], col });
      i += m[0].length;
      continue;
    }
    const op = OPERATORS.find((o) => src.startsWith(o, i));
    if (op) {
      out.push({ kind: "op", text: op, col });
      i += op.length;
      continue;
    }
    if (c === "=") fail(col, 'unknown operator "=" (use == to compare, =~ to match)');
    if (c === "&" || c === "|") fail(col, `unknown operator "${c}" (use ${c}${c})`);
    fail(col, `unexpected character ${JSON.stringify(c)}`);
  }
  out.push({ kind: "eof", text: "end of input", col: src.length + 1 });
  return out;
}

/** Marks an argument whose value is only known at evaluation time. */
export const DYNAMIC: unique symbol = Symbol("dynamic");

export interface ExprFunction<C> {
  /** argument count bounds */
  min: number;
  max: number;
  call(ctx: C, args: unknown[]): unknown;
  /** validates constant arguments at compile time; returns a reason to reject */
  check?(args: unknown[]): string | undefined;
}

/** The names an expression may use: variables and functions, both over a context C. */
export interface ExprEnv<C> {
  vars: Record<string, (ctx: C) => unknown>;
  funcs: Record<string, ExprFunction<C>>;
  /**
   * Resolves a call to a name that is not in funcs (the node's data plugins, which the
   * client cannot know); without it such a call is a parse error.
   */
  otherFunction?: (name: string) => ExprFunction<C>;
  /** how errors name the expression ("compound filter", "reply filter") */
  what?: string;
}

type Eval<C> = (ctx: C) => unknown;

// ---- value semantics -------------------------------------------------------

const NUMERIC = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

function num(v: unknown): number | undefined {
  if (typeof v === "number") return v;
  if (typeof v === "string" && NUMERIC.test(v.trim())) return Number(v);
  return undefined;
}

/** Truthiness for and/or/not: booleans as is, "true"/"false" strings, non-zero numbers. */
export function truthy(v: unknown): boolean {
  if (typeof v === "boolean") return v;
  if (typeof v === "number") return v !== 0;
  if (typeof v === "string") return ["true", "t", "yes", "y", "1"].includes(v.toLowerCase());
  return false;
}

/** Equality that tolerates facts typed as strings: 8 == "8", true == "true". */
export function looseEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a === undefined || a === null || b === undefined || b === null) {
    return (a === undefined || a === null) && (b === undefined || b === null);
  }
  if (typeof a === "number" || typeof b === "number") {
    const x = num(a);
    const y = num(b);
    return x !== undefined && y !== undefined && x === y;
  }
  if (typeof a === "boolean" || typeof b === "boolean") return String(a) === String(b);
  if (typeof a === "object" || typeof b === "object") return JSON.stringify(a) === JSON.stringify(b);
  return false;
}

function order(a: unknown, b: unknown): number | undefined {
  const x = num(a);
  const y = num(b);
  if (x !== undefined && y !== undefined) return x === y ? 0 : x < y ? -1 : 1;
  if (typeof a === "string" && typeof b === "string") return a === b ? 0 : a < b ? -1 : 1;
  return undefined;
}

function toRegex(v: unknown): SafeRegex | null {
  if (isSafeRegex(v)) return v;
  if (typeof v === "string") return compileRegex(stripSlashes(v));
  return null;
}

/** `x =~ re`: the right side a /regex/ or a string pattern; a missing left side never matches. */
export function regexTest(subject: unknown, pattern: unknown): boolean {
  if (subject === undefined || subject === null || typeof subject === "object") return false;
  const re = toRegex(pattern);
  return re !== null && re.test(String(subject));
}

export function contains(haystack: unknown, needle: unknown): boolean {
  if (Array.isArray(haystack)) return haystack.some((h) => looseEqual(h, needle));
  if (typeof haystack === "string") return typeof needle === "string" && haystack.includes(needle);
  if (haystack !== null && typeof haystack === "object") {
    return typeof needle === "string" && Object.hasOwn(haystack, needle);
  }
  return false;
}

function member(obj: unknown, key: unknown): unknown {
  if (obj === null || obj === undefined) return undefined;
  if (Array.isArray(obj)) {
    const n = num(key);
    if (n === undefined || !Number.isInteger(n)) return undefined;
    return obj[n < 0 ? obj.length + n : n];
  }
  if (typeof obj === "object" && (typeof key === "string" || typeof key === "number")) {
    const k = String(key);
    return Object.hasOwn(obj, k) ? (obj as Record<string, unknown>)[k] : undefined;
  }
  return undefined;
}

// ---- parser ------------------------------------------------------------------

/**
 * Bounds on an expression, which may come from any caller inside a request: parsing
 * recurses once per nesting level and evaluation once per operator, so both are capped
 * far below the stack's limit (a real filter has a few dozen tokens).
 */
export const MAX_EXPR_TOKENS = 1000;
export const MAX_EXPR_DEPTH = 64;

class Parser<C> {
  private pos = 0;
  private depth = 0;
  private readonly toks: Token[];

  constructor(
    private readonly src: string,
    private readonly env: ExprEnv<C>,
  ) {
    this.toks = tokenize(src, (col, why) => this.fail(col, why));
    if (this.toks.length > MAX_EXPR_TOKENS + 1) {
      this.fail(1, `expression has more than ${MAX_EXPR_TOKENS} tokens`);
    }
  }

  private enter(): void {
    if (++this.depth > MAX_EXPR_DEPTH)
      this.fail(this.peek().col, `nested deeper than ${MAX_EXPR_DEPTH} levels`);
  }

  fail(col: number, why: string): never {
    throw new ExpressionError(this.src, col, why, this.env.what);
  }

  private peek(): Token {
    return this.toks[this.pos] as Token;
  }

  private next(): Token {
    return this.toks[this.pos++] as Token;
  }

  private isOp(text: string): boolean {
    const t = this.peek();
    return t.kind === "op" && t.text === text;
  }

  private isWord(text: string): boolean {
    const t = this.peek();
    return t.kind === "name" && t.text === text;
  }

  private expectOp(text: string): void {
    const t = this.peek();
    if (t.kind !== "op" || t.text !== text) this.fail(t.col, `expected "${text}", found ${describe(t)}`);
    this.pos++;
  }

  parse(): Eval<C> {
    if (this.peek().kind === "eof") this.fail(1, "empty expression");
    const e = this.or();
    const t = this.peek();
    if (t.kind !== "eof") this.fail(t.col, `unexpected ${describe(t)}`);
    return e;
  }

  private or(): Eval<C> {
    this.enter();
    let left = this.and();
    while (this.isOp("||") || this.isWord("or")) {
      this.pos++;
      const l = left;
      const r = this.and();
      left = (c) => truthy(l(c)) || truthy(r(c));
    }
    this.depth--;
    return left;
  }

  private and(): Eval<C> {
    let left = this.unary();
    while (this.isOp("&&") || this.isWord("and")) {
      this.pos++;
      const l = left;
      const r = this.unary();
      left = (c) => truthy(l(c)) && truthy(r(c));
    }
    return left;
  }

  private unary(): Eval<C> {
    if (this.isOp("!") || this.isWord("not")) {
      this.pos++;
      this.enter();
      const e = this.unary();
      this.depth--;
      return (c) => !truthy(e(c));
    }
    return this.compare();
  }

  private compare(): Eval<C> {
    const l = this.postfix();
    const t = this.peek();
    let op: string | undefined;
    if (t.kind === "op" && ["==", "!=", "<", ">", "<=", ">=", "=~"].includes(t.text)) op = t.text;
    else if (t.kind === "name" && (t.text === "matches" || t.text === "in")) op = t.text;
    else if (t.kind === "name" && t.text === "not" && this.toks[this.pos + 1]?.text === "in") {
      this.pos++;
      op = "not in";
    }
    if (op === undefined) return l;
    this.pos++;
    const r = this.postfix();
    switch (op) {
      case "==":
        return (c) => looseEqual(l(c), r(c));
      case "!=":
        return (c) => !looseEqual(l(c), r(c));
      case "<":
        return (c) => (order(l(c), r(c)) ?? 0) < 0;
      case ">":
        return (c) => (order(l(c), r(c)) ?? 0) > 0;
      case "<=": {
        return (c) => {
          const o = order(l(c), r(c));
          return o !== undefined && o <= 0;
        };
      }
      case ">=": {
        return (c) => {
          const o = order(l(c), r(c));
          return o !== undefined && o >= 0;
        };
      }
      case "in":
        return (c) => contains(r(c), l(c));
      case "not in":
        return (c) => !contains(r(c), l(c));
      default:
        return (c) => regexTest(l(c), r(c));
    }
  }

  private postfix(): Eval<C> {
    let e = this.primary();
    for (;;) {
      if (this.isOp(".")) {
        this.pos++;
        const t = this.next();
        // `facts.os.family`; numeric segments index arrays (`facts.net.0`).
        if (t.kind !== "name" && t.kind !== "num")
          this.fail(t.col, `expected a name after ".", found ${describe(t)}`);
        const key = t.text;
        const o = e;
        e = (c) => member(o(c), key);
      } else if (this.isOp("[")) {
        this.pos++;
        const k = this.or();
        this.expectOp("]");
        const o = e;
        e = (c) => member(o(c), k(c));
      } else {
        return e;
      }
    }
  }

  /** Comma separated expressions up to `close`; each with its column and, when constant, its value. */
  private args(close: string): { evals: Eval<C>[]; consts: unknown[]; cols: number[] } {
    const evals: Eval<C>[] = [];
    const consts: unknown[] = [];
    const cols: number[] = [];
    if (this.isOp(close)) {
      this.pos++;
      return { evals, consts, cols };
    }
    for (;;) {
      const start = this.peek();
      const before = this.pos;
      evals.push(this.or());
      cols.push(start.col);
      const single = this.pos === before + 1 && ["num", "str", "regex"].includes(start.kind);
      consts.push(single ? start.value : DYNAMIC);
      if (this.isOp(",")) {
        this.pos++;
        continue;
      }
      this.expectOp(close);
      return { evals, consts, cols };
    }
  }

  private primary(): Eval<C> {
    const t = this.next();
    switch (t.kind) {
      case "num":
      case "str":
      case "regex": {
        const v = t.value;
        return () => v;
      }
      case "op":
        if (t.text === "(") {
          const e = this.or();
          this.expectOp(")");
          return e;
        }
        if (t.text === "[") {
          const { evals } = this.args("]");
          return (c) => evals.map((e) => e(c));
        }
        return this.fail(t.col, `unexpected ${describe(t)}`);
      case "name":
        return this.name(t);
      default:
        return this.fail(t.col, "unexpected end of input");
    }
  }

  private name(t: Token): Eval<C> {
    switch (t.text) {
      case "true":
        return () => true;
      case "false":
        return () => false;
      case "nil":
      case "null":
        return () => undefined;
    }
    if (KEYWORDS.has(t.text)) this.fail(t.col, `unexpected "${t.text}"`);
    if (this.isOp("(")) {
      const fn = Object.hasOwn(this.env.funcs, t.text)
        ? this.env.funcs[t.text]
        : this.env.otherFunction?.(t.text);
      if (!fn)
        this.fail(t.col, `unknown function "${t.text}" (known: ${Object.keys(this.env.funcs).join(", ")})`);
      this.pos++;
      const { evals, consts, cols } = this.args(")");
      if (evals.length < fn.min || evals.length > fn.max) {
        const want = fn.min === fn.max ? `${fn.min}` : `${fn.min} to ${fn.max}`;
        this.fail(t.col, `${t.text}() takes ${want} argument${fn.max === 1 ? "" : "s"}, got ${evals.length}`);
      }
      const why = fn.check?.(consts);
      if (why !== undefined) {
        // Point at the first constant argument: that is what the check looked at.
        const at = consts.findIndex((c) => c !== DYNAMIC);
        this.fail(at >= 0 ? (cols[at] as number) : t.col, `${t.text}(): ${why}`);
      }
      if (evals.length === 0) return (c) => fn.call(c, []);
      return (c) =>
        fn.call(
          c,
          evals.map((e) => e(c)),
        );
    }
    const v = Object.hasOwn(this.env.vars, t.text) ? this.env.vars[t.text] : undefined;
    if (!v) {
      const hint = Object.hasOwn(this.env.funcs, t.text) ? ` (${t.text} is a function: ${t.text}(...))` : "";
      this.fail(t.col, `unknown name "${t.text}"${hint}`);
    }
    return v;
  }
}

function describe(t: Token): string {
  if (t.kind === "eof") return "end of input";
  return `"${t.text}"`;
}

/** Parses `src` against `env`; throws ExpressionError (with the column) when it does not parse. */
export function compileExpression<C>(src: string, env: ExprEnv<C>): (ctx: C) => boolean {
  const e = new Parser(src, env).parse();
  return (c) => truthy(e(c));
}

/** Like compileExpression but returns the raw value (not coerced to a boolean). */
export function compileValue<C>(src: string, env: ExprEnv<C>): (ctx: C) => unknown {
  return new Parser(src, env).parse();
}
