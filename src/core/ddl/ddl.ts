import { readFileSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import { ChorusError } from "../protocol/errors.js";

export type InputType =
  "string" | "list" | "boolean" | "integer" | "float" | "number" | "hash" | "array" | "Hash" | "Array";

export interface InputDDL {
  prompt: string;
  description: string;
  type: InputType;
  optional: boolean;
  default?: unknown;
  /** String inputs: shellsafe, ipv4address, ipv6address, ipaddress, or a regex. */
  validation?: string;
  /** String inputs: maximum length, 0 = unlimited. */
  maxlength?: number;
  /** List inputs: the allowed values. */
  list?: string[];
}

export interface OutputDDL {
  description: string;
  display_as: string;
  type?: InputType;
  default?: unknown;
}

/** Client-side aggregation; kept as data, computed by the client. */
export interface AggregateDDL {
  function: string;
  args?: unknown;
}

export interface ActionDDL {
  action: string;
  description: string;
  input: Record<string, InputDDL>;
  output: Record<string, OutputDDL>;
  display?: "ok" | "failed" | "always";
  aggregate?: AggregateDDL[];
}

export interface AgentMetadata {
  name: string;
  description: string;
  author: string;
  license: string;
  version: string;
  url: string;
  /** Seconds an action may run. */
  timeout: number;
  provider?: string;
  service?: boolean;
}

export interface AgentDDL {
  $schema?: string;
  metadata: AgentMetadata;
  actions: ActionDDL[];
}

/** A DDL that could not be read, failed the schema, or a request that does not fit a DDL. */
export class DDLError extends ChorusError {
  readonly file: string | undefined;
  readonly path: string | undefined;
  constructor(code: string, message: string, opts: { file?: string; path?: string; cause?: unknown } = {}) {
    super(code, message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.file = opts.file;
    this.path = opts.path;
  }
}

const SCHEMA_URL = new URL("../../../schemas/mcorpc/ddl/v1/agent.json", import.meta.url);
const BUILTIN_DIR = new URL("../../../schemas/builtin-agent-ddls/", import.meta.url);

let validator: ValidateFunction | undefined;
let kindValidators: Record<string, ValidateFunction> | undefined;
const INPUT_PATH = /^(\/actions\/\d+\/input\/[^/]+)/;
const INPUT_TYPES = [
  "string",
  "list",
  "boolean",
  "integer",
  "float",
  "number",
  "hash",
  "array",
  "Hash",
  "Array",
];

function schemaValidator(): ValidateFunction {
  if (validator) return validator;
  const schema = JSON.parse(readFileSync(SCHEMA_URL, "utf8")) as Record<string, unknown>;
  // The Choria schema uses draft-04 style "id" and a "$schema" without "#"; neither
  // changes validation, so drop them rather than teach ajv about them.
  delete schema.$schema;
  delete schema.id;
  relaxForShippedDDLs(schema);
  const ajv = new Ajv({ allErrors: true, strict: false });
  ajv.addSchema(schema, "ddl");
  validator = ajv.getSchema("ddl") as ValidateFunction;
  kindValidators = Object.fromEntries(
    ["string", "list", "other"].map((k) => [
      k,
      ajv.getSchema(`ddl#/definitions/${k}_action_input`) as ValidateFunction,
    ]),
  );
  return validator;
}

/**
 * go-choria loads DDLs that its own schema rejects, and Choria ships some: choria_provision
 * has upper-case input names (C, O, OU...) and executor omits "optional" on an input.
 * We accept both so real DDLs load; a missing "optional" then means required, as in Go.
 */
function relaxForShippedDDLs(schema: Record<string, unknown>): void {
  type Node = Record<string, unknown>;
  const defs = schema.definitions as Node;
  const base = defs.base_action_input as Node;
  base.required = (base.required as string[]).filter((r) => r !== "optional");
  const action = ((schema.properties as Node).actions as Node).items as Node;
  const input = (action.properties as Node).input as Node;
  const patterns = input.patternProperties as Node;
  const spec = patterns["^[a-z0-9_]*$"];
  if (spec !== undefined) {
    delete patterns["^[a-z0-9_]*$"];
    patterns["^[a-zA-Z0-9_]*$"] = spec;
  }
}

/** Turns "/actions/2/input/foo" into 'action "install" input "foo"' using the document. */
function describePath(doc: unknown, pointer: string): string {
  if (pointer === "") return "(top level)";
  const parts = pointer
    .split("/")
    .slice(1)
    .map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"));
  const out: string[] = [];
  let node: unknown = doc;
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i] as string;
    const parent = node;
    node = node !== null && typeof node === "object" ? (node as Record<string, unknown>)[part] : undefined;
    if (parts[i - 1] === "actions" && Array.isArray(parent)) {
      const name = (node as { action?: unknown } | undefined)?.action;
      out[out.length - 1] = typeof name === "string" ? `action "${name}"` : `actions[${part}]`;
    } else if ((parts[i - 1] === "input" || parts[i - 1] === "output") && out.length > 0) {
      out[out.length - 1] = `${parts[i - 1]} "${part}"`;
    } else {
      out.push(part);
    }
  }
  return out.join(" ");
}

