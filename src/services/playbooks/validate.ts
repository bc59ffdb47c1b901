/**
 * The one checker both front ends go through. It takes what YAML parsed or what a TS
 * playbook wrote, refuses unknown keys and wrong types everywhere, checks references
 * (node sets, data stores, inputs in templates), fills the section defaults and returns
 * the IR. Tasks may be written Choria's way (`{ rpc: {…} }`, one key naming the type) or
 * the IR's (`{ type: "rpc", … }`); error paths follow what was written, so a YAML error
 * reads `tasks[1].rpc.batch_size` and its line is found by `lines`.
 */
import { parseDuration } from "../../core/config/index.js";
import { compileSemVerRange, parseSemVer } from "../../core/filter/index.js";
import { PlaybookError } from "./errors.js";
import { NAMED_VALIDATORS, checkInputValue } from "./inputs.js";
import { isTemplate, parseTemplateExpr } from "./templates.js";
import type {
  DataStoreDef,
  InputDef,
  InputType,
  NodeSetDef,
  Playbook,
  PlaybookMetadata,
  Task,
  TaskCommon,
  TaskType,
} from "./types.js";

type Obj = Record<string, unknown>;
type Lines = (path: string) => number | undefined;

const INPUT_TYPES: InputType[] = ["string", "integer", "number", "boolean", "array", "hash", "any"];
const TASK_LISTS = ["pre_book", "tasks", "on_success", "on_fail", "post_book"] as const;
const TASK_TYPES: TaskType[] = ["rpc", "shell", "data", "webhook", "job"];
/** Choria's names for what Chorus calls otherwise. */
const TASK_ALIASES: Record<string, TaskType> = { mcollective: "rpc" };
const NODE_TYPE_ALIASES: Record<string, NodeSetDef["type"]> = { mcollective: "discovery" };

const COMMON_TASK_KEYS = [
  "description",
  "tries",
  "try_sleep",
  "pre_sleep",
  "fail_ok",
  "pre_task",
  "post_task",
];
const TASK_KEYS: Record<TaskType, string[]> = {
  rpc: ["nodes", "action", "properties", "batch_size", "batch_sleep_time", "silent", "assert", "post"],
  shell: ["command", "cwd", "environment", "nodes", "timeout"],
  data: ["action", "key", "value"],
  webhook: ["uri", "method", "headers", "data", "timeout"],
  job: ["nodes", "workflow", "wait", "timeout"],
};
const NODE_COMMON_KEYS = ["type", "at_least", "when_empty", "empty_ok", "limit", "test", "uses"];
const NODE_KEYS: Record<NodeSetDef["type"], string[]> = {
  discovery: [
    "discovery_method",
    "discovery_options",
    "identities",
    "classes",
    "agents",
    "facts",
    "compound",
    "collective",
  ],
  file: ["file"],
  shell: ["script", "timeout"],
  list: ["nodes"],
};
const STORE_KEYS: Record<DataStoreDef["type"], string[]> = {
  memory: [],
  environment: ["prefix"],
  file: ["file", "format", "create"],
  kv: ["bucket", "create"],
  shell: ["command", "timeout", "cwd", "environment"],
};
const METADATA_KEYS = ["name", "version", "author", "description", "run_as", "loglevel", "on_fail", "tags"];

class Checker {
  constructor(
    readonly file: string,
    readonly lines: Lines | undefined,
  ) {}

  /** The line of a path, or of its nearest ancestor the source knows. */
  lineOf(path: string): number | undefined {
    if (!this.lines) return undefined;
    let p = path;
    for (;;) {
      const l = this.lines(p);
      if (l !== undefined) return l;
      const cut = Math.max(p.lastIndexOf("."), p.lastIndexOf("["));
      if (cut <= 0) return undefined;
      p = p.slice(0, cut);
    }
  }

  fail(path: string, why: string): never {
    const line = path === "" ? undefined : this.lineOf(path);
    const where = line === undefined ? this.file : `${this.file}:${line}`;
    throw new PlaybookError("bad_playbook", path === "" ? `${where}: ${why}` : `${where}: ${path}: ${why}`);
  }

  obj(v: unknown, path: string, what = "a mapping"): Obj {
    if (v === null || typeof v !== "object" || Array.isArray(v)) this.fail(path, `must be ${what}`);
    return v as Obj;
  }

