import { spawn } from "node:child_process";
import { resolve } from "node:path";
import type { Client, RpcReply } from "../../client/index.js";
import { compileReplyFilter } from "../../client/index.js";
import { parseDuration } from "../../core/config/index.js";
import { newRequestId } from "../../core/protocol/index.js";
import { sleep } from "../../core/util/index.js";
import { PlaybookError } from "./errors.js";
import type { DataStore, Task } from "./types.js";

/** What a task runs with. */
export interface TaskEnv {
  client: Client;
  /** resolved node sets */
  nodes: Record<string, string[]>;
  stores: Record<string, DataStore>;
  /** shell tasks run here unless they name a cwd (relative ones resolve against it) */
  cwd: string;
  signal?: AbortSignal | undefined;
  log(level: "debug" | "info" | "warn" | "error", msg: string): void;
  /** rpc replies and job executions as they complete */
  progress(done: number, total: number): void;
  /** how often a waiting job task polls job#query_workflow (default 1000 ms) */
  jobPollMs?: number;
}

/** One attempt's result, as Choria's task runners return it. */
export interface TaskOutcome {
  success: boolean;
  msg: string;
  data?: unknown;
}

/** A task after its templates are rendered: node lists may now be arrays. */
export type RenderedTask = Task & { nodes?: unknown };

/** Milliseconds of a duration ("10s", "1m30s"; a bare number is seconds, as Choria's were). */
export function durationMs(value: unknown, what: string): number {
  const ms =
    typeof value === "number"
      ? value * 1000
      : typeof value === "string"
        ? parseDuration(value, "s")
        : undefined;
  if (ms === undefined || !Number.isFinite(ms) || ms < 0) {
    throw new PlaybookError("task", `${what}: ${JSON.stringify(value)} is not a duration (e.g. 10s, 1m)`);
  }
  return ms;
}

export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** output kept per stream: enough for a report, bounded for a chatty command */
const MAX_OUTPUT = 1024 * 1024;

/**
 * Runs `/bin/sh -c command` in its own process group, so a timeout or an abort ends
 * the whole pipeline and not just the shell. Never rejects for the command's failure.
 */
export function runCommand(
  command: string,
  o: {
    cwd: string;
    env?: Record<string, string> | undefined;
    timeoutMs?: number | undefined;
    signal?: AbortSignal | undefined;
    onLine?: (stream: "stdout" | "stderr", line: string) => void;
  },
): Promise<CommandResult> {
  return new Promise((done, reject) => {
    const child = spawn("/bin/sh", ["-c", command], {
      cwd: o.cwd,
      env: { ...process.env, ...o.env },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    const out = { stdout: "", stderr: "" };
    const partial = { stdout: "", stderr: "" };
    let timedOut = false;
    const collect = (stream: "stdout" | "stderr") => (chunk: Buffer) => {
      const s = chunk.toString("utf8");
      if (out[stream].length < MAX_OUTPUT) out[stream] += s.slice(0, MAX_OUTPUT - out[stream].length);
      if (!o.onLine) return;
      const lines = (partial[stream] + s).split("\n");
      partial[stream] = lines.pop() ?? "";
      for (const l of lines) o.onLine(stream, l);
    };
    child.stdout.on("data", collect("stdout"));
    child.stderr.on("data", collect("stderr"));
    const killGroup = () => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    };
    const timer =
      o.timeoutMs !== undefined && o.timeoutMs > 0
        ? setTimeout(() => {
            timedOut = true;
            killGroup();
          }, o.timeoutMs)
        : undefined;
    const onAbort = () => killGroup();
    o.signal?.addEventListener("abort", onAbort, { once: true });
    child.on("error", (err) => {
      clearTimeout(timer);
      o.signal?.removeEventListener("abort", onAbort);
      reject(err);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      o.signal?.removeEventListener("abort", onAbort);
      for (const stream of ["stdout", "stderr"] as const) {
        if (partial[stream] !== "") o.onLine?.(stream, partial[stream]);
      }
      done({ code, stdout: out.stdout, stderr: out.stderr, timedOut });
    });
  });
}

/** The identities a task's `nodes` names: a node set, an array (a rendered `{{{ nodes.x }}}`) or a comma list. */
export function taskNodes(value: unknown, sets: Record<string, string[]>): string[] {
  if (Array.isArray(value)) return value.map(String);
  if (typeof value !== "string")
    throw new PlaybookError("task", `nodes: expected a node set name or a list of nodes`);
  const v = value.trim();
  if (Object.hasOwn(sets, v)) return [...(sets[v] as string[])];
  if (v.includes(",")) {
    return v
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "");
  }
  throw new PlaybookError(
    "task",
    `nodes: no node set ${JSON.stringify(v)} (known: ${Object.keys(sets).join(", ") || "none"})`,
  );
}

