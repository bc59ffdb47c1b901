/**
 * Playbook inputs: each becomes a `--<name>` flag; values come from the command line,
 * else the input's data store binding, else its default (Choria's order).
 */
import { isIP } from "node:net";
import { isDeepStrictEqual } from "node:util";
import { PlaybookError } from "./errors.js";
import { isTemplate, renderTemplate } from "./templates.js";
import type { DataStore, InputDef, InputType, Playbook } from "./types.js";

export interface InputFlag {
  name: string;
  /** `--name` */
  flag: string;
  type: InputType;
  description: string;
  required: boolean;
  default?: unknown;
  /** read from its data store when referenced; not taken from the command line */
  dynamic: boolean;
}

/** Choria's named validators (`validation: ":shellsafe"`), applied to the value as a string. */
export const NAMED_VALIDATORS: Record<string, (s: string) => boolean> = {
  // MCollective's shellsafe: none of ` $ ; | & < > and no line breaks
  shellsafe: (s) => !/[`$;|&<>\n\r\0]/.test(s),
  ipv4address: (s) => isIP(s) === 4,
  ipv6address: (s) => isIP(s) === 6,
  ipaddress: (s) => isIP(s) !== 0,
  boolean: (s) => /^(true|false)$/i.test(s),
  // RFC 1123 host names
  hostname: (s) =>
    s.length <= 253 && s.split(".").every((l) => /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(l)),
  integer: (s) => /^[-+]?\d+$/.test(s),
  number: (s) => s.trim() !== "" && Number.isFinite(Number(s)),
};

/** Each input as a CLI flag, for `show` and help. */
export function inputFlags(pb: Playbook): InputFlag[] {
  return Object.entries(pb.inputs).map(([name, def]) => {
    const f: InputFlag = {
      name,
      flag: `--${name}`,
      type: def.type,
      description: def.description ?? "",
      required: def.required === true,
      dynamic: def.dynamic === true,
    };
    if (def.default !== undefined) f.default = def.default;
    return f;
  });
}

function bad(name: string, why: string): never {
  throw new PlaybookError("bad_input", `input ${name}: ${why}`);
}

const TRUE = ["true", "yes", "y", "t", "1", "on"];
const FALSE = ["false", "no", "n", "f", "0", "off"];

/** A command-line string read as the input's type. */
function fromString(name: string, type: InputType, s: string): unknown {
  const t = s.trim();
  switch (type) {
    case "string":
      return s;
    case "integer":
      if (!/^[-+]?\d+$/.test(t) || !Number.isSafeInteger(Number(t)))
        bad(name, `${JSON.stringify(s)} is not an integer`);
      return Number(t);
    case "number":
      if (t === "" || !Number.isFinite(Number(t))) bad(name, `${JSON.stringify(s)} is not a number`);
      return Number(t);
    case "boolean":
      if (TRUE.includes(t.toLowerCase())) return true;
      if (FALSE.includes(t.toLowerCase())) return false;
      return bad(name, `${JSON.stringify(s)} is not a boolean (true or false)`);
    case "array":
      if (t.startsWith("[")) return parseJson(name, t, "array");
      // `--servers a,b,c`
      return t === "" ? [] : t.split(",").map((x) => x.trim());
    case "hash":
      return parseJson(name, t, "hash");
    case "any":
      try {
        return JSON.parse(t) as unknown;
      } catch {
        return s;
      }
  }
}

function parseJson(name: string, s: string, type: string): unknown {
  try {
    return JSON.parse(s) as unknown;
  } catch (e) {
    return bad(name, `${JSON.stringify(s)} is not a JSON ${type}: ${(e as Error).message}`);
  }
}

function typeOk(type: InputType, v: unknown): boolean {
  switch (type) {
    case "string":
      return typeof v === "string";
    case "integer":
      return typeof v === "number" && Number.isInteger(v);
    case "number":
      return typeof v === "number" && Number.isFinite(v);
    case "boolean":
      return typeof v === "boolean";
    case "array":
      return Array.isArray(v);
    case "hash":
      return v !== null && typeof v === "object" && !Array.isArray(v);
    case "any":
      return true;
  }
}

function validator(v: string): (s: string) => boolean {
  if (v.startsWith(":")) {
    const named = Object.hasOwn(NAMED_VALIDATORS, v.slice(1)) ? NAMED_VALIDATORS[v.slice(1)] : undefined;
    if (!named) throw new PlaybookError("bad_input", `unknown validator ${v}`);
    return named;
  }
  const lit = /^\/(.*)\/([a-z]*)$/s.exec(v);
  const re = lit ? new RegExp(lit[1] as string, lit[2]) : new RegExp(v);
  return (s) => re.test(s);
}

/**
 * Checks an already-typed value against the input's type, validation and enum.
 * Validation applies to a scalar's string form and to each element of an array.
 */
export function checkInputValue(
  name: string,
  def: Pick<InputDef, "type" | "validation" | "enum">,
  v: unknown,
): void {
  if (!typeOk(def.type, v))
    bad(name, `${JSON.stringify(v)} is not ${/^[aeiou]/.test(def.type) ? "an" : "a"} ${def.type}`);
  if (def.validation !== undefined) {
    const ok = validator(def.validation);
    const items = Array.isArray(v) ? v : [v];
    for (const item of items) {
      const s = typeof item === "string" ? item : JSON.stringify(item);
      if (!ok(s)) bad(name, `${JSON.stringify(s)} does not pass validation ${def.validation}`);
    }
  }
  if (def.enum !== undefined && !def.enum.some((e) => isDeepStrictEqual(e, v))) {
    bad(name, `${JSON.stringify(v)} is not one of ${def.enum.map((e) => JSON.stringify(e)).join(", ")}`);
  }
}

/**
 * A value from the command line (a string, read as the input's type: "5" -> 5 for an
 * integer, JSON or `a,b` for an array, JSON for a hash, true/false/yes/no for a boolean)
 * or from code or a data store (checked as it is; a number or boolean is accepted for a
 * string input as its text). Throws PlaybookError("bad_input") naming the input.
 */
export function coerceInput(name: string, def: InputDef, raw: string | unknown): unknown {
  let v: unknown = typeof raw === "string" ? fromString(name, def.type, raw) : raw;
  if (def.type === "string" && (typeof v === "number" || typeof v === "boolean")) v = String(v);
  checkInputValue(name, def, v);
  return v;
}

function binding(
  name: string,
  def: InputDef,
  stores: Record<string, DataStore>,
): { store: DataStore; key: string } {
  const spec = def.data as string;
  const slash = spec.indexOf("/");
  const storeName = spec.slice(0, slash);
  const store = stores[storeName];
  if (!store) throw new PlaybookError("data", `input ${name}: data store ${storeName} is not open`);
  return { store, key: spec.slice(slash + 1) };
}

async function storeOp<T>(name: string, what: string, op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (e) {
    if (e instanceof PlaybookError) throw e;
    throw new PlaybookError("data", `input ${name}: could not ${what}: ${(e as Error).message}`, {
      cause: e,
    });
  }
}

/**
 * Resolves the book's inputs in Choria's order: the command line, else the data store
 * binding, else the default; required and missing is an error, as is an unknown name.
 * `save: true` writes a given value to its store. Dynamic inputs are not resolved (they are
 * read at each reference) and are listed in `dynamic`; a template default is rendered (it
 * sees metadata and the inputs declared before it); a value given for one with `save`
 * is still written. An optional input with no value is present as `undefined` so a
 * template can tell it from an unknown name.
 */
export async function resolveInputs(
  pb: Playbook,
  given: Record<string, string | unknown>,
  stores: Record<string, DataStore>,
): Promise<{ values: Record<string, unknown>; dynamic: string[] }> {
  for (const k of Object.keys(given)) {
    if (!Object.hasOwn(pb.inputs, k)) {
      throw new PlaybookError(
        "bad_input",
        `unknown input ${k} (inputs: ${Object.keys(pb.inputs).join(", ") || "none"})`,
      );
    }
  }
  const values: Record<string, unknown> = {};
  const dynamic: string[] = [];
  const startedAt = Date.now();
  for (const [name, def] of Object.entries(pb.inputs)) {
    const raw = given[name];
    const value = raw === undefined ? undefined : coerceInput(name, def, raw);
    if (value !== undefined && def.save && def.data !== undefined) {
      const { store, key } = binding(name, def, stores);
      await storeOp(name, `save to ${def.data}`, () => store.write(key, value));
    }
    if (def.dynamic) {
      dynamic.push(name);
      continue;
    }
    if (value !== undefined) {
      values[name] = value;
      continue;
    }
    if (def.data !== undefined) {
      const { store, key } = binding(name, def, stores);
      const stored = await storeOp(name, `read ${def.data}`, () => store.read(key));
      if (stored !== undefined) {
        values[name] = coerceInput(name, def, stored);
        continue;
      }
    }
    if (def.default !== undefined) {
      // a template default (`{{{ utc_date("%F") }}}`) is rendered now, seeing the inputs before it
      values[name] =
        typeof def.default === "string" && isTemplate(def.default)
          ? coerceInput(
              name,
              def,
              await renderTemplate(def.default, {
                inputs: values,
                nodes: {},
                metadata: pb.metadata,
                startedAt,
              }),
            )
          : def.default;
      continue;
    }
    if (def.required) {
      throw new PlaybookError(
        "bad_input",
        `input ${name} is required: give --${name}${def.data ? ` or store a value at ${def.data}` : ""}`,
      );
    }
    values[name] = undefined;
  }
  return { values, dynamic };
}