  /** An optional mapping section: null/undefined is {}. */
  section(v: unknown, path: string): Obj {
    return v === undefined || v === null ? {} : this.obj(v, path);
  }

  keys(o: Obj, path: string, allowed: string[]): void {
    for (const k of Object.keys(o)) {
      if (!allowed.includes(k) && o[k] !== undefined) {
        this.fail(join(path, k), `unknown key (expected one of: ${allowed.join(", ")})`);
      }
    }
  }

  str(v: unknown, path: string, opts: { nonEmpty?: boolean } = {}): string {
    if (typeof v !== "string") this.fail(path, "must be a string");
    if (opts.nonEmpty && v.trim() === "") this.fail(path, "must not be empty");
    return v;
  }

  bool(v: unknown, path: string): boolean {
    if (typeof v !== "boolean") this.fail(path, "must be true or false");
    return v;
  }

  int(v: unknown, path: string, min: number): number {
    if (typeof v !== "number" || !Number.isInteger(v) || v < min) {
      this.fail(path, min > 0 ? "must be a positive integer" : `must be an integer >= ${min}`);
    }
    return v;
  }

  strList(v: unknown, path: string): string[] {
    if (!Array.isArray(v)) this.fail(path, "must be a list of strings");
    v.forEach((x, i) => this.str(x, `${path}[${i}]`));
    return [...(v as string[])];
  }

  strMap(v: unknown, path: string): Record<string, string> {
    const o = this.obj(v, path);
    const out: Record<string, string> = {};
    for (const [k, x] of Object.entries(o)) {
      // YAML writes `PORT: 8080`; the environment only holds strings
      if (typeof x === "number" || typeof x === "boolean") out[k] = String(x);
      else out[k] = this.str(x, join(path, k));
    }
    return out;
  }

  /** A Go-style duration; a bare YAML number is seconds, as Choria read it. */
  duration(v: unknown, path: string): string {
    if (typeof v === "number" && v >= 0) return `${v}s`;
    if (typeof v !== "string") this.fail(path, 'must be a duration such as "10s"');
    if (isTemplate(v)) return v;
    if (parseDuration(v) === undefined)
      this.fail(path, `${JSON.stringify(v)} is not a duration (e.g. "10s", "1m30s")`);
    return v;
  }

  oneOf<T extends string>(v: unknown, path: string, allowed: readonly T[]): T {
    if (typeof v !== "string" || !allowed.includes(v as T))
      this.fail(path, `must be one of: ${allowed.join(", ")}`);
    return v as T;
  }

  uses(v: unknown, path: string): Record<string, string> {
    const o = this.section(v, path);
    const out: Record<string, string> = {};
    for (const [agent, range] of Object.entries(o)) {
      const p = join(path, agent);
      const r = typeof range === "number" ? String(range) : this.str(range, p);
      try {
        compileSemVerRange(r);
      } catch {
        this.fail(p, `${JSON.stringify(r)} is not a SemVer range (e.g. "~1.2.0", ">= 1.0, < 2")`);
      }
      out[agent] = r;
    }
    return out;
  }
}

function join(path: string, key: string): string {
  return path === "" ? key : `${path}.${key}`;
}

/** Copies the keys that were given (so the IR holds no `undefined`). */
function put<T extends object, K extends keyof T>(target: T, key: K, value: T[K] | undefined): void {
  if (value !== undefined) target[key] = value;
}

/**
 * Checks a raw playbook and returns the IR with defaults filled in. Throws
 * PlaybookError("bad_playbook", "<file>:<line>: <path>: <why>") — the line when `lines` knows it.
 * A top-level `source` and per-task `source` (as the IR carries them) are accepted and
 * replaced, so an IR validates again to itself.
 */
