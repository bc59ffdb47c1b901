import { spawn } from "node:child_process";
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, writeSync } from "node:fs";
import { constants } from "node:os";
import { join } from "node:path";
import { silentLogger, type LogFields, type Logger } from "../../core/util/index.js";
import type { EventSink, JobEvent } from "./events.js";
import {
  DEFAULT_MAX_OUTPUT,
  executionIdOf,
  FILES,
  isFinal,
  readJson,
  readStatus,
  TAIL_BYTES,
  writeStatus,
  type ExecutionMeta,
  type ExecutionStatus,
  type StepStatus,
} from "./status.js";
import { durationMs, parseWorkflow, workflowId, WORKFLOW_DEFAULTS, WorkflowError } from "./workflow.js";
import type { Workflow, WorkflowStep } from "./workflow.js";

/** Runs agent steps; the server provides one that calls the node's own agents. */
export interface AgentInvoker {
  call(
    agent: string,
    action: string,
    inputs: Record<string, unknown>,
    timeoutMs: number,
  ): Promise<{ statuscode: number; statusmsg: string; data: unknown }>;
}

export interface RunOptions {
  sink: EventSink;
  invoker?: AgentInvoker;
  /** aborting stops the execution: steps are killed and the state becomes stopped */
  signal?: AbortSignal;
  logger?: Logger;
  /** SIGTERM to SIGKILL of a step's process group (default 5 s) */
  killGraceMs?: number;
}

export const OUTPUT_EVENTS = {
  /** at most one output event per step per interval */
  intervalMs: 1000,
  /** largest output carried by one event */
  chunkBytes: 16 * 1024,
  /** output carried by all events of one step; the rest is in the log */
  stepBytes: 256 * 1024,
  /** output events of one step (a slow trickle would otherwise send one a second for hours) */
  stepEvents: 100,
} as const;

const KILL_GRACE_MS = 5000;
/** how long pipes may stay open after a step exits (a background grandchild holding them) */
const PIPE_LINGER_MS = 2000;

interface Attempt {
  ok: boolean;
  exit_code?: number;
  error?: string;
  /** ended by stop or the execution's timeout rather than by itself */
  halted?: boolean;
}

function sleepUnless(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

/**
 * Whether a process group has a member that has not exited. Killed orphans stay
 * zombies until init reaps them (a second or more in some containers), and signal 0
 * still reaches those, so /proc is asked which members are zombies.
 */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
  } catch {
    return false;
  }
  let pids: string[];
  try {
    pids = readdirSync("/proc").filter((p) => /^\d+$/.test(p));
  } catch {
    return true;
  }
  return pids.some((p) => {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, "utf8");
      // after the command name: state, ppid, pgrp
      const [state, , pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      return Number(pgrp) === pgid && state !== "Z";
    } catch {
      return false;
    }
  });
}

function signalGroup(pgid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pgid, sig);
  } catch {
    // the group is gone already
  }
}