/** Runs one attempt of a rendered task. Never rejects: a problem is a failed outcome. */
export async function runTaskOnce(t: RenderedTask, env: TaskEnv): Promise<TaskOutcome> {
  try {
    switch (t.type) {
      case "rpc":
        return await rpcTask(t, env);
      case "shell":
        return await shellTask(t, env);
      case "data":
        return await dataTask(t, env);
      case "webhook":
        return await webhookTask(t, env);
      case "job":
        return await jobTask(t, env);
    }
  } catch (err) {
    return { success: false, msg: `${(t as Task).type} task failed: ${(err as Error).message}` };
  }
}

// ---------------------------------------------------------------- rpc

function splitAction(action: unknown): [string, string] {
  const m = typeof action === "string" ? /^([a-z0-9_]+)\.([a-z0-9_]+)$/i.exec(action.trim()) : null;
  if (!m) throw new PlaybookError("task", `action: ${JSON.stringify(action)} is not agent.action`);
  return [m[1] as string, m[2] as string];
}

function positiveInt(v: unknown, what: string): number | undefined {
  if (v === undefined) return undefined;
  const n = typeof v === "string" ? Number(v) : v;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1) {
    throw new PlaybookError("task", `${what}: ${JSON.stringify(v)} is not a positive integer`);
  }
  return n;
}

export interface ReplyRecord {
  sender: string;
  statuscode: number;
  statusmsg: string;
  data: Record<string, unknown>;
}

async function rpcTask(t: Extract<RenderedTask, { type: "rpc" }>, env: TaskEnv): Promise<TaskOutcome> {
  const [agent, action] = splitAction(t.action);
  const nodes = taskNodes(t.nodes, env.nodes);
  if (nodes.length === 0) return { success: false, msg: `${agent}.${action}: no nodes to run against` };
  // compile before sending: a bad expression must not act on the fleet first
  const assertFn = t.assert !== undefined ? compileReplyFilter(String(t.assert)) : undefined;
  const batchSize = positiveInt(t.batch_size, "batch_size");
  const batchSleepMs =
    t.batch_sleep_time !== undefined ? durationMs(t.batch_sleep_time, "batch_sleep_time") : undefined;
  const props = t.properties ?? {};
  if (typeof props !== "object" || Array.isArray(props))
    throw new PlaybookError("task", "properties: expected a map");
  let done = 0;
  const r = await env.client.request(agent, action, props, {
    nodes,
    ...(batchSize !== undefined && { batchSize }),
    ...(batchSleepMs !== undefined && { batchSleepMs }),
    ...(env.signal && { signal: env.signal }),
    onReply: () => env.progress(++done, nodes.length),
  });
  const replies: ReplyRecord[] = r.replies.map((x: RpcReply) => ({
    sender: x.sender,
    statuscode: x.statuscode,
    statusmsg: x.statusmsg,
    data: x.data,
  }));
  const failed = r.replies.filter((x) => x.statuscode !== 0);
  const noResp = r.stats.noResponses;
  const assertFailed: string[] = [];
  if (assertFn) {
    for (const x of r.replies) {
      if (x.statuscode === 0 && !assertFn(x)) assertFailed.push(x.sender);
    }
  }
  if (!t.silent) {
    for (const x of failed) env.log("error", `${x.sender}: ${x.statusmsg}`);
    for (const s of assertFailed) env.log("warn", `${s}: assert ${t.assert ?? ""} does not hold`);
  }
  if (t.post?.includes("summarize")) {
    for (const line of summarize(r.replies)) env.log("info", line);
  }
  const what = `${agent}.${action} (request ${r.stats.requestid})`;
  const secs = ((r.stats.discoverMs + r.stats.requestMs) / 1000).toFixed(2);
  const problems: string[] = [];
  if (r.stats.interrupted) problems.push("interrupted");
  if (failed.length > 0) problems.push(`${failed.length} failed (${sample(failed.map((x) => x.sender))})`);
  if (noResp.length > 0) problems.push(`no responses from ${noResp.length} (${sample(noResp)})`);
  if (assertFailed.length > 0)
    problems.push(`assert ${t.assert ?? ""} failed on ${assertFailed.length} (${sample(assertFailed)})`);
  if (problems.length === 0) {
    return {
      success: true,
      msg: `Successful ${what} against ${nodes.length} node(s) in ${secs}s`,
      data: replies,
    };
  }
  return {
    success: false,
    msg: `Failed ${what} against ${nodes.length} node(s): ${problems.join("; ")}`,
    data: replies,
  };
}