export function validatePlaybook(raw: unknown, file: string, lines?: Lines): Playbook {
  const c = new Checker(file, lines);
  const top = c.obj(raw, "", "a mapping with metadata, nodes, tasks, …");
  c.keys(top, "", ["metadata", "uses", "inputs", "nodes", "data_stores", "locks", ...TASK_LISTS, "source"]);

  if (top.metadata === undefined || top.metadata === null)
    c.fail("metadata", "is required (name and version)");
  const metadata = checkMetadata(c, top.metadata);
  const uses = c.uses(top.uses, "uses");
  const data_stores = checkStores(c, top.data_stores);
  const storeNames = Object.keys(data_stores);
  const inputs = checkInputs(c, top.inputs, storeNames);
  const nodes = checkNodeSets(c, top.nodes);
  const locks = checkLocks(c, top.locks, storeNames);
  const refs: Refs = { nodes: Object.keys(nodes), stores: storeNames, inputs: Object.keys(inputs) };

  const pb: Playbook = {
    metadata,
    uses,
    inputs,
    nodes,
    data_stores,
    locks,
    pre_book: [],
    tasks: [],
    on_success: [],
    on_fail: [],
    post_book: [],
    source: file,
  };
  for (const list of TASK_LISTS) pb[list] = checkTaskList(c, top[list], list, refs);

  // templates may only name what the book declares; checked last so the sections above
  // report their own errors first
  checkTemplates(c, top, refs);
  return pb;
}

function checkMetadata(c: Checker, v: unknown): PlaybookMetadata {
  const o = c.obj(v, "metadata");
  c.keys(o, "metadata", METADATA_KEYS);
  if (o.name === undefined) c.fail("metadata", "name is required");
  if (o.version === undefined) c.fail("metadata", "version is required");
  const name = c.str(o.name, "metadata.name", { nonEmpty: true });
  if (typeof o.version === "number") c.fail("metadata.version", `must be a quoted string such as "1.0.0"`);
  const version = c.str(o.version, "metadata.version");
  if (!/^\d+\.\d+\.\d+/.test(version) || parseSemVer(version) === undefined) {
    c.fail("metadata.version", `${JSON.stringify(version)} is not a SemVer version (e.g. "1.0.0")`);
  }
  const md: PlaybookMetadata = { name, version };
  for (const k of ["author", "description", "run_as", "on_fail"] as const) {
    if (o[k] !== undefined) md[k] = c.str(o[k], `metadata.${k}`);
  }
  if (o.loglevel !== undefined)
    md.loglevel = c.oneOf(o.loglevel, "metadata.loglevel", ["debug", "info", "warn", "error"]);
  if (o.tags !== undefined) md.tags = c.strList(o.tags, "metadata.tags");
  return md;
}

function checkStores(c: Checker, v: unknown): Record<string, DataStoreDef> {
  const o = c.section(v, "data_stores");
  const out: Record<string, DataStoreDef> = {};
  for (const [name, raw] of Object.entries(o)) {
    const p = `data_stores.${name}`;
    if (!/^[A-Za-z0-9_-]+$/.test(name)) c.fail(p, "a data store name may hold letters, digits, _ and - only");
    const s = c.obj(raw, p);
    if (s.type === undefined) c.fail(p, "type is required (memory, environment, file, kv, shell)");
    const type = c.oneOf(s.type, `${p}.type`, ["memory", "environment", "file", "kv", "shell"] as const);
    c.keys(s, p, ["type", ...STORE_KEYS[type]]);
    switch (type) {
      case "memory":
        out[name] = { type };
        break;
      case "environment": {
        const d: DataStoreDef = { type };
        if (s.prefix !== undefined) d.prefix = c.str(s.prefix, `${p}.prefix`);
        out[name] = d;
        break;
      }
      case "file": {
        if (s.file === undefined) c.fail(p, "file is required");
        const d: Extract<DataStoreDef, { type: "file" }> = {
          type,
          file: c.str(s.file, `${p}.file`, { nonEmpty: true }),
        };
        if (s.format !== undefined) d.format = c.oneOf(s.format, `${p}.format`, ["yaml", "json"] as const);
        if (s.create !== undefined) d.create = c.bool(s.create, `${p}.create`);
        out[name] = d;
        break;
      }
      case "kv": {
        if (s.bucket === undefined) c.fail(p, "bucket is required");
        const bucket = c.str(s.bucket, `${p}.bucket`, { nonEmpty: true });
        if (!/^[A-Za-z0-9_-]+$/.test(bucket))
          c.fail(`${p}.bucket`, "a KV bucket name may hold letters, digits, _ and - only");
        const d: Extract<DataStoreDef, { type: "kv" }> = { type, bucket };
        if (s.create !== undefined) d.create = c.bool(s.create, `${p}.create`);
        out[name] = d;
        break;
      }
      case "shell": {
        if (s.command === undefined) c.fail(p, "command is required");
        const d: Extract<DataStoreDef, { type: "shell" }> = {
          type,
          command: c.str(s.command, `${p}.command`, { nonEmpty: true }),
        };
        if (s.timeout !== undefined) d.timeout = c.duration(s.timeout, `${p}.timeout`);
        if (s.cwd !== undefined) d.cwd = c.str(s.cwd, `${p}.cwd`);
        if (s.environment !== undefined) d.environment = c.strMap(s.environment, `${p}.environment`);
        out[name] = d;
        break;
      }
    }
  }
  return out;
}