/** SIGTERM to a whole process group, SIGKILL to what is left after the grace period. */
async function killGroup(pgid: number, graceMs: number): Promise<void> {
  signalGroup(pgid, "SIGTERM");
  const until = Date.now() + graceMs;
  while (groupAlive(pgid) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  if (groupAlive(pgid)) signalGroup(pgid, "SIGKILL");
}

const now = () => new Date().toISOString();

/** A step's combined output: the log file up to the cap, a tail for the status, and output events. */
class StepOutput {
  private fd: number;
  private written = 0;
  private truncated = false;
  private tail = Buffer.alloc(0);
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private sentBytes = 0;
  private sentEvents = 0;
  private dropped = 0;
  private lastSent = 0;
  private timer: NodeJS.Timeout | undefined;
  /** why the log stopped being written, when it did */
  writeError: string | undefined;

  constructor(
    path: string,
    private readonly max: number,
    private readonly send: (output: string, dropped: number) => void,
  ) {
    this.fd = openSync(path, "a", 0o640);
  }

  write(b: Buffer): void {
    this.tail = Buffer.concat([this.tail, b]).subarray(-TAIL_BYTES);
    this.toLog(b);
    this.toEvents(b);
  }

  /** A line of our own in the log (attempt separators); not sent as output. */
  note(text: string): void {
    this.toLog(Buffer.from(text));
  }

  tailText(): string {
    return this.tail.toString("utf8");
  }

  private toLog(b: Buffer): void {
    if (this.truncated) return;
    const room = this.max - this.written;
    try {
      if (b.length <= room) {
        writeSync(this.fd, b);
        this.written += b.length;
        return;
      }
      if (room > 0) writeSync(this.fd, b.subarray(0, room));
      this.written = this.max;
      this.truncated = true;
      writeSync(
        this.fd,
        `\n[chorus: output truncated at ${this.max} bytes; the status keeps the last ${TAIL_BYTES} bytes]\n`,
      );
    } catch (err) {
      // a full disk loses the rest of the log, not the step (the tail and events go on)
      this.truncated = true;
      this.writeError = (err as Error).message;
    }
  }

  private toEvents(b: Buffer): void {
    const room =
      this.sentEvents >= OUTPUT_EVENTS.stepEvents
        ? 0
        : Math.min(OUTPUT_EVENTS.chunkBytes - this.pendingBytes, OUTPUT_EVENTS.stepBytes - this.sentBytes);
    const take = Math.max(0, Math.min(room, b.length));
    if (take > 0) {
      this.pending.push(b.subarray(0, take));
      this.pendingBytes += take;
    }
    this.dropped += b.length - take;
    if (this.timer || this.pendingBytes === 0) return;
    const wait = Math.max(0, this.lastSent + OUTPUT_EVENTS.intervalMs - Date.now());
    this.timer = setTimeout(() => this.flush(), wait);
  }

  /** Sends what is pending now (at the end of an attempt, or when the interval is up). */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pendingBytes === 0) return;
    const text = Buffer.concat(this.pending).toString("utf8");
    this.sentBytes += this.pendingBytes;
    this.sentEvents++;
    this.pending = [];
    this.pendingBytes = 0;
    this.lastSent = Date.now();
    this.send(text, this.dropped);
  }

  close(): void {
    this.flush();
    try {
      closeSync(this.fd);
    } catch {
      // closed already
    }
  }
}

class Execution {
  readonly status: ExecutionStatus;
  private readonly halt = new AbortController();
  private haltReason: "stopped" | "timeout" | undefined;
  private readonly log: Logger;
  private readonly grace: number;
  private readonly byName: Map<string, WorkflowStep>;

  constructor(
    private readonly dir: string,
    private readonly w: Workflow,
    private readonly meta: ExecutionMeta,
    private readonly o: RunOptions,
  ) {
    const id = executionIdOf(dir);
    // every line names the execution: an inline host runs many through one logger
    const base = o.logger ?? silentLogger;
    const tag =
      (level: keyof Logger) =>
      (f: LogFields | string, m?: string): void =>
        typeof f === "string" ? base[level]({ execution: id }, f) : base[level]({ execution: id, ...f }, m);
    this.log = { debug: tag("debug"), info: tag("info"), warn: tag("warn"), error: tag("error") };
    this.grace = o.killGraceMs ?? KILL_GRACE_MS;
    this.byName = new Map(w.steps.map((s) => [s.name, s]));
    this.status = initialStatus(id, w, meta, process.pid);
  }

  private save(): void {
    try {
      writeStatus(this.dir, this.status);
    } catch (err) {
      this.log.error({ err: (err as Error).message }, "cannot write the execution status");
    }
  }

