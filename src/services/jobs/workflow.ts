import { createHash } from "node:crypto";
import { createRequire } from "node:module";
import { Ajv, type ErrorObject } from "ajv";
import { ChorusError } from "../../core/protocol/errors.js";
import { parseDuration } from "../../core/config/index.js";

// yaml is loaded when a workflow is first parsed: an idle `chorus server run` hosts the
// job agent but must not carry the YAML parser (test/apps/cli/rss-lazy.test.ts).
const require = createRequire(import.meta.url);
const yaml = (): typeof import("yaml") => require("yaml") as typeof import("yaml");

/** Problems with workflows and executions; `code` is "invalid", "not_found", "state" or "io". */
export class WorkflowError extends ChorusError {
  /** every problem found, one line each (the message joins them) */
  readonly problems: string[];
  constructor(code: string, message: string, options?: { cause?: unknown; problems?: string[] }) {
    super(code, message, options);
    this.problems = options?.problems ?? [message];
  }
}

export interface AgentCall {
  agent: string;
  action: string;
  inputs?: Record<string, unknown>;
}

export interface WorkflowStep {
  name: string;
  /** a string runs under /bin/sh -c; an array is argv */
  run?: string | string[];
  agent?: AgentCall;
  needs?: string[];
  env?: Record<string, string>;
  /** per attempt, default 10m */
  timeout?: string;
  /** extra attempts, default 0 */
  retries?: number;
  /** default 1s */
  retry_delay?: string;
  cwd?: string;
  /** abort (default): dependants are skipped and the execution fails; continue: they run */
  on_failure?: "abort" | "continue";
}

export interface Workflow {
  name: string;
  description?: string;
  env?: Record<string, string>;
  /** the whole execution, default 1h */
  timeout?: string;
  steps: WorkflowStep[];
}

export const WORKFLOW_LIMITS = {
  /** the job agent's DDL input limit */
  maxBytes: 65_536,
  maxSteps: 100,
  maxRetries: 10,
  maxEnv: 100,
  /** longest timeout or retry_delay */
  maxDurationMs: 7 * 24 * 3_600_000,
} as const;

export const WORKFLOW_DEFAULTS = {
  timeoutMs: 3_600_000,
  stepTimeoutMs: 600_000,
  retryDelayMs: 1000,
} as const;

const DURATION = { type: "string", minLength: 1, maxLength: 32 } as const;
const ENV = {
  type: "object",
  maxProperties: WORKFLOW_LIMITS.maxEnv,
  propertyNames: { pattern: "^[A-Za-z_][A-Za-z0-9_]{0,127}$" },
  additionalProperties: { type: "string", maxLength: 16_384 },
} as const;

const SCHEMA = {
  type: "object",
  required: ["name", "steps"],
  additionalProperties: false,
  properties: {
    name: { type: "string", pattern: "^[a-z0-9_-]{1,64}$" },
    description: { type: "string", maxLength: 4096 },
    env: ENV,
    timeout: DURATION,
    steps: {
      type: "array",
      minItems: 1,
      maxItems: WORKFLOW_LIMITS.maxSteps,
      items: {
        type: "object",
        required: ["name"],
        additionalProperties: false,
        properties: {
          name: { type: "string", pattern: "^[a-zA-Z0-9_-]{1,64}$" },
          run: {
            anyOf: [
              { type: "string", minLength: 1 },
              { type: "array", minItems: 1, items: { type: "string" } },
            ],
          },
          agent: {
            type: "object",
            required: ["agent", "action"],
            additionalProperties: false,
            properties: {
              agent: { type: "string", pattern: "^[a-z][a-z0-9_]{0,63}$" },
              action: { type: "string", pattern: "^[a-z][a-z0-9_]{0,63}$" },
              inputs: { type: "object" },
            },
          },
          needs: { type: "array", uniqueItems: true, items: { type: "string", minLength: 1 } },
          env: ENV,
          timeout: DURATION,
          retries: { type: "integer", minimum: 0, maximum: WORKFLOW_LIMITS.maxRetries },
          retry_delay: DURATION,
          cwd: { type: "string", pattern: "^/" },
          on_failure: { enum: ["abort", "continue"] },
        },
      },
    },
  },
} as const;