/** Picks the most specific schema errors; anyOf over input kinds otherwise buries the cause. */
function summarise(doc: unknown, errors: ErrorObject[]): { path: string; reason: string } {
  const useful = errors.filter((e) => e.keyword !== "anyOf" && e.keyword !== "allOf" && e.keyword !== "if");
  const pool = useful.length > 0 ? useful : errors;
  // An input is an anyOf over input kinds, whose errors all look alike; re-check it
  // against the kind its "type" names so the reason is the one that matters.
  const inputError = pool.find((e) => INPUT_PATH.test(e.instancePath));
  if (inputError) {
    const inputPath = INPUT_PATH.exec(inputError.instancePath)?.[1] as string;
    const spec = lookup(doc, inputPath);
    const type = (spec as { type?: unknown } | null)?.type;
    const kind = type === "string" ? "string" : type === "list" ? "list" : "other";
    const check = kindValidators?.[kind];
    if (typeof type === "string" && !INPUT_TYPES.includes(type)) {
      return {
        path: describePath(doc, inputPath),
        reason: `type "${type}" is not one of ${INPUT_TYPES.join(", ")}`,
      };
    }
    if (check && !check(spec) && check.errors && check.errors.length > 0) {
      const errs = check.errors.filter((e) => e.keyword !== "allOf");
      const first = (errs[0] ?? check.errors[0]) as ErrorObject;
      const reasons = [...new Set(errs.map((e) => explain(e)))].slice(0, 3);
      return { path: describePath(doc, inputPath + first.instancePath), reason: reasons.join("; ") };
    }
  }
  const deepest = Math.max(...pool.map((e) => e.instancePath.split("/").length));
  const chosen = pool.filter((e) => e.instancePath.split("/").length === deepest);
  const first = chosen[0] as ErrorObject;
  const reasons = [...new Set(chosen.map((e) => explain(e)))].slice(0, 3);
  return { path: describePath(doc, first.instancePath), reason: reasons.join("; ") };
}

function lookup(doc: unknown, pointer: string): unknown {
  let node = doc;
  for (const part of pointer.split("/").slice(1)) {
    node = node !== null && typeof node === "object" ? (node as Record<string, unknown>)[part] : undefined;
  }
  return node;
}

function explain(e: ErrorObject): string {
  if (e.keyword === "additionalProperties") {
    return `has unexpected property "${String((e.params as { additionalProperty?: unknown }).additionalProperty)}"`;
  }
  if (e.keyword === "enum") {
    return `must be one of ${((e.params as { allowedValues?: unknown[] }).allowedValues ?? []).join(", ")}`;
  }
  return e.message ?? e.keyword;
}

/**
 * Validates a DDL (JSON text or parsed object) against the Choria agent DDL schema.
 * `file` only labels errors.
 */
export function parseDDL(json: string | unknown, file = "<ddl>"): AgentDDL {
  let doc: unknown = json;
  if (typeof json === "string") {
    try {
      doc = JSON.parse(json);
    } catch (err) {
      throw new DDLError("ddl_malformed", `${file}: invalid JSON: ${(err as Error).message}`, {
        file,
        cause: err,
      });
    }
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) {
    throw new DDLError("ddl_schema", `${file}: a DDL must be a JSON object`, { file, path: "" });
  }
  const validate = schemaValidator();
  if (!validate(doc)) {
    const { path, reason } = summarise(doc, validate.errors ?? []);
    throw new DDLError("ddl_schema", `${file}: ${path}: ${reason}`, { file, path });
  }
  const d = doc as Partial<AgentDDL>;
  // The schema leaves these optional but nothing can use a DDL without them.
  if (!d.metadata)
    throw new DDLError("ddl_schema", `${file}: metadata is required`, { file, path: "metadata" });
  if (!Array.isArray(d.actions))
    throw new DDLError("ddl_schema", `${file}: actions is required`, { file, path: "actions" });
  const seen = new Set<string>();
  for (const a of d.actions) {
    for (const spec of Object.values(a.input)) {
      if (spec.optional === undefined) spec.optional = false;
    }
    if (seen.has(a.action)) {
      throw new DDLError("ddl_schema", `${file}: action "${a.action}" is defined twice`, {
        file,
        path: `action "${a.action}"`,
      });
    }
    seen.add(a.action);
  }
  return doc as AgentDDL;
}

export function loadDDL(path: string): AgentDDL {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new DDLError(
      "ddl_unreadable",
      `${path}: cannot read DDL: ${code === "ENOENT" ? "no such file" : String(err)}`,
      {
        file: path,
        cause: err,
      },
    );
  }
  return parseDDL(text, path);
}

const builtinCache = new Map<string, AgentDDL>();

/** A DDL shipped in schemas/builtin-agent-ddls (rpcutil, choria_util, ...). */
export function builtinDDL(name: string): AgentDDL {
  const cached = builtinCache.get(name);
  if (cached) return cached;
  // The name becomes a file name: only agent-name characters are allowed.
  if (!/^[a-z0-9_]+$/.test(name)) throw new DDLError("ddl_unknown", `no built-in DDL for agent "${name}"`);
  const url = new URL(`${name}.json`, BUILTIN_DIR);
  let text: string;
  try {
    text = readFileSync(url, "utf8");
  } catch (err) {
    throw new DDLError("ddl_unknown", `no built-in DDL for agent "${name}"`, { cause: err });
  }
  const ddl = parseDDL(text, fileURLToPath(url));
  builtinCache.set(name, ddl);
  return ddl;
}

/** Names of the agents with a built-in DDL. */
export function builtinDDLNames(): string[] {
  return readdirSync(BUILTIN_DIR)
    .filter((f) => f.endsWith(".json"))
    .map((f) => f.slice(0, -5))
    .sort();
}

export function findAction(ddl: AgentDDL, action: string): ActionDDL | undefined {
  return ddl.actions.find((a) => a.action === action);
}

export function actionNames(ddl: AgentDDL): string[] {
  return ddl.actions.map((a) => a.action);
}