  private emit(e: Omit<JobEvent, "execution_id" | "workflow_id" | "name" | "time">): void {
    const { execution_id, workflow_id, name } = this.status;
    try {
      this.o.sink.emit({ ...e, execution_id, workflow_id, name, time: now() });
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, "event sink failed");
    }
  }

  private stop(reason: "stopped" | "timeout"): void {
    if (this.halt.signal.aborted) return;
    this.haltReason = reason;
    this.log.info({ reason }, "halting the execution");
    this.halt.abort();
  }

  async run(): Promise<ExecutionStatus> {
    const signal = this.o.signal;
    const onAbort = () => this.stop("stopped");
    signal?.addEventListener("abort", onAbort, { once: true });
    if (signal?.aborted) this.stop("stopped");
    const timeoutMs = durationMs(this.w.timeout, WORKFLOW_DEFAULTS.timeoutMs);
    const timer = setTimeout(() => this.stop("timeout"), timeoutMs);
    this.save();
    this.emit({ event: "execution_started" });
    this.log.info({ workflow: this.w.name }, "execution started");
    try {
      await this.schedule();
    } catch (err) {
      // a bug or an unwritable disk: still record a final state, and leave no step running
      this.log.error({ err: (err as Error).message }, "execution failed unexpectedly");
      this.status.error = `internal error: ${(err as Error).message}`;
      this.stop("stopped");
      this.haltReason = undefined;
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    }
    this.finish(timeoutMs);
    return this.status;
  }

  private finish(timeoutMs: number): void {
    const s = this.status;
    const failed = this.w.steps.filter(
      (st) => s.steps[st.name]?.state === "failed" && st.on_failure !== "continue",
    );
    if (this.haltReason === "stopped") s.state = "stopped";
    else if (this.haltReason === "timeout") {
      s.state = "failed";
      s.error = `the execution timed out after ${timeoutMs / 1000}s`;
    } else if (s.error !== undefined || failed.length > 0) {
      s.state = "failed";
      s.error ??= `failed steps: ${failed.map((f) => f.name).join(", ")}`;
    } else s.state = "succeeded";
    s.finished = now();
    this.save();
    this.emit({ event: "execution_finished", state: s.state, ...(s.error ? { error: s.error } : {}) });
    this.log.info({ state: s.state, error: s.error }, "execution finished");
  }

  /** Starts each step once its needs are done; skips those whose needs failed (abort). */
  private async schedule(): Promise<void> {
    const pending = new Set(this.w.steps.map((s) => s.name));
    const running = new Map<string, Promise<void>>();
    const steps = this.status.steps;
    while (pending.size > 0 || running.size > 0) {
      let changed = false;
      for (const name of [...pending]) {
        const step = this.byName.get(name) as WorkflowStep;
        const st = steps[name] as StepStatus;
        if (this.halt.signal.aborted) {
          this.skip(st, this.haltText());
          pending.delete(name);
          changed = true;
          continue;
        }
        const needs = (step.needs ?? []).map((n) => [n, steps[n] as StepStatus] as const);
        if (needs.some(([, n]) => n.state === "pending" || n.state === "running")) continue;
        const blocker = needs.find(
          ([n, ns]) =>
            ns.state === "skipped" ||
            ns.state === "stopped" ||
            (ns.state === "failed" && this.byName.get(n)?.on_failure !== "continue"),
        );
        pending.delete(name);
        changed = true;
        if (blocker) {
          this.skip(
            st,
            `needs ${blocker[0]}, which ${blocker[1].state === "failed" ? "failed" : "did not run"}`,
          );
          continue;
        }
        const run = this.runStep(step).catch((err: unknown) => {
          st.state = "failed";
          st.error = `internal error: ${(err as Error).message}`;
        });
        running.set(
          name,
          run.finally(() => running.delete(name)),
        );
      }
      if (changed) this.save();
      if (running.size > 0) await Promise.race(running.values());
      else if (!changed && pending.size > 0)
        throw new Error(`steps ${[...pending].join(", ")} can never start`);
    }
  }

  private haltText(): string {
    return this.haltReason === "timeout" ? "the execution timed out" : "the execution was stopped";
  }

  private skip(st: StepStatus, why: string): void {
    st.state = "skipped";
    st.error = why;
  }

  private async runStep(step: WorkflowStep): Promise<void> {
    const st = this.status.steps[step.name] as StepStatus;
    const stepsDir = join(this.dir, FILES.steps);
    let out: StepOutput;
    try {
      mkdirSync(stepsDir, { recursive: true });
      out = new StepOutput(join(stepsDir, `${step.name}.log`), this.meta.max_output, (output, dropped) => {
        st.output_tail = out.tailText();
        this.save();
        this.emit({ event: "output", step: step.name, attempt: st.attempts, output, dropped_bytes: dropped });
      });
    } catch (err) {
      st.state = "failed";
      st.error = `cannot write the step log: ${(err as Error).message}`;
      st.finished = now();
      this.save();
      this.emit({ event: "failed", step: step.name, state: st.state, error: st.error });
      return;
    }
    const tries = (step.retries ?? 0) + 1;
    const begun = Date.now();
    // kept only when the execution halted before the first attempt
    let result: Attempt = { ok: false, halted: true, error: this.haltText() };
    try {
      for (let attempt = 1; attempt <= tries && !this.halt.signal.aborted; attempt++) {
        if (attempt > 1) out.note(`\n[chorus: attempt ${attempt} of ${tries}]\n`);
        st.state = "running";
        st.attempts = attempt;
        st.started ??= now();
        delete st.error;
        delete st.exit_code;
        this.save();
        this.emit({ event: "started", step: step.name, attempt });
        result = step.agent ? await this.runAgent(step, out) : await this.runCommand(step, attempt, out);
        delete st.pid;
        out.flush();
        if (result.ok || result.halted) break;
        if (attempt < tries) {
          st.error = result.error ?? "failed";
          if (result.exit_code !== undefined) st.exit_code = result.exit_code;
          st.output_tail = out.tailText();
          this.save();
          this.emit({
            event: "failed",
            step: step.name,
            attempt,
            state: "retrying",
            ...(result.exit_code !== undefined ? { exit_code: result.exit_code } : {}),
            ...(result.error ? { error: result.error } : {}),
          });
          await sleepUnless(durationMs(step.retry_delay, WORKFLOW_DEFAULTS.retryDelayMs), this.halt.signal);
          if (this.halt.signal.aborted) result = { ...result, halted: true };
        }
      }
    } catch (err) {
      result = { ok: false, error: `internal error: ${(err as Error).message}` };
    } finally {
      out.close();
      if (out.writeError) this.log.warn({ step: step.name, err: out.writeError }, "step log incomplete");
    }
    st.state = result.ok
      ? "succeeded"
      : result.halted && this.haltReason === "stopped"
        ? "stopped"
        : "failed";
    if (result.exit_code !== undefined) st.exit_code = result.exit_code;
    if (result.error !== undefined) st.error = result.error;
    else delete st.error;
    st.finished = now();
    st.duration_ms = Date.now() - begun;
    st.output_tail = out.tailText();
    this.save();
    this.emit({
      event: result.ok ? "finished" : "failed",
      step: step.name,
      attempt: st.attempts,
      state: st.state,
      duration_ms: st.duration_ms,
      ...(st.exit_code !== undefined ? { exit_code: st.exit_code } : {}),
      ...(st.error !== undefined ? { error: st.error } : {}),
    });
  }

  private env(step: WorkflowStep, attempt: number): NodeJS.ProcessEnv {
    return {
      ...process.env,
      ...this.w.env,
      ...step.env,
      CHORUS_EXECUTION_ID: this.status.execution_id,
      CHORUS_WORKFLOW_ID: this.status.workflow_id,
      CHORUS_STEP: step.name,
      CHORUS_ATTEMPT: String(attempt),
    };
  }

  /**
   * One attempt of a command step in its own process group, so a timeout or stop
   * reaches everything it started; resolves only once the child has been waited for.
   */
  private runCommand(step: WorkflowStep, attempt: number, out: StepOutput): Promise<Attempt> {
    const run = step.run as string | string[];
    const argv = typeof run === "string" ? ["/bin/sh", "-c", run] : run;
    const timeoutMs = durationMs(step.timeout, WORKFLOW_DEFAULTS.stepTimeoutMs);
    const st = this.status.steps[step.name] as StepStatus;
    return new Promise<Attempt>((resolve) => {
      const child = spawn(argv[0] as string, argv.slice(1), {
        cwd: step.cwd ?? this.dir,
        env: this.env(step, attempt),
        detached: true,
        stdio: ["ignore", "pipe", "pipe"],
      });
      let killed: "timeout" | "halt" | undefined;
      let killing: Promise<void> = Promise.resolve();
      let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
      let spawnError: Error | undefined;
      let linger: NodeJS.Timeout | undefined;
      const kill = (why: "timeout" | "halt") => {
        if (killed || exit || child.pid === undefined) return;
        killed = why;
        killing = killGroup(child.pid, this.grace);
      };
      const timer = setTimeout(() => kill("timeout"), timeoutMs);
      const onHalt = () => kill("halt");
      this.halt.signal.addEventListener("abort", onHalt, { once: true });
      if (this.halt.signal.aborted) onHalt();
      let settled = false;
      const settle = () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        clearTimeout(linger);
        this.halt.signal.removeEventListener("abort", onHalt);
        void killing.then(() => resolve(this.outcome(step, exit, spawnError, killed, timeoutMs)));
      };
      child.stdout.on("data", (b: Buffer) => out.write(b));
      child.stderr.on("data", (b: Buffer) => out.write(b));
      child.once("error", (err) => {
        spawnError = err;
        // a child that never started has nothing to wait for
        if (child.pid === undefined) settle();
      });
      child.once("exit", (code, signal) => {
        exit = { code, signal };
        // a background grandchild may hold the pipes open: stop reading after a while
        linger = setTimeout(() => {
          child.stdout.destroy();
          child.stderr.destroy();
          settle();
        }, PIPE_LINGER_MS);
      });
      child.once("close", settle);
      if (child.pid !== undefined) {
        st.pid = child.pid;
        this.save();
      }
    });
  }

  private outcome(
    step: WorkflowStep,
    exit: { code: number | null; signal: NodeJS.Signals | null } | undefined,
    spawnError: Error | undefined,
    killed: "timeout" | "halt" | undefined,
    timeoutMs: number,
  ): Attempt {
    if (!exit)
      return { ok: false, error: `cannot start ${JSON.stringify(step.run)}: ${spawnError?.message}` };
    const exit_code = exit.code ?? 128 + (exit.signal ? (constants.signals[exit.signal] ?? 0) : 0);
    if (killed === "halt") return { ok: false, halted: true, exit_code, error: this.haltText() };
    if (killed === "timeout") return { ok: false, exit_code, error: `timed out after ${timeoutMs / 1000}s` };
    if (exit.code === 0) return { ok: true, exit_code: 0 };
    return {
      ok: false,
      exit_code,
      error: exit.signal ? `killed by ${exit.signal}` : `exited with code ${exit.code}`,
    };
  }

  private async runAgent(step: WorkflowStep, out: StepOutput): Promise<Attempt> {
    const call = step.agent as NonNullable<WorkflowStep["agent"]>;
    if (!this.o.invoker) return { ok: false, error: "agent steps need a node to run on" };
    const timeoutMs = durationMs(step.timeout, WORKFLOW_DEFAULTS.stepTimeoutMs);
    let timer: NodeJS.Timeout | undefined;
    let onHalt: (() => void) | undefined;
    const ended = new Promise<Attempt>((resolve) => {
      timer = setTimeout(
        () => resolve({ ok: false, error: `timed out after ${timeoutMs / 1000}s` }),
        timeoutMs,
      );
      onHalt = () => resolve({ ok: false, halted: true, error: this.haltText() });
      this.halt.signal.addEventListener("abort", onHalt, { once: true });
    });
    const called = this.o.invoker
      .call(call.agent, call.action, call.inputs ?? {}, timeoutMs)
      .then((r): Attempt => {
        out.write(
          Buffer.from(
            `${JSON.stringify({ statuscode: r.statuscode, statusmsg: r.statusmsg, data: r.data })}\n`,
          ),
        );
        return r.statuscode === 0
          ? { ok: true, exit_code: 0 }
          : { ok: false, exit_code: r.statuscode, error: `${call.agent}#${call.action}: ${r.statusmsg}` };
      })
      .catch((err: unknown): Attempt => ({
        ok: false,
        error: `${call.agent}#${call.action}: ${(err as Error).message}`,
      }));
    try {
      return await Promise.race([called, ended]);
    } finally {
      clearTimeout(timer);
      if (onHalt) this.halt.signal.removeEventListener("abort", onHalt);
    }
  }
}