const validate = new Ajv({ allErrors: true, strict: false }).compile(SCHEMA);

/** `steps[2] "deploy"` for a step, so a message says which one without counting. */
function stepLabel(doc: unknown, index: number): string {
  const steps = (doc as { steps?: unknown }).steps;
  const name = Array.isArray(steps) ? (steps[index] as { name?: unknown } | undefined)?.name : undefined;
  return typeof name === "string" && name !== "" ? `steps[${index}] "${name}"` : `steps[${index}]`;
}

/** An ajv error as `steps[2] "deploy".timeout: must be string`. */
function schemaProblem(doc: unknown, e: ErrorObject): string {
  const parts = e.instancePath.split("/").filter((p) => p !== "");
  if (e.keyword === "required") parts.push((e.params as { missingProperty: string }).missingProperty);
  if (e.keyword === "additionalProperties")
    parts.push((e.params as { additionalProperty: string }).additionalProperty);
  let where = "";
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i] as string;
    if (p === "steps" && i === 0 && /^\d+$/.test(parts[1] ?? "")) {
      where = stepLabel(doc, Number(parts[1]));
      i++;
    } else where += /^\d+$/.test(p) ? `[${p}]` : where === "" ? p : `.${p}`;
  }
  const why =
    e.keyword === "required"
      ? "is required"
      : e.keyword === "additionalProperties"
        ? "is not a known field"
        : e.keyword === "enum"
          ? `must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.join(", ")}`
          : e.keyword === "pattern" && parts[parts.length - 1] === "name"
            ? "must be letters, digits, _ and - (1 to 64 characters)"
            : e.keyword === "anyOf" && parts[parts.length - 1] === "run"
              ? "must be a command (a string) or an argv list of strings"
              : (e.message ?? "is invalid");
  return `${where || "workflow"}: ${why}`;
}

/** Milliseconds of a duration field, or a problem; bare numbers are refused as ambiguous. */
function durationProblem(where: string, v: string | undefined, min: number): string | undefined {
  if (v === undefined) return undefined;
  const ms = /^\s*\d+(\.\d+)?\s*$/.test(v) ? undefined : parseDuration(v);
  if (ms === undefined) return `${where}: must be a duration like 30s, 5m or 1h`;
  if (ms < min || ms > WORKFLOW_LIMITS.maxDurationMs)
    return `${where}: must be between ${min === 0 ? "0s" : "1ms"} and 168h`;
  return undefined;
}

/** A duration field's milliseconds (the workflow is valid, so it parses). */
export function durationMs(v: string | undefined, dflt: number): number {
  return v === undefined ? dflt : (parseDuration(v) ?? dflt);
}

/** The semantic checks the schema cannot express: names, needs, durations, run vs agent. */
function semanticProblems(w: Workflow): string[] {
  const problems: string[] = [];
  const p = durationProblem("timeout", w.timeout, 1);
  if (p) problems.push(p);
  const index = new Map<string, number>();
  w.steps.forEach((s, i) => {
    const at = stepLabel(w, i);
    const first = index.get(s.name);
    if (first !== undefined) problems.push(`${at}.name: duplicate step name (also steps[${first}])`);
    else index.set(s.name, i);
    if (s.run !== undefined && s.agent !== undefined)
      problems.push(`${at}.agent: run and agent are mutually exclusive`);
    if (s.run === undefined && s.agent === undefined)
      problems.push(`${at}.run: a step needs either run or agent`);
    if (Array.isArray(s.run) && s.run[0] === "") problems.push(`${at}.run[0]: the command may not be empty`);
    for (const [f, min] of [
      ["timeout", 1],
      ["retry_delay", 0],
    ] as const) {
      const d = durationProblem(`${at}.${f}`, s[f], min);
      if (d) problems.push(d);
    }
  });
  w.steps.forEach((s, i) => {
    for (const n of s.needs ?? []) {
      if (!index.has(n)) problems.push(`${stepLabel(w, i)}.needs: unknown step "${n}"`);
    }
  });
  if (problems.length === 0) {
    const cycle = findCycle(w.steps);
    if (cycle) {
      const i = index.get(cycle[0] as string) as number;
      problems.push(`${stepLabel(w, i)}.needs: dependency cycle ${cycle.join(" -> ")}`);
    }
  }
  return problems;
}