function sample(ids: string[]): string {
  const s = [...ids].sort();
  return s.length <= 5 ? s.join(", ") : `${s.slice(0, 5).join(", ")}, ...`;
}

/**
 * Counts of each scalar output value across OK replies (the client's DDL aggregate
 * functions live in the CLI's renderer, which this tier cannot use).
 */
export function summarize(replies: RpcReply[]): string[] {
  const counts = new Map<string, Map<string, number>>();
  const ok = replies.filter((r) => r.statuscode === 0);
  for (const r of ok) {
    for (const [k, v] of Object.entries(r.data)) {
      if (v !== null && typeof v === "object") continue;
      const m = counts.get(k) ?? new Map<string, number>();
      counts.set(k, m);
      const key = String(v);
      m.set(key, (m.get(key) ?? 0) + 1);
    }
  }
  const lines = [`summary: ${ok.length} ok, ${replies.length - ok.length} failed`];
  for (const [k, m] of [...counts].sort(([a], [b]) => a.localeCompare(b))) {
    const vals = [...m].sort((a, b) => b[1] - a[1]).slice(0, 10);
    lines.push(`summary ${k}: ${vals.map(([v, n]) => `${v}=${n}`).join(", ")}${m.size > 10 ? ", ..." : ""}`);
  }
  return lines;
}

// ---------------------------------------------------------------- shell

async function shellTask(t: Extract<RenderedTask, { type: "shell" }>, env: TaskEnv): Promise<TaskOutcome> {
  let command = String(t.command);
  if (t.nodes !== undefined) {
    const nodes = taskNodes(t.nodes, env.nodes);
    if (nodes.length > 0) command += ` --nodes ${nodes.join(",")}`;
  }
  const cwd = t.cwd !== undefined ? resolve(env.cwd, String(t.cwd)) : env.cwd;
  const timeoutMs = t.timeout !== undefined ? durationMs(t.timeout, "timeout") : undefined;
  const environment: Record<string, string> = {};
  for (const [k, v] of Object.entries(t.environment ?? {}))
    environment[k] = typeof v === "string" ? v : JSON.stringify(v);
  const r = await runCommand(command, {
    cwd,
    env: environment,
    timeoutMs,
    signal: env.signal,
    onLine: (stream, line) => env.log(stream === "stdout" ? "info" : "warn", line),
  });
  const data = { exit_code: r.code, stdout: r.stdout, stderr: r.stderr };
  if (r.timedOut)
    return { success: false, msg: `Command timed out after ${(timeoutMs ?? 0) / 1000}s: ${command}`, data };
  if (r.code !== 0)
    return { success: false, msg: `Command failed with code ${r.code ?? "(killed)"}: ${command}`, data };
  return { success: true, msg: `Successfully ran command ${command}`, data };
}

// ---------------------------------------------------------------- data

function storeKey(key: unknown, stores: Record<string, DataStore>): [DataStore, string] {
  const m = typeof key === "string" ? /^([^/]+)\/(.+)$/.exec(key) : null;
  if (!m) throw new PlaybookError("data", `key: ${JSON.stringify(key)} is not store/key`);
  const store = stores[m[1] as string];
  if (!store) throw new PlaybookError("data", `key ${String(key)}: no data store ${m[1]}`);
  return [store, m[2] as string];
}