/** An execution's status before any step ran. */
export function initialStatus(
  id: string,
  w: Workflow,
  meta: ExecutionMeta,
  managerPid: number,
): ExecutionStatus {
  return {
    execution_id: id,
    workflow_id: workflowId(w),
    name: w.name,
    state: "running",
    started: meta.started,
    manager_pid: managerPid,
    caller: meta.caller,
    ...(meta.request_id !== undefined ? { request_id: meta.request_id } : {}),
    steps: Object.fromEntries(
      w.steps.map((s) => [s.name, { state: "pending", attempts: 0, output_tail: "" }]),
    ),
  };
}

/** The workflow and meta of an execution directory, checked. */
export function loadExecution(dir: string): { workflow: Workflow; meta: ExecutionMeta } {
  executionIdOf(dir);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(join(dir, FILES.workflow), "utf8"));
  } catch (err) {
    throw new WorkflowError("not_found", `no readable workflow in ${dir}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const meta = readJson<ExecutionMeta>(dir, FILES.meta);
  if (!meta || typeof meta.caller !== "string" || typeof meta.started !== "string")
    throw new WorkflowError("not_found", `no readable ${FILES.meta} in ${dir}`);
  meta.max_output =
    Number.isInteger(meta.max_output) && meta.max_output > 0 ? meta.max_output : DEFAULT_MAX_OUTPUT;
  return { workflow: parseWorkflow(raw), meta };
}

/**
 * Runs the execution prepared in `dir` to its end and returns its final status, which
 * is also in `dir/status.json` (rewritten after every change). Steps run in parallel
 * where their needs allow. Aborting `signal` stops it: running steps' process groups
 * get SIGTERM, then SIGKILL, and the final state is "stopped".
 */
export async function runExecution(dir: string, o: RunOptions): Promise<ExecutionStatus> {
  const { workflow, meta } = loadExecution(dir);
  const prior = readStatus(dir);
  if (prior && isFinal(prior.state))
    throw new WorkflowError("state", `execution ${prior.execution_id} already ended (${prior.state})`);
  return new Execution(dir, workflow, meta, o).run();
}