/** The first dependency cycle found, as step names ending where they started. */
function findCycle(steps: WorkflowStep[]): string[] | undefined {
  const needs = new Map(steps.map((s) => [s.name, s.needs ?? []]));
  const done = new Set<string>();
  const path: string[] = [];
  const onPath = new Set<string>();
  const visit = (n: string): string[] | undefined => {
    if (onPath.has(n)) return [...path.slice(path.indexOf(n)), n];
    if (done.has(n)) return undefined;
    onPath.add(n);
    path.push(n);
    for (const d of needs.get(n) ?? []) {
      const c = visit(d);
      if (c) return c;
    }
    path.pop();
    onPath.delete(n);
    done.add(n);
    return undefined;
  };
  for (const s of steps) {
    const c = visit(s.name);
    if (c) return c;
  }
  return undefined;
}

function invalid(problems: string[]): WorkflowError {
  const head = problems.length === 1 ? "invalid workflow" : `invalid workflow (${problems.length} problems)`;
  return new WorkflowError("invalid", `${head}: ${problems.join("; ")}`, { problems });
}

/**
 * Parses and validates a workflow: YAML or JSON text, or an already decoded value.
 * Throws WorkflowError "invalid" naming every bad step and field.
 */
export function parseWorkflow(input: string | unknown): Workflow {
  let doc: unknown = input;
  if (typeof input === "string") {
    const bytes = Buffer.byteLength(input);
    if (bytes > WORKFLOW_LIMITS.maxBytes)
      throw invalid([`workflow: is ${bytes} bytes, the limit is ${WORKFLOW_LIMITS.maxBytes}`]);
    // YAML is a superset of JSON; few aliases so a small file cannot expand into a huge one
    const { LineCounter, parseDocument } = yaml();
    const lineCounter = new LineCounter();
    const parsed = parseDocument(input, { prettyErrors: false, lineCounter });
    if (parsed.errors.length > 0) {
      const e = parsed.errors[0];
      const line = e ? lineCounter.linePos(e.pos[0]).line : undefined;
      throw invalid([`workflow: not valid YAML or JSON${line ? ` (line ${line})` : ""}: ${e?.message}`]);
    }
    try {
      doc = parsed.toJS({ maxAliasCount: 50 });
    } catch (err) {
      throw invalid([`workflow: ${(err as Error).message}`]);
    }
  } else {
    let size: number;
    try {
      size = Buffer.byteLength(JSON.stringify(input) ?? "");
    } catch (err) {
      throw invalid([`workflow: cannot be encoded as JSON: ${(err as Error).message}`]);
    }
    if (size > WORKFLOW_LIMITS.maxBytes)
      throw invalid([`workflow: is ${size} bytes as JSON, the limit is ${WORKFLOW_LIMITS.maxBytes}`]);
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc))
    throw invalid(["workflow: must be a mapping with name and steps"]);
  if (!validate(doc)) {
    const errors = validate.errors ?? [];
    // an anyOf failure is one problem, not one per branch it tried
    const anyOf = new Set(errors.filter((e) => e.keyword === "anyOf").map((e) => e.instancePath));
    const shown = errors.filter(
      (e) => e.keyword === "anyOf" || !(e.schemaPath.includes("/anyOf/") && anyOf.has(e.instancePath)),
    );
    throw invalid([...new Set(shown.map((e) => schemaProblem(doc, e)))]);
  }
  const w = structuredClone(doc) as Workflow;
  const problems = semanticProblems(w);
  if (problems.length > 0) throw invalid(problems);
  return w;
}

/** JSON with object keys sorted at every level, so equal workflows hash equal. */
function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (v !== null && typeof v === "object") {
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(",")}}`;
  }
  return JSON.stringify(v);
}

/** `wf_` + 20 hex of sha256 over the canonical JSON: the same workflow always gets the same id. */
export function workflowId(w: Workflow): string {
  return `wf_${createHash("sha256").update(canonicalJson(w)).digest("hex").slice(0, 20)}`;
}
