import { spawn } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { newRequestId } from "../../core/protocol/index.js";
import { silentLogger, sleep, type Logger } from "../../core/util/index.js";
import { nullSink, spoolSink, type EventSink } from "./events.js";
import { initialStatus, runExecution, type AgentInvoker } from "./runner.js";
import {
  DEFAULT_MAX_OUTPUT,
  FILES,
  idKind,
  isExecutionId,
  isFinal,
  isManagerAlive,
  readStatus,
  writeFileAtomic,
  writeStatus,
  type ExecutionMeta,
  type ExecutionStatus,
} from "./status.js";
import { parseWorkflow, workflowId, WorkflowError, type Workflow } from "./workflow.js";

export interface JobsOptions {
  /** executions live in `<dir>/<execution_id>/` */
  dir: string;
  /** the node's identity: the source of events */
  identity: string;
  /** main collective, for the spool's subjects (default "choria") */
  collective?: string;
  /** the node's submission spool; without one no events are sent */
  spoolDir?: string;
  /** per-step log cap (default 1 MiB) */
  maxOutputBytes?: number;
  /** argv that starts a manager; the execution dir is appended (default: the engine's own, from dist) */
  managerCommand?: string[];
  /**
   * Run executions inside this process instead of a manager each (emulated nodes):
   * they end with the process, and recover() then finds them lost.
   */
  inline?: { sink: EventSink; invoker?: AgentInvoker };
  logger?: Logger;
}

/** How long stop() waits for a manager to record its final state before forcing it. */
const STOP_GRACE_MS = 15_000;
/** An execution with no manager pid yet is being started; after this long it was not. */
const START_WINDOW_MS = 60_000;

// Under vitest the sources are TypeScript, which node cannot run as a manager; the
// built entry beside the dist counterpart is used then (present after `npm run build`).
export function defaultManagerCommand(): string[] {
  const here = import.meta.url;
  const entry = here.endsWith(".js")
    ? new URL("./manager-main.js", here)
    : new URL("../../../dist/services/jobs/manager-main.js", here);
  return [process.execPath, fileURLToPath(entry)];
}

