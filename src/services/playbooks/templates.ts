/**
 * Choria's `{{{ expr }}}` templates. Rendering is type-preserving: a string that is exactly
 * one template becomes the value itself (a node set stays an array, a number a number);
 * inside a longer string arrays become `a,b,c` and objects JSON.
 *
 * Expressions: a dotted path under `inputs`, `nodes`, `metadata` or `previous_task`
 * (`inputs.cfg.port`, `nodes.web.0`, `inputs.list[1]`), or a function: `uuid`,
 * `elapsed_time`, `utc_date("%Y-%m-%d")`, `date("%H:%M")` (parentheses optional).
 */
import { randomUUID } from "node:crypto";
import { PlaybookError } from "./errors.js";
import type { TemplateContext } from "./types.js";

const TEMPLATE_RE = /\{\{\{(.*?)\}\}\}/gs;
const WHOLE_RE = /^\s*\{\{\{(.*?)\}\}\}\s*$/s;

/** The roots a path may start with. */
export const TEMPLATE_ROOTS = ["inputs", "nodes", "metadata", "previous_task"] as const;
/** The functions an expression may call. */
export const TEMPLATE_FUNCTIONS = ["uuid", "elapsed_time", "utc_date", "date"] as const;
const PREVIOUS_TASK_KEYS = ["success", "description", "msg", "data", "runtime"];

/** The default format of `date`/`utc_date` without an argument: ISO 8601 with the offset. */
const DEFAULT_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S%z";

export type TemplateExpr =
  | { kind: "path"; root: string; path: (string | number)[]; text: string }
  | { kind: "call"; name: string; arg?: string; text: string };