async function dataTask(t: Extract<RenderedTask, { type: "data" }>, env: TaskEnv): Promise<TaskOutcome> {
  const [store, key] = storeKey(t.key, env.stores);
  if (t.action === "delete") {
    await store.delete(key);
    return { success: true, msg: `Deleted data item ${t.key}` };
  }
  if (t.action !== "write")
    throw new PlaybookError("data", `action: ${JSON.stringify(t.action)} is not write or delete`);
  if (t.value === undefined) throw new PlaybookError("data", `write ${t.key}: a value is required`);
  await store.write(key, t.value);
  return { success: true, msg: `Wrote value to ${t.key}`, data: t.value };
}

// ---------------------------------------------------------------- webhook

const WEBHOOK_TIMEOUT_MS = 10_000;

async function webhookTask(
  t: Extract<RenderedTask, { type: "webhook" }>,
  env: TaskEnv,
): Promise<TaskOutcome> {
  const method = String(t.method ?? "POST").toUpperCase();
  if (method !== "GET" && method !== "POST")
    throw new PlaybookError("task", `method: ${method} is not GET or POST`);
  let url: URL;
  try {
    url = new URL(String(t.uri));
  } catch {
    throw new PlaybookError("task", `uri: ${JSON.stringify(t.uri)} is not a URL`);
  }
  const requestId = newRequestId();
  const headers: Record<string, string> = { "X-Choria-Request-ID": requestId };
  for (const [k, v] of Object.entries(t.headers ?? {})) headers[k] = String(v);
  const data = t.data ?? {};
  let body: string | undefined;
  if (method === "GET") {
    for (const [k, v] of Object.entries(data))
      url.searchParams.append(k, typeof v === "string" ? v : JSON.stringify(v));
  } else {
    headers["Content-Type"] ??= "application/json";
    body = JSON.stringify(data);
  }
  const timeoutMs = t.timeout !== undefined ? durationMs(t.timeout, "timeout") : WEBHOOK_TIMEOUT_MS;
  const signals = [AbortSignal.timeout(timeoutMs), ...(env.signal ? [env.signal] : [])];
  let res: Response;
  try {
    res = await fetch(url, {
      method,
      headers,
      ...(body !== undefined && { body }),
      signal: AbortSignal.any(signals),
    });
  } catch (err) {
    const e = err as Error;
    const why =
      e.name === "TimeoutError"
        ? `timed out after ${timeoutMs / 1000}s`
        : ((e.cause as Error | undefined)?.message ?? e.message);
    return {
      success: false,
      msg: `${method} ${redact(url)} failed: ${why}`,
      data: { request_id: requestId },
    };
  }
  const text = (await res.text()).slice(0, MAX_OUTPUT);
  const out = { request_id: requestId, status: res.status, body: text };
  if (res.status >= 200 && res.status < 300) {
    return {
      success: true,
      msg: `Successfully sent ${method} request to ${redact(url)} (${res.status})`,
      data: out,
    };
  }
  return {
    success: false,
    msg: `${method} request to ${redact(url)} failed: ${res.status} ${res.statusText}`,
    data: out,
  };
}

/** URLs in messages and reports lose their credentials and query (tokens live there). */
function redact(u: URL): string {
  return `${u.protocol}//${u.host}${u.pathname}`;
}

// ---------------------------------------------------------------- job

const JOB_TIMEOUT_MS = 60 * 60_000;
const FINISHED = new Set(["succeeded", "failed", "stopped", "lost"]);