/** Whether a step process still belongs to this execution (its environment says so). */
function isStepOf(pid: number, executionId: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/environ`, "utf8")
      .split("\0")
      .includes(`CHORUS_EXECUTION_ID=${executionId}`);
  } catch {
    return false;
  }
}

/**
 * The workflow executions of one node: starts a detached manager process per
 * execution and reads their state from the execution directories, so a restarted
 * server finds them again (recover()).
 */
export class Jobs {
  readonly dir: string;
  private readonly o: JobsOptions;
  private readonly log: Logger;
  private readonly sink: EventSink;
  private readonly inline = new Map<string, { ac: AbortController; done: Promise<ExecutionStatus> }>();

  constructor(o: JobsOptions) {
    if (!o.dir) throw new WorkflowError("invalid", "a jobs directory is required");
    if (!o.identity) throw new WorkflowError("invalid", "an identity is required");
    this.o = o;
    this.dir = resolve(o.dir);
    this.log = o.logger ?? silentLogger;
    this.sink = o.spoolDir
      ? spoolSink({
          spoolDir: o.spoolDir,
          identity: o.identity,
          collective: o.collective ?? "choria",
          logger: this.log,
        })
      : nullSink;
    try {
      mkdirSync(this.dir, { recursive: true, mode: 0o750 });
    } catch (err) {
      throw new WorkflowError(
        "io",
        `cannot create the jobs directory ${this.dir}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
  }

  /** Prepares the execution directory and starts its manager; returns at once. */
  start(
    w: Workflow,
    meta: { caller: string; requestId?: string },
  ): { execution_id: string; workflow_id: string } {
    const wf = parseWorkflow(w);
    const id = newRequestId();
    const dir = join(this.dir, id);
    const m: ExecutionMeta = {
      caller: meta.caller,
      ...(meta.requestId !== undefined ? { request_id: meta.requestId } : {}),
      identity: this.o.identity,
      collective: this.o.collective ?? "choria",
      ...(this.o.spoolDir ? { spool_dir: resolve(this.o.spoolDir) } : {}),
      started: new Date().toISOString(),
      max_output: this.o.maxOutputBytes ?? DEFAULT_MAX_OUTPUT,
    };
    try {
      mkdirSync(join(dir, FILES.steps), { recursive: true, mode: 0o750 });
    } catch (err) {
      throw new WorkflowError("io", `cannot create ${dir}: ${(err as Error).message}`, { cause: err });
    }
    writeFileAtomic(dir, FILES.workflow, JSON.stringify(wf));
    writeFileAtomic(dir, FILES.meta, JSON.stringify(m));
    // pid 0 until the manager writes its own: query() shows the execution at once
    writeStatus(dir, initialStatus(id, wf, m, 0));
    if (this.o.inline) this.startInline(id, dir, this.o.inline);
    else this.spawnManager(id, dir);
    this.log.info({ execution: id, workflow: wf.name, caller: meta.caller }, "workflow execution started");
    return { execution_id: id, workflow_id: workflowId(wf) };
  }

  private spawnManager(id: string, dir: string): void {
    const cmd = this.o.managerCommand ?? defaultManagerCommand();
    const fail = (why: string): never => {
      const s = readStatus(dir);
      if (s) writeStatus(dir, { ...s, state: "failed", finished: new Date().toISOString(), error: why });
      throw new WorkflowError("io", why);
    };
    if (cmd.length === 0 || !cmd[0]) fail("the manager command is empty");
    if (!this.o.managerCommand && !existsSync(cmd[1] as string))
      fail(`the job manager ${cmd[1]} is missing: the build output is needed`);
    const logFd = openSync(join(dir, FILES.log), "a", 0o640);
    let pid: number | undefined;
    try {
      // its own process group and session, output to a file: it outlives us and our terminal
      const child = spawn(cmd[0] as string, [...cmd.slice(1), dir], {
        cwd: dir,
        detached: true,
        stdio: ["ignore", logFd, logFd],
      });
      child.once("error", (err) => this.log.error({ execution: id, err: err.message }, "job manager failed"));
      child.unref();
      pid = child.pid;
    } finally {
      closeSync(logFd);
    }
    if (pid === undefined) fail(`cannot start the job manager ${cmd[0]}`);
    writeFileAtomic(dir, FILES.pid, String(pid));
  }

  private startInline(id: string, dir: string, inline: NonNullable<JobsOptions["inline"]>): void {
    const ac = new AbortController();
    // on the next turn: spawning the first step (tens of ms) must not delay the
    // run_workflow reply, which matters when one process hosts many emulated nodes
    const done = new Promise<void>((r) => setImmediate(r))
      .then(() => runExecution(dir, { ...inline, signal: ac.signal, logger: this.log }))
      .catch((err: unknown) => {
        this.log.error({ execution: id, err: (err as Error).message }, "inline execution failed");
        return this.read(id) as ExecutionStatus;
      })
      .finally(() => this.inline.delete(id));
    this.inline.set(id, { ac, done });
  }

  /** Status of one execution directory, with the manager pid filled in from manager.pid while starting. */
  private read(id: string): ExecutionStatus | undefined {
    const dir = join(this.dir, id);
    const s = readStatus(dir);
    if (s && s.manager_pid === 0) {
      try {
        s.manager_pid = Number(readFileSync(join(dir, FILES.pid), "utf8").trim()) || 0;
      } catch {
        // not started yet
      }
    }
    return s;
  }

  /** Execution directories' ids, newest first (KSUIDs sort by time). */
  private ids(): string[] {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return [];
    }
    return names.filter(isExecutionId).sort().reverse();
  }

  private all(): ExecutionStatus[] {
    return this.ids()
      .map((id) => this.read(id))
      .filter((s): s is ExecutionStatus => s !== undefined)
      .sort((a, b) =>
        a.started === b.started
          ? b.execution_id.localeCompare(a.execution_id)
          : a.started < b.started
            ? 1
            : -1,
      );
  }

  /**
   * An execution by its id, or a workflow's latest execution by the workflow id;
   * undefined when there is none. Anything that is neither kind of id is refused
   * (WorkflowError "invalid") without touching the filesystem.
   */
  query(id: string): ExecutionStatus | undefined {
    if (idKind(id) === "execution") return this.read(id);
    return this.all().find((s) => s.workflow_id === id);
  }

  /** Executions still running, newest first. */
  running(): ExecutionStatus[] {
    return this.all().filter((s) => s.state === "running");
  }

  /** The newest executions, any state. */
  list(limit = 50): ExecutionStatus[] {
    return this.all().slice(0, Math.max(0, limit));
  }

  /**
   * Stops a running execution (SIGTERM to its manager, which stops its steps and
   * records "stopped") and resolves with the final status. A manager that does not
   * finish within `graceMs` is killed with its steps.
   */
  async stop(id: string, graceMs = STOP_GRACE_MS): Promise<ExecutionStatus> {
    const s = this.query(id);
    if (!s) throw new WorkflowError("not_found", `no execution ${id}`);
    const eid = s.execution_id;
    if (isFinal(s.state)) throw new WorkflowError("state", `execution ${eid} is not running (${s.state})`);
    const inline = this.inline.get(eid);
    if (inline) {
      inline.ac.abort();
      return inline.done;
    }
    if (!isManagerAlive(s.manager_pid, eid)) return this.markLost(s);
    try {
      process.kill(s.manager_pid, "SIGTERM");
    } catch {
      // it ended meanwhile
    }
    const until = Date.now() + graceMs;
    while (Date.now() < until) {
      const now = this.read(eid);
      if (now && isFinal(now.state) && !isManagerAlive(s.manager_pid, eid)) return now;
      if (!isManagerAlive(s.manager_pid, eid)) break;
      await sleep(50);
    }
    const last = this.read(eid) ?? s;
    if (isFinal(last.state)) return last;
    this.log.warn({ execution: eid, pid: s.manager_pid }, "job manager did not stop in time: killing it");
    try {
      if (isManagerAlive(s.manager_pid, eid)) process.kill(s.manager_pid, "SIGKILL");
    } catch {
      // gone
    }
    return this.markEnded(last, "stopped", "the manager did not stop in time and was killed");
  }

  /**
   * After a restart: executions recorded as running whose manager is gone (or whose
   * pid now belongs to another process) are marked lost; live ones are left alone.
   */
  recover(): { running: number; lost: number } {
    let running = 0;
    let lost = 0;
    for (const s of this.running()) {
      const alive =
        this.inline.has(s.execution_id) ||
        isManagerAlive(s.manager_pid, s.execution_id) ||
        (s.manager_pid === 0 && Date.now() - Date.parse(s.started) < START_WINDOW_MS);
      if (alive) running++;
      else {
        this.markLost(s);
        lost++;
      }
    }
    if (lost > 0) this.log.warn({ lost }, "executions whose manager died were marked lost");
    return { running, lost };
  }

  private markLost(s: ExecutionStatus): ExecutionStatus {
    const why = s.manager_pid ? `the manager (pid ${s.manager_pid}) died` : "the manager never started";
    return this.markEnded(s, "lost", why);
  }

  /** Records a final state for an execution whose manager cannot; kills its leftover steps. */
  private markEnded(s: ExecutionStatus, state: "lost" | "stopped", why: string): ExecutionStatus {
    const now = new Date().toISOString();
    for (const st of Object.values(s.steps)) {
      if (st.pid !== undefined && isStepOf(st.pid, s.execution_id)) {
        try {
          process.kill(-st.pid, "SIGKILL");
        } catch {
          // gone
        }
      }
      if (st.state === "running") {
        st.state = "stopped";
        st.error = why;
        st.finished = now;
      } else if (st.state === "pending") {
        st.state = "skipped";
        st.error = why;
      }
      delete st.pid;
    }
    const done: ExecutionStatus = { ...s, state, finished: now, error: why };
    writeStatus(join(this.dir, s.execution_id), done);
    this.sink.emit({
      event: "execution_finished",
      execution_id: s.execution_id,
      workflow_id: s.workflow_id,
      name: s.name,
      state,
      error: why,
      time: now,
    });
    return done;
  }
}