/** Parses the inside of `{{{ … }}}`; throws bad_template when it is not an expression. */
export function parseTemplateExpr(source: string): TemplateExpr {
  const text = source.trim();
  const call = /^([a-z_]+)\s*(?:\(\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')?\s*\))?$/.exec(text);
  if (call && (TEMPLATE_FUNCTIONS as readonly string[]).includes(call[1] as string)) {
    const arg = call[2] ?? call[3];
    return arg === undefined
      ? { kind: "call", name: call[1] as string, text }
      : { kind: "call", name: call[1] as string, arg: arg.replace(/\\(.)/g, "$1"), text };
  }
  if (!/^[A-Za-z_][\w-]*(\.[\w-]+|\[\d+\])*$/.test(text)) {
    throw new PlaybookError("bad_template", `cannot parse template {{{ ${text} }}}`);
  }
  const parts = [...text.matchAll(/([\w-]+)|\[(\d+)\]/g)].map((m) =>
    m[2] !== undefined ? Number(m[2]) : /^\d+$/.test(m[1] as string) ? Number(m[1]) : (m[1] as string),
  );
  const [root, ...path] = parts as [string, ...(string | number)[]];
  if (!(TEMPLATE_ROOTS as readonly string[]).includes(root)) {
    throw new PlaybookError(
      "bad_template",
      `unknown name ${JSON.stringify(root)} in {{{ ${text} }}} (known: ${[...TEMPLATE_ROOTS, ...TEMPLATE_FUNCTIONS].join(", ")})`,
    );
  }
  if (path.length === 0 && root !== "nodes" && root !== "inputs" && root !== "metadata") {
    throw new PlaybookError("bad_template", `{{{ ${text} }}} needs a key (previous_task.msg, …)`);
  }
  if (root === "previous_task" && !PREVIOUS_TASK_KEYS.includes(String(path[0]))) {
    throw new PlaybookError(
      "bad_template",
      `unknown name previous_task.${String(path[0])} (known: ${PREVIOUS_TASK_KEYS.join(", ")})`,
    );
  }
  return { kind: "path", root, path, text };
}

/** Every `{{{ … }}}` expression in a string, as written (trimmed). */
function expressionsIn(s: string): string[] {
  return [...s.matchAll(TEMPLATE_RE)].map((m) => (m[1] as string).trim());
}

/** True when the string holds a template. */
export function isTemplate(s: string): boolean {
  return expressionsIn(s).length > 0;
}

/**
 * What a value references: `inputs.x`, `nodes.web`, `previous_task.msg`, `utc_date`, …
 * (paths as written, functions by name), deduplicated, in order of appearance.
 */
export function templateNames(value: unknown): string[] {
  const out = new Set<string>();
  walkStrings(value, (s) => {
    for (const e of expressionsIn(s)) {
      try {
        const x = parseTemplateExpr(e);
        out.add(x.kind === "call" ? x.name : x.text.replace(/\[(\d+)\]/g, ".$1"));
      } catch {
        out.add(e); // unparseable: reported as written so `show` and validation can name it
      }
    }
  });
  return [...out];
}

function walkStrings(value: unknown, fn: (s: string) => void): void {
  if (typeof value === "string") fn(value);
  else if (Array.isArray(value)) for (const v of value) walkStrings(v, fn);
  else if (value !== null && typeof value === "object")
    for (const v of Object.values(value)) walkStrings(v, fn);
}

/** Renders templates deeply through strings, arrays and plain objects (keys are not rendered). */
export async function renderTemplate(value: unknown, ctx: TemplateContext): Promise<unknown> {
  if (typeof value === "string") return renderString(value, ctx);
  if (Array.isArray(value)) {
    const out: unknown[] = [];
    for (const v of value) out.push(await renderTemplate(v, ctx));
    return out;
  }
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = await renderTemplate(v, ctx);
    return out;
  }
  return value;
}

async function renderString(s: string, ctx: TemplateContext): Promise<unknown> {
  if (!s.includes("{{{")) return s;
  const whole = WHOLE_RE.exec(s);
  if (whole && !(whole[1] as string).includes("{{{")) return evaluate(whole[1] as string, ctx);
  let out = "";
  let last = 0;
  for (const m of s.matchAll(TEMPLATE_RE)) {
    out += s.slice(last, m.index) + stringify(await evaluate(m[1] as string, ctx));
    last = m.index + m[0].length;
  }
  return out + s.slice(last);
}

/** How a value reads inside a longer string: Choria's comma list for arrays, JSON for objects. */
function stringify(v: unknown): string {
  if (v === undefined || v === null) return "";
  if (Array.isArray(v))
    return v.map((x) => (typeof x === "object" && x !== null ? JSON.stringify(x) : String(x))).join(",");
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

async function evaluate(source: string, ctx: TemplateContext): Promise<unknown> {
  const expr = parseTemplateExpr(source);
  if (expr.kind === "call") {
    switch (expr.name) {
      case "uuid":
        return randomUUID();
      case "elapsed_time":
        // seconds, to the millisecond
        return Math.round(Date.now() - ctx.startedAt) / 1000;
      case "utc_date":
        return strftime(new Date(), expr.arg ?? DEFAULT_DATE_FORMAT, true);
      default:
        return strftime(new Date(), expr.arg ?? DEFAULT_DATE_FORMAT, false);
    }
  }
  const [first, ...rest] = expr.path;
  let base: unknown;
  let name: string;
  switch (expr.root) {
    case "inputs": {
      if (first === undefined) return { ...ctx.inputs };
      name = `inputs.${String(first)}`;
      const key = String(first);
      if (Object.prototype.hasOwnProperty.call(ctx.inputs, key)) base = ctx.inputs[key];
      else if (ctx.dynamicInput) {
        base = await ctx.dynamicInput(key);
        if (base === undefined)
          throw new PlaybookError("bad_template", `unknown input ${key} in {{{ ${expr.text} }}}`);
      } else throw new PlaybookError("bad_template", `unknown input ${key} in {{{ ${expr.text} }}}`);
      break;
    }
    case "nodes": {
      if (first === undefined) return { ...ctx.nodes };
      name = `nodes.${String(first)}`;
      const key = String(first);
      if (!Object.prototype.hasOwnProperty.call(ctx.nodes, key)) {
        throw new PlaybookError("bad_template", `unknown node set ${key} in {{{ ${expr.text} }}}`);
      }
      base = ctx.nodes[key];
      break;
    }
    case "metadata": {
      if (first === undefined) return { ...ctx.metadata };
      name = `metadata.${String(first)}`;
      const known = ["name", "version", "author", "description", "run_as", "loglevel", "on_fail", "tags"];
      if (!known.includes(String(first))) {
        throw new PlaybookError(
          "bad_template",
          `unknown name metadata.${String(first)} in {{{ ${expr.text} }}}`,
        );
      }
      base = (ctx.metadata as unknown as Record<string, unknown>)[String(first)] ?? "";
      break;
    }
    default: {
      // before the first task Choria's previous_task is an empty, unsuccessful one
      const prev = ctx.previous_task ?? { success: false, description: "", msg: "", data: null, runtime: 0 };
      name = `previous_task.${String(first)}`;
      base = (prev as unknown as Record<string, unknown>)[String(first)];
    }
  }
  return dig(base, rest, name, expr.text);
}

function dig(value: unknown, path: (string | number)[], name: string, text: string): unknown {
  let v = value;
  let at = name;
  for (const seg of path) {
    at += `.${String(seg)}`;
    if (Array.isArray(v) && typeof seg === "number") v = v[seg];
    else if (v !== null && typeof v === "object" && Object.prototype.hasOwnProperty.call(v, String(seg))) {
      v = (v as Record<string, unknown>)[String(seg)];
    } else {
      throw new PlaybookError("bad_template", `${at} does not exist in {{{ ${text} }}}`);
    }
  }
  return v;
}

const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const MONTHS = [
  "January",
  "February",
  "March",
  "April",
  "May",
  "June",
  "July",
  "August",
  "September",
  "October",
  "November",
  "December",
];

/**
 * A strftime subset: %Y %y %m %d %e %H %I %M %S %L %p %s %z %Z %j %a %A %b %B %F %T %D %%.
 * An unknown directive is kept as written, as Ruby does.
 */
export function strftime(d: Date, fmt: string, utc: boolean): string {
  const p = (n: number, w = 2, c = "0") => String(n).padStart(w, c);
  const Y = utc ? d.getUTCFullYear() : d.getFullYear();
  const mo = utc ? d.getUTCMonth() : d.getMonth();
  const day = utc ? d.getUTCDate() : d.getDate();
  const H = utc ? d.getUTCHours() : d.getHours();
  const M = utc ? d.getUTCMinutes() : d.getMinutes();
  const S = utc ? d.getUTCSeconds() : d.getSeconds();
  const wd = utc ? d.getUTCDay() : d.getDay();
  const offMin = utc ? 0 : -d.getTimezoneOffset();
  const z = `${offMin < 0 ? "-" : "+"}${p(Math.floor(Math.abs(offMin) / 60))}${p(Math.abs(offMin) % 60)}`;
  const yday = Math.floor((Date.UTC(Y, mo, day) - Date.UTC(Y, 0, 1)) / 86_400_000) + 1;
  const map: Record<string, () => string> = {
    Y: () => String(Y),
    y: () => p(Y % 100),
    m: () => p(mo + 1),
    d: () => p(day),
    e: () => p(day, 2, " "),
    H: () => p(H),
    I: () => p(H % 12 === 0 ? 12 : H % 12),
    M: () => p(M),
    S: () => p(S),
    L: () => p(d.getUTCMilliseconds(), 3),
    p: () => (H < 12 ? "AM" : "PM"),
    s: () => String(Math.floor(d.getTime() / 1000)),
    z: () => z,
    Z: () => (utc ? "UTC" : z),
    j: () => p(yday, 3),
    a: () => (DAYS[wd] as string).slice(0, 3),
    A: () => DAYS[wd] as string,
    b: () => (MONTHS[mo] as string).slice(0, 3),
    B: () => MONTHS[mo] as string,
    F: () => `${Y}-${p(mo + 1)}-${p(day)}`,
    T: () => `${p(H)}:${p(M)}:${p(S)}`,
    D: () => `${p(mo + 1)}/${p(day)}/${p(Y % 100)}`,
    "%": () => "%",
  };
  return fmt.replace(/%(.)/g, (all, c: string) => (map[c] ? map[c]() : all));
}