/** "store/key" naming a declared store; returns the store. */
function checkBinding(c: Checker, v: unknown, path: string, stores: string[]): string {
  const s = c.str(v, path);
  const slash = s.indexOf("/");
  if (slash <= 0 || slash === s.length - 1) c.fail(path, `must be "store/key", got ${JSON.stringify(s)}`);
  const store = s.slice(0, slash);
  if (!stores.includes(store)) {
    c.fail(path, `unknown data store ${JSON.stringify(store)} (declared: ${stores.join(", ") || "none"})`);
  }
  return s;
}

function checkInputs(c: Checker, v: unknown, stores: string[]): Record<string, InputDef> {
  const o = c.section(v, "inputs");
  const out: Record<string, InputDef> = {};
  for (const [name, raw] of Object.entries(o)) {
    const p = `inputs.${name}`;
    // each input becomes a --flag
    if (!/^[A-Za-z][A-Za-z0-9_-]*$/.test(name))
      c.fail(p, "an input name must start with a letter and hold letters, digits, _ and -");
    const i = c.obj(raw, p);
    c.keys(i, p, [
      "description",
      "type",
      "required",
      "default",
      "validation",
      "data",
      "save",
      "dynamic",
      "enum",
    ]);
    if (i.type === undefined) c.fail(p, `type is required (${INPUT_TYPES.join(", ")})`);
    const def: InputDef = { type: c.oneOf(i.type, `${p}.type`, INPUT_TYPES) };
    if (i.description !== undefined) def.description = c.str(i.description, `${p}.description`);
    if (i.required !== undefined) def.required = c.bool(i.required, `${p}.required`);
    if (i.validation !== undefined) {
      const val = c.str(i.validation, `${p}.validation`, { nonEmpty: true });
      if (val.startsWith(":")) {
        if (!Object.hasOwn(NAMED_VALIDATORS, val.slice(1))) {
          c.fail(
            `${p}.validation`,
            `unknown validator ${val} (known: ${Object.keys(NAMED_VALIDATORS)
              .map((n) => `:${n}`)
              .join(", ")})`,
          );
        }
      } else {
        try {
          toRegExp(val);
        } catch (e) {
          c.fail(`${p}.validation`, `bad regular expression: ${(e as Error).message}`);
        }
      }
      if (["boolean", "hash"].includes(def.type))
        c.fail(`${p}.validation`, `does not apply to a ${def.type} input`);
      def.validation = val;
    }
    if (i.enum !== undefined) {
      if (!Array.isArray(i.enum) || i.enum.length === 0) c.fail(`${p}.enum`, "must be a non-empty list");
      i.enum.forEach((x, n) => {
        try {
          checkInputValue(name, { type: def.type }, x);
        } catch (e) {
          c.fail(`${p}.enum[${n}]`, (e as Error).message);
        }
      });
      def.enum = [...(i.enum as unknown[])];
    }
    if (i.data !== undefined) def.data = checkBinding(c, i.data, `${p}.data`, stores);
    if (i.save !== undefined) {
      def.save = c.bool(i.save, `${p}.save`);
      if (def.save && def.data === undefined) c.fail(`${p}.save`, 'needs data: "store/key" to save to');
    }
    if (i.dynamic !== undefined) {
      def.dynamic = c.bool(i.dynamic, `${p}.dynamic`);
      if (def.dynamic && def.data === undefined)
        c.fail(`${p}.dynamic`, 'needs data: "store/key" to read from');
    }
    if (i.default !== undefined) {
      // a template default is rendered at run time; anything else must already be valid
      if (!(typeof i.default === "string" && isTemplate(i.default))) {
        try {
          checkInputValue(name, def, i.default);
        } catch (e) {
          c.fail(`${p}.default`, (e as Error).message);
        }
      }
      def.default = i.default;
    }
    out[name] = def;
  }
  return out;
}