async function jobTask(t: Extract<RenderedTask, { type: "job" }>, env: TaskEnv): Promise<TaskOutcome> {
  const nodes = taskNodes(t.nodes, env.nodes);
  if (nodes.length === 0) return { success: false, msg: "job: no nodes to run against" };
  const workflow = typeof t.workflow === "string" ? t.workflow : JSON.stringify(t.workflow);
  const timeoutMs = t.timeout !== undefined ? durationMs(t.timeout, "timeout") : JOB_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  const started = await env.client.request(
    "job",
    "run_workflow",
    { workflow },
    {
      nodes,
      ...(env.signal && { signal: env.signal }),
    },
  );
  // node -> its execution
  const executions = new Map<string, Execution>();
  const startProblems: string[] = [];
  for (const r of started.replies) {
    if (r.statuscode !== 0) startProblems.push(`${r.sender}: ${r.statusmsg}`);
    else {
      executions.set(r.sender, {
        execution_id: String(r.data.execution_id),
        workflow_id: String(r.data.workflow_id),
        state: String(r.data.state ?? "running"),
      });
    }
  }
  for (const n of started.stats.noResponses) startProblems.push(`${n}: no response`);
  for (const p of startProblems) env.log("error", `job: ${p}`);
  const data = () => Object.fromEntries([...executions].map(([n, e]) => [n, e]));
  if (t.wait === false) {
    if (startProblems.length > 0) {
      return {
        success: false,
        msg: `Workflow failed to start on ${startProblems.length} of ${nodes.length} node(s)`,
        data: data(),
      };
    }
    return { success: true, msg: `Workflow started on ${nodes.length} node(s)`, data: data() };
  }
  const poll = env.jobPollMs ?? 1000;
  for (;;) {
    const running = [...executions].filter(([, e]) => !FINISHED.has(e.state));
    env.progress(executions.size - running.length, nodes.length);
    if (running.length === 0) break;
    if (env.signal?.aborted)
      return { success: false, msg: "interrupted while waiting for the workflow", data: data() };
    if (Date.now() >= deadline) {
      return {
        success: false,
        msg: `Workflow still running on ${running.length} node(s) after ${timeoutMs / 1000}s: ${sample(running.map(([n]) => n))}`,
        data: data(),
      };
    }
    await sleep(poll, env.signal);
    await queryExecutions(running, env);
  }
  const bad = [...executions].filter(([, e]) => e.state !== "succeeded");
  for (const [n, e] of bad)
    env.log("error", `job: ${n}: execution ${e.execution_id} ${e.state}${e.msg ? `: ${e.msg}` : ""}`);
  if (bad.length > 0 || startProblems.length > 0) {
    const parts = [
      ...(bad.length > 0
        ? [`${bad.length} execution(s) did not succeed (${sample(bad.map(([n]) => n))})`]
        : []),
      ...(startProblems.length > 0 ? [`${startProblems.length} node(s) did not start it`] : []),
    ];
    return {
      success: false,
      msg: `Workflow failed on ${nodes.length} node(s): ${parts.join("; ")}`,
      data: data(),
    };
  }
  return { success: true, msg: `Workflow succeeded on ${nodes.length} node(s)`, data: data() };
}

type Execution = { execution_id: string; workflow_id: string; state: string; msg?: string };

/**
 * Refreshes the states of running executions. One workflow document has one
 * workflow id everywhere, and query_workflow on a workflow id answers with that node's
 * latest execution: one request per workflow id, then a direct query by execution id
 * only for nodes where another run has started since.
 */
async function queryExecutions(running: [string, Execution][], env: TaskEnv): Promise<void> {
  const sig = env.signal ? { signal: env.signal } : {};
  const apply = (e: Execution, r: RpcReply) => {
    if (r.statuscode !== 0) {
      e.state = "lost";
      e.msg = r.statusmsg;
    } else e.state = String(r.data.state ?? e.state);
  };
  const byWorkflow = new Map<string, [string, Execution][]>();
  for (const entry of running) {
    const list = byWorkflow.get(entry[1].workflow_id) ?? [];
    byWorkflow.set(entry[1].workflow_id, list);
    list.push(entry);
  }
  const again: [string, Execution][] = [];
  for (const [wf, list] of byWorkflow) {
    const q = await env.client.request(
      "job",
      "query_workflow",
      { id: wf },
      { nodes: list.map(([n]) => n), ...sig },
    );
    for (const [node, e] of list) {
      const r = q.replies.find((x) => x.sender === node);
      if (!r) continue; // no answer this round: ask again next time
      if (r.statuscode === 0 && r.data.execution_id !== e.execution_id) again.push([node, e]);
      else apply(e, r);
    }
  }
  await Promise.all(
    again.map(async ([node, e]) => {
      const q = await env.client.request(
        "job",
        "query_workflow",
        { id: e.execution_id },
        { nodes: [node], ...sig },
      );
      const r = q.replies[0];
      if (r) apply(e, r);
    }),
  );
}
