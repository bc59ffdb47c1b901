import { isIP, isIPv4, isIPv6 } from "node:net";
import { compileRegex } from "../protocol/index.js";
import { DDLError, findAction, type ActionDDL, type AgentDDL, type InputDDL } from "./ddl.js";

export interface InputIssue {
  input: string;
  reason: string;
}

function actionOf(ddl: AgentDDL, action: string): ActionDDL {
  const a = findAction(ddl, action);
  if (!a) {
    throw new DDLError("unknown_action", `agent "${ddl.metadata.name}" has no action "${action}"`, {
      path: `action "${action}"`,
    });
  }
  return a;
}

const TRUE_WORDS = new Set(["true", "yes", "y", "t", "1", "on"]);
const FALSE_WORDS = new Set(["false", "no", "n", "f", "0", "off"]);

/** Converts one CLI string to the DDL type; throws a plain reason on failure. */
function coerceOne(spec: InputDDL, raw: string): unknown {
  switch (spec.type) {
    case "string":
    case "list": // a list input is one string chosen from `list`
      return raw;
    case "integer": {
      const v = raw.trim();
      if (!/^[-+]?\d+$/.test(v)) throw new Error(`"${raw}" is not an integer`);
      const n = Number(v);
      if (!Number.isSafeInteger(n)) throw new Error(`"${raw}" is out of range`);
      return n;
    }
    case "float":
    case "number": {
      const v = raw.trim();
      const n = Number(v);
      if (v === "" || !Number.isFinite(n)) throw new Error(`"${raw}" is not a number`);
      return n;
    }
    case "boolean": {
      const v = raw.trim().toLowerCase();
      if (TRUE_WORDS.has(v)) return true;
      if (FALSE_WORDS.has(v)) return false;
      throw new Error(`"${raw}" is not a boolean (use true/false, yes/no or 1/0)`);
    }
    case "hash":
    case "Hash": {
      let v: unknown;
      try {
        v = JSON.parse(raw);
      } catch {
        throw new Error(`"${raw}" is not a JSON object`);
      }
      if (v === null || typeof v !== "object" || Array.isArray(v))
        throw new Error(`"${raw}" is not a JSON object`);
      return v;
    }
    case "array":
    case "Array": {
      const v = raw.trim();
      if (v.startsWith("[")) {
        let parsed: unknown;
        try {
          parsed = JSON.parse(v);
        } catch {
          throw new Error(`"${raw}" is not a JSON array`);
        }
        if (!Array.isArray(parsed)) throw new Error(`"${raw}" is not a JSON array`);
        return parsed;
      }
      return v === ""
        ? []
        : v
            .split(",")
            .map((s) => s.trim())
            .filter((s) => s !== "");
    }
    default:
      return raw;
  }
}

/**
 * Converts CLI `key=value` strings to the types the DDL declares. Unknown inputs are
 * passed through as strings so validateInputs can report them with the rest.
 * Throws DDLError{code:"invalid_input"} listing every input that could not be converted.
 */
export function coerceInputs(
  ddl: AgentDDL,
  action: string,
  raw: Record<string, string>,
): Record<string, unknown> {
  const a = actionOf(ddl, action);
  const out: Record<string, unknown> = {};
  const issues: InputIssue[] = [];
  for (const [key, value] of Object.entries(raw)) {
    const spec = a.input[key];
    if (!spec) {
      out[key] = value;
      continue;
    }
    try {
      out[key] = coerceOne(spec, value);
    } catch (err) {
      issues.push({ input: key, reason: `${(err as Error).message}, expected ${spec.type}` });
    }
  }
  if (issues.length > 0) throw new InputError(ddl.metadata.name, action, issues);
  return out;
}

/** Invalid request inputs; `issues` lists each input and why. */
export class InputError extends DDLError {
  readonly issues: InputIssue[];
  constructor(agent: string, action: string, issues: InputIssue[]) {
    super("invalid_input", `${agent}#${action}: ${formatIssues(issues)}`);
    this.issues = issues;
  }
}

export function formatIssues(issues: InputIssue[]): string {
  return issues.map((i) => `input "${i.input}" ${i.reason}`).join("; ");
}