/** `/re/flags` or a bare pattern, as Choria's validation took either. */
export function toRegExp(v: string): RegExp {
  const lit = /^\/(.*)\/([a-z]*)$/s.exec(v);
  return lit ? new RegExp(lit[1] as string, lit[2]) : new RegExp(v);
}

function checkNodeSets(c: Checker, v: unknown): Record<string, NodeSetDef> {
  const o = c.section(v, "nodes");
  const out: Record<string, NodeSetDef> = {};
  for (const [name, raw] of Object.entries(o)) {
    const p = `nodes.${name}`;
    if (!/^[A-Za-z0-9_-]+$/.test(name)) c.fail(p, "a node set name may hold letters, digits, _ and - only");
    const n = c.obj(raw, p);
    if (n.type === undefined) c.fail(p, "type is required (discovery, file, shell, list)");
    const written = typeof n.type === "string" ? (NODE_TYPE_ALIASES[n.type] ?? n.type) : n.type;
    const type = c.oneOf(written, `${p}.type`, ["discovery", "file", "shell", "list"] as const);
    c.keys(n, p, [...NODE_COMMON_KEYS, ...NODE_KEYS[type]]);
    const common: Partial<NodeSetDef> = {};
    if (n.at_least !== undefined) common.at_least = c.int(n.at_least, `${p}.at_least`, 0);
    if (n.when_empty !== undefined) common.when_empty = c.str(n.when_empty, `${p}.when_empty`);
    if (n.empty_ok !== undefined) common.empty_ok = c.bool(n.empty_ok, `${p}.empty_ok`);
    if (n.limit !== undefined) common.limit = c.int(n.limit, `${p}.limit`, 1);
    if (n.test !== undefined) common.test = c.bool(n.test, `${p}.test`);
    if (n.uses !== undefined) common.uses = c.uses(n.uses, `${p}.uses`);
    switch (type) {
      case "discovery": {
        const d: Extract<NodeSetDef, { type: "discovery" }> = { ...common, type };
        if (n.discovery_method !== undefined)
          d.discovery_method = c.str(n.discovery_method, `${p}.discovery_method`);
        if (n.discovery_options !== undefined)
          d.discovery_options = c.strMap(n.discovery_options, `${p}.discovery_options`);
        for (const k of ["identities", "classes", "agents", "facts"] as const) {
          if (n[k] !== undefined) d[k] = c.strList(n[k], `${p}.${k}`);
        }
        if (n.compound !== undefined) d.compound = c.str(n.compound, `${p}.compound`);
        if (n.collective !== undefined) d.collective = c.str(n.collective, `${p}.collective`);
        out[name] = d;
        break;
      }
      case "file":
        if (n.file === undefined) c.fail(p, "file is required");
        out[name] = { ...common, type, file: c.str(n.file, `${p}.file`, { nonEmpty: true }) };
        break;
      case "shell": {
        if (n.script === undefined) c.fail(p, "script is required");
        const d: Extract<NodeSetDef, { type: "shell" }> = {
          ...common,
          type,
          script: c.str(n.script, `${p}.script`, { nonEmpty: true }),
        };
        if (n.timeout !== undefined) d.timeout = c.duration(n.timeout, `${p}.timeout`);
        out[name] = d;
        break;
      }
      case "list":
        if (n.nodes === undefined) c.fail(p, "nodes is required");
        out[name] = { ...common, type, nodes: c.strList(n.nodes, `${p}.nodes`) };
        break;
    }
  }
  return out;
}

function checkLocks(c: Checker, v: unknown, stores: string[]): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) c.fail("locks", "must be a list");
  return v.map((x, i) => {
    const p = `locks[${i}]`;
    const s = c.str(x, p, { nonEmpty: true });
    if (s.startsWith("governor:")) {
      if (s.length === "governor:".length) c.fail(p, "names no governor");
      return s;
    }
    const store = s.split("/")[0] as string;
    if (!stores.includes(store)) {
      c.fail(
        p,
        `unknown data store ${JSON.stringify(store)} (declared: ${stores.join(", ") || "none"}; or governor:NAME)`,
      );
    }
    return s;
  });
}

interface Refs {
  nodes: string[];
  stores: string[];
  inputs: string[];
}

function checkTaskList(c: Checker, v: unknown, path: string, refs: Refs): Task[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) c.fail(path, "must be a list of tasks");
  return v.map((t, i) => checkTask(c, t, `${path}[${i}]`, refs));
}

