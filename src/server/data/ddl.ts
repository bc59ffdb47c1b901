import { readFileSync } from "node:fs";
import { DataError, type DataDdl, type DataInput, type DataOutput } from "./types.js";

/** go-choria's input/output type names ("" = any). */
const TYPES: ReadonlySet<string> = new Set([
  "string",
  "integer",
  "float",
  "number",
  "boolean",
  "list",
  "Array",
  "Hash",
  "",
]);

export const DATA_PLUGIN_NAME = /^[a-z][a-z0-9_]*$/;

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

function str(o: Obj, key: string, where: string, required = true): string {
  const v = o[key];
  if (v === undefined && !required) return "";
  if (typeof v !== "string") throw new DataError(`${where}: ${key} must be a string`);
  return v;
}

function parseInput(v: unknown, where: string): DataInput {
  if (!isObj(v)) throw new DataError(`${where}: query must be an object`);
  const type = v["type"] ?? "string";
  if (typeof type !== "string" || !TYPES.has(type))
    throw new DataError(`${where}: query.type ${JSON.stringify(type)} is not a known type`);
  const validation = v["validation"];
  if (validation !== undefined) {
    if (typeof validation !== "string") throw new DataError(`${where}: query.validation must be a string`);
    try {
      new RegExp(validation.replace(/^\/(.*)\/$/, "$1"));
    } catch (err) {
      throw new DataError(
        `${where}: query.validation is not a regular expression: ${(err as Error).message}`,
      );
    }
  }
  const maxlength = v["maxlength"];
  if (maxlength !== undefined && !(Number.isInteger(maxlength) && (maxlength as number) >= 0))
    throw new DataError(`${where}: query.maxlength must be a non-negative integer`);
  const optional = v["optional"] ?? false;
  if (typeof optional !== "boolean") throw new DataError(`${where}: query.optional must be a boolean`);
  return {
    prompt: str(v, "prompt", `${where} query`, false),
    description: str(v, "description", `${where} query`, false),
    type,
    optional,
    ...(v["default"] !== undefined && { default: v["default"] }),
    ...(validation !== undefined && { validation: validation as string }),
    ...(maxlength !== undefined && { maxlength: maxlength as number }),
  };
}

function parseOutput(name: string, v: unknown, where: string): DataOutput {
  if (!isObj(v)) throw new DataError(`${where}: output ${name} must be an object`);
  const type = v["type"] ?? "";
  if (typeof type !== "string" || !TYPES.has(type))
    throw new DataError(`${where}: output ${name} has unknown type ${JSON.stringify(type)}`);
  return {
    description: str(v, "description", `${where} output ${name}`),
    display_as: str(v, "display_as", `${where} output ${name}`),
    type,
    ...(v["default"] !== undefined && { default: v["default"] }),
  };
}

/**
 * Checks a data DDL (go-choria's JSON shape: metadata, optional `query`, `output`) and
 * returns it typed. `input.query` is read too, for DDLs written by older Chorus tools.
 * Throws DataError naming `where` and the first problem.
 */
export function parseDataDdl(doc: unknown, where: string): DataDdl {
  if (!isObj(doc)) throw new DataError(`${where}: a data DDL must be a JSON object`);
  const md = doc["metadata"];
  if (!isObj(md)) throw new DataError(`${where}: metadata is missing`);
  const name = str(md, "name", where);
  if (!DATA_PLUGIN_NAME.test(name))
    throw new DataError(`${where}: metadata.name ${JSON.stringify(name)} is not a valid data plugin name`);
  const timeout = md["timeout"] ?? 0;
  if (typeof timeout !== "number" || !Number.isFinite(timeout) || timeout < 0)
    throw new DataError(`${where}: metadata.timeout must be a number of seconds`);
  const output = doc["output"];
  if (!isObj(output) || Object.keys(output).length === 0)
    throw new DataError(`${where}: output must declare at least one output`);
  const input = doc["input"];
  const query = doc["query"] ?? (isObj(input) ? input["query"] : undefined);
  return {
    ...(typeof doc["$schema"] === "string" && { $schema: doc["$schema"] }),
    metadata: {
      name,
      description: str(md, "description", where),
      author: str(md, "author", where, false),
      license: str(md, "license", where, false),
      version: str(md, "version", where, false),
      url: str(md, "url", where, false),
      timeout,
      ...(typeof md["provider"] === "string" && { provider: md["provider"] }),
    },
    ...(query !== undefined && query !== null && { query: parseInput(query, where) }),
    output: Object.fromEntries(Object.entries(output).map(([k, v]) => [k, parseOutput(k, v, where)])),
  };
}

/** Reads and checks a data DDL file. */
export function readDataDdl(file: string): DataDdl {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new DataError(`cannot read data DDL ${file}: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new DataError(`data DDL ${file} is not valid JSON: ${(err as Error).message}`);
  }
  return parseDataDdl(doc, `data DDL ${file}`);
}

/** How long a plugin may run: metadata.timeout seconds, 0 meaning 10 s as in go-choria. */
export function ddlTimeoutMs(ddl: DataDdl): number {
  return (ddl.metadata.timeout > 0 ? ddl.metadata.timeout : 10) * 1000;
}

/** The query checks go-choria makes before running a plugin (validation regex, maxlength). */
export function checkQuery(ddl: DataDdl, query: string): void {
  const q = ddl.query;
  if (q === undefined) return;
  if (q.maxlength !== undefined && q.maxlength > 0 && query.length > q.maxlength)
    throw new DataError(`invalid query: longer than ${q.maxlength} characters`);
  if (q.validation !== undefined && !new RegExp(q.validation.replace(/^\/(.*)\/$/, "$1")).test(query))
    throw new DataError(`invalid query: does not match ${q.validation}`);
}
