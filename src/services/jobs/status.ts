import { readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { writeFileAtomicSync } from "../../core/util/index.js";
import { WorkflowError } from "./workflow.js";

export type ExecutionState = "running" | "succeeded" | "failed" | "stopped" | "lost";
export type StepState = "pending" | "running" | "succeeded" | "failed" | "skipped" | "stopped";

export interface StepStatus {
  state: StepState;
  attempts: number;
  exit_code?: number;
  started?: string;
  finished?: string;
  duration_ms?: number;
  /** the last 4 KiB of the step's combined output (past the log's cap too) */
  output_tail: string;
  error?: string;
  /** the running attempt's process (and process group) id, command steps only */
  pid?: number;
}

export interface ExecutionStatus {
  execution_id: string;
  workflow_id: string;
  name: string;
  state: ExecutionState;
  started: string;
  finished?: string;
  manager_pid: number;
  caller: string;
  request_id?: string;
  steps: Record<string, StepStatus>;
  /** why the execution as a whole failed (timeout, manager lost, ...) */
  error?: string;
}

/** What Jobs.start records beside the workflow for the manager to read. */
export interface ExecutionMeta {
  caller: string;
  request_id?: string;
  identity: string;
  collective: string;
  spool_dir?: string;
  started: string;
  max_output: number;
}

export const FILES = {
  workflow: "workflow.json",
  meta: "meta.json",
  status: "status.json",
  pid: "manager.pid",
  log: "manager.log",
  steps: "steps",
} as const;

export const DEFAULT_MAX_OUTPUT = 1024 * 1024;
export const TAIL_BYTES = 4096;

const EXECUTION_ID = /^[0-9A-Za-z]{27}$/;
const WORKFLOW_ID = /^wf_[0-9a-f]{20}$/;

export function isExecutionId(id: string): boolean {
  return EXECUTION_ID.test(id);
}

/**
 * Which kind of id this is; anything else (paths, `../x`, empty) is refused before
 * it comes near the filesystem.
 */
export function idKind(id: unknown): "execution" | "workflow" {
  if (typeof id === "string" && EXECUTION_ID.test(id)) return "execution";
  if (typeof id === "string" && WORKFLOW_ID.test(id)) return "workflow";
  const shown = typeof id === "string" ? JSON.stringify(id.slice(0, 80)) : typeof id;
  throw new WorkflowError(
    "invalid",
    `invalid id ${shown}: expected an execution id (27 letters and digits) or a workflow id (wf_ and 20 hex digits)`,
  );
}

/** The execution id of an execution directory (its name), checked. */
export function executionIdOf(dir: string): string {
  const id = basename(dir);
  if (!EXECUTION_ID.test(id))
    throw new WorkflowError(
      "invalid",
      `${dir} is not an execution directory (its name is not an execution id)`,
    );
  return id;
}

export function isFinal(state: ExecutionState): boolean {
  return state !== "running";
}

/** writeFileAtomicSync (core/util) into the execution dir, with the engine's error. */
export function writeFileAtomic(dir: string, file: string, data: string): void {
  try {
    writeFileAtomicSync(join(dir, file), data, { mode: 0o640 });
  } catch (err) {
    throw new WorkflowError("io", `cannot write ${join(dir, file)}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

export function writeStatus(dir: string, s: ExecutionStatus): void {
  writeFileAtomic(dir, FILES.status, JSON.stringify(s));
}

/** A JSON file of the execution dir, or undefined when missing or unreadable. */
export function readJson<T>(dir: string, file: string): T | undefined {
  try {
    return JSON.parse(readFileSync(join(dir, file), "utf8")) as T;
  } catch {
    return undefined;
  }
}

export function readStatus(dir: string): ExecutionStatus | undefined {
  return readJson<ExecutionStatus>(dir, FILES.status);
}

/** The argv of a live process, or undefined when it is gone (or a zombie, whose cmdline is empty). */
export function processArgv(pid: number): string[] | undefined {
  if (!Number.isInteger(pid) || pid <= 1) return undefined;
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8")
      .split("\0")
      .filter((a) => a !== "");
    return argv.length > 0 ? argv : undefined;
  } catch {
    return undefined;
  }
}

/** Whether `pid` is alive and is the manager of `executionId` (not an unrelated process reusing the pid). */
export function isManagerAlive(pid: number, executionId: string): boolean {
  return processArgv(pid)?.some((a) => a.includes(executionId)) ?? false;
}