/** A node set reference: a declared set's name or a template giving identities. */
function checkNodesRef(c: Checker, v: unknown, path: string, refs: Refs): string {
  const s = c.str(v, path, { nonEmpty: true });
  if (!isTemplate(s) && !refs.nodes.includes(s)) {
    c.fail(path, `unknown node set ${JSON.stringify(s)} (declared: ${refs.nodes.join(", ") || "none"})`);
  }
  return s;
}

function checkTask(c: Checker, raw: unknown, at: string, refs: Refs): Task {
  const o = c.obj(raw, at, "a task (e.g. `- rpc: {…}`)");
  let type: TaskType;
  let body: Obj;
  let p: string;
  if ("type" in o) {
    const t = typeof o.type === "string" ? (TASK_ALIASES[o.type] ?? o.type) : o.type;
    type = c.oneOf(t, `${at}.type`, TASK_TYPES);
    body = o;
    p = at;
    c.keys(o, p, ["type", "source", ...COMMON_TASK_KEYS, ...TASK_KEYS[type]]);
  } else {
    // Choria's form: one key naming the type
    const keys = Object.keys(o);
    if (keys.length !== 1) {
      c.fail(
        at,
        `a task has one key naming its type (${TASK_TYPES.join(", ")}), got ${keys.join(", ") || "none"}`,
      );
    }
    const k = keys[0] as string;
    const t = TASK_ALIASES[k] ?? k;
    if (!(TASK_TYPES as string[]).includes(t)) {
      c.fail(join(at, k), `unknown task type (expected one of: ${TASK_TYPES.join(", ")}, mcollective)`);
    }
    type = t as TaskType;
    p = join(at, k);
    body = c.obj(o[k], p);
    c.keys(body, p, [...COMMON_TASK_KEYS, ...TASK_KEYS[type]]);
  }

  const common: TaskCommon = {};
  if (body.description !== undefined) common.description = c.str(body.description, `${p}.description`);
  if (body.tries !== undefined) common.tries = c.int(body.tries, `${p}.tries`, 1);
  if (body.try_sleep !== undefined) common.try_sleep = c.duration(body.try_sleep, `${p}.try_sleep`);
  if (body.pre_sleep !== undefined) common.pre_sleep = c.duration(body.pre_sleep, `${p}.pre_sleep`);
  if (body.fail_ok !== undefined) common.fail_ok = c.bool(body.fail_ok, `${p}.fail_ok`);
  if (body.pre_task !== undefined) common.pre_task = checkTaskList(c, body.pre_task, `${p}.pre_task`, refs);
  if (body.post_task !== undefined)
    common.post_task = checkTaskList(c, body.post_task, `${p}.post_task`, refs);
  const line = c.lineOf(at);
  common.source = line === undefined ? { file: c.file, path: at } : { file: c.file, line, path: at };

  const need = (k: string) => {
    if (body[k] === undefined) c.fail(p, `${k} is required`);
  };
  switch (type) {
    case "rpc": {
      need("nodes");
      need("action");
      const action = c.str(body.action, `${p}.action`);
      if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(action) && !isTemplate(action)) {
        c.fail(`${p}.action`, `must be "agent.action", got ${JSON.stringify(action)}`);
      }
      const t: Extract<Task, { type: "rpc" }> = {
        type,
        ...common,
        nodes: checkNodesRef(c, body.nodes, `${p}.nodes`, refs),
        action,
      };
      if (body.properties !== undefined) t.properties = { ...c.obj(body.properties, `${p}.properties`) };
      if (body.batch_size !== undefined) t.batch_size = c.int(body.batch_size, `${p}.batch_size`, 1);
      if (body.batch_sleep_time !== undefined)
        t.batch_sleep_time = c.duration(body.batch_sleep_time, `${p}.batch_sleep_time`);
      if (body.silent !== undefined) t.silent = c.bool(body.silent, `${p}.silent`);
      if (body.assert !== undefined) t.assert = c.str(body.assert, `${p}.assert`, { nonEmpty: true });
      if (body.post !== undefined) {
        if (!Array.isArray(body.post)) c.fail(`${p}.post`, "must be a list (summarize)");
        t.post = body.post.map((x, i) => c.oneOf(x, `${p}.post[${i}]`, ["summarize"] as const));
      }
      return t;
    }
    case "shell": {
      need("command");
      const t: Extract<Task, { type: "shell" }> = {
        type,
        ...common,
        command: c.str(body.command, `${p}.command`, { nonEmpty: true }),
      };
      if (body.cwd !== undefined) t.cwd = c.str(body.cwd, `${p}.cwd`);
      if (body.environment !== undefined) t.environment = c.strMap(body.environment, `${p}.environment`);
      if (body.nodes !== undefined) t.nodes = checkNodesRef(c, body.nodes, `${p}.nodes`, refs);
      if (body.timeout !== undefined) t.timeout = c.duration(body.timeout, `${p}.timeout`);
      return t;
    }
    case "data": {
      need("action");
      need("key");
      const action = c.oneOf(body.action, `${p}.action`, ["write", "delete"] as const);
      const t: Extract<Task, { type: "data" }> = {
        type,
        ...common,
        action,
        key: checkBinding(c, body.key, `${p}.key`, refs.stores),
      };
      if (action === "write") need("value");
      put(t, "value", body.value);
      return t;
    }
    case "webhook": {
      need("uri");
      const uri = c.str(body.uri, `${p}.uri`, { nonEmpty: true });
      if (!isTemplate(uri) && !/^https?:\/\//i.test(uri))
        c.fail(`${p}.uri`, "must be an http:// or https:// URL");
      const t: Extract<Task, { type: "webhook" }> = { type, ...common, uri };
      if (body.method !== undefined) {
        const m = typeof body.method === "string" ? body.method.toUpperCase() : body.method;
        t.method = c.oneOf(m, `${p}.method`, ["GET", "POST"] as const);
      }
      if (body.headers !== undefined) t.headers = c.strMap(body.headers, `${p}.headers`);
      if (body.data !== undefined) t.data = { ...c.obj(body.data, `${p}.data`) };
      if (body.timeout !== undefined) t.timeout = c.duration(body.timeout, `${p}.timeout`);
      return t;
    }
    case "job": {
      need("nodes");
      need("workflow");
      const w = body.workflow;
      if (typeof w !== "string" && (w === null || typeof w !== "object" || Array.isArray(w))) {
        c.fail(`${p}.workflow`, "must be a workflow document (YAML text or a mapping)");
      }
      const t: Extract<Task, { type: "job" }> = {
        type,
        ...common,
        nodes: checkNodesRef(c, body.nodes, `${p}.nodes`, refs),
        workflow: typeof w === "string" ? w : { ...(w as Obj) },
      };
      if (body.wait !== undefined) t.wait = c.bool(body.wait, `${p}.wait`);
      if (body.timeout !== undefined) t.timeout = c.duration(body.timeout, `${p}.timeout`);
      return t;
    }
  }
}