// Characters that let a value break out of a shell command line.
const SHELL_UNSAFE = /[`$;|&<>\n\r]/;

function checkValidation(validation: string, value: string): string | undefined {
  switch (validation) {
    case "":
      return undefined;
    case "shellsafe":
      return SHELL_UNSAFE.test(value) ? "is not shell safe" : undefined;
    case "ipv4address":
    case "ipv4":
      return isIPv4(value) ? undefined : "is not an IPv4 address";
    case "ipv6address":
    case "ipv6":
      return isIPv6(value) ? undefined : "is not an IPv6 address";
    case "ipaddress":
      return isIP(value) !== 0 ? undefined : "is not an IP address";
    default: {
      // RE2 syntax, as go-choria's validator (Go regexp), on the linear-time engine:
      // the input is the caller's. RE2 reads forms like ^{.+}$ as literal braces too.
      const re = compileRegex(validation);
      if (!re) return `cannot be validated: the DDL regex /${validation}/ is invalid`;
      return re.test(value) ? undefined : `does not match /${validation}/`;
    }
  }
}

function typeName(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  return typeof v;
}

function checkValue(spec: InputDDL, value: unknown): string | undefined {
  switch (spec.type) {
    case "string": {
      if (typeof value !== "string") return `must be a string, got ${typeName(value)}`;
      if (spec.maxlength && [...value].length > spec.maxlength) {
        return `is longer than the maximum of ${spec.maxlength} characters`;
      }
      return checkValidation(spec.validation ?? "", value);
    }
    case "list": {
      const allowed = spec.list ?? [];
      if (typeof value !== "string" && typeof value !== "number" && typeof value !== "boolean") {
        return `must be one of ${allowed.join(", ")}, got ${typeName(value)}`;
      }
      return allowed.includes(String(value))
        ? undefined
        : `must be one of ${allowed.join(", ")}, got "${String(value)}"`;
    }
    case "integer":
      return typeof value === "number" && Number.isInteger(value)
        ? undefined
        : `must be an integer, got ${typeName(value)}`;
    case "float":
    case "number":
      return typeof value === "number" && Number.isFinite(value)
        ? undefined
        : `must be a number, got ${typeName(value)}`;
    case "boolean":
      return typeof value === "boolean" ? undefined : `must be a boolean, got ${typeName(value)}`;
    case "hash":
    case "Hash":
      return value !== null && typeof value === "object" && !Array.isArray(value)
        ? undefined
        : `must be a hash, got ${typeName(value)}`;
    case "array":
    case "Array":
      return Array.isArray(value) ? undefined : `must be an array, got ${typeName(value)}`;
    default:
      return undefined;
  }
}

/**
 * Checks request data against an action's inputs and fills in DDL defaults for absent
 * inputs (in place). Defaults are filled after checking: they come from the DDL author,
 * and some built-in DDLs default a validated string to "".
 * Throws DDLError{code:"unknown_action"} when the action does not exist.
 */
export function validateInputs(ddl: AgentDDL, action: string, data: Record<string, unknown>): InputIssue[] {
  const a = actionOf(ddl, action);
  const issues: InputIssue[] = [];
  for (const key of Object.keys(data)) {
    if (!Object.hasOwn(a.input, key)) issues.push({ input: key, reason: "is not an input of this action" });
  }
  for (const [key, spec] of Object.entries(a.input)) {
    const value = data[key];
    if (value === undefined) {
      // A `"default": null` (rpcutil get_fact's fact, for one) supplies nothing: still required.
      if (!spec.optional && (spec.default === undefined || spec.default === null)) {
        issues.push({ input: key, reason: "is required" });
      }
      continue;
    }
    const reason = checkValue(spec, value);
    if (reason) issues.push({ input: key, reason });
  }
  for (const [key, spec] of Object.entries(a.input)) {
    if (data[key] === undefined && spec.default !== undefined && spec.default !== null) {
      data[key] = structuredClone(spec.default);
    }
  }
  return issues;
}

/** Fills output defaults the agent left out, as Choria clients do; returns `data`. */
export function applyOutputDefaults(
  ddl: AgentDDL,
  action: string,
  data: Record<string, unknown>,
): Record<string, unknown> {
  const a = findAction(ddl, action);
  if (!a) return data;
  for (const [key, spec] of Object.entries(a.output)) {
    if (data[key] === undefined && spec.default !== undefined) data[key] = structuredClone(spec.default);
  }
  return data;
}