/**
 * Every template must parse and name a declared input or node set. Walks the raw
 * document so the path (and so the line) is the one written. A job's workflow document
 * is skipped: its own `{{ }}` language is not ours.
 */
function checkTemplates(c: Checker, top: Obj, refs: Refs): void {
  const walk = (v: unknown, path: string): void => {
    if (typeof v === "string") {
      for (const m of v.matchAll(/\{\{\{(.*?)\}\}\}/gs)) {
        let expr;
        try {
          expr = parseTemplateExpr(m[1] as string);
        } catch (e) {
          c.fail(path, (e as Error).message);
        }
        if (expr.kind !== "path" || expr.path.length === 0) continue;
        const key = String(expr.path[0]);
        if (expr.root === "inputs" && !refs.inputs.includes(key)) {
          c.fail(path, `template {{{ ${expr.text} }}} names unknown input ${JSON.stringify(key)}`);
        }
        if (expr.root === "nodes" && !refs.nodes.includes(key)) {
          c.fail(path, `template {{{ ${expr.text} }}} names unknown node set ${JSON.stringify(key)}`);
        }
      }
    } else if (Array.isArray(v)) v.forEach((x, i) => walk(x, `${path}[${i}]`));
    else if (v !== null && typeof v === "object") {
      for (const [k, x] of Object.entries(v)) {
        if (k === "workflow" || k === "source") continue;
        walk(x, join(path, k));
      }
    }
  };
  for (const k of ["metadata", "inputs", "nodes", "data_stores", "locks", ...TASK_LISTS]) walk(top[k], k);
}
