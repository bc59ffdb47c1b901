import { dirname, resolve } from "node:path";
import type { Client } from "../../client/index.js";
import type { NatsConnection } from "../../core/connector/index.js";
import { sleep, type Logger } from "../../core/util/index.js";
import { openDataStores, type DataDeps } from "./data.js";
import { PlaybookError } from "./errors.js";
import { resolveInputs } from "./inputs.js";
import { takeLocks, type LockDeps } from "./locks.js";
import { resolveNodeSets } from "./nodes.js";
import { RunRecorder, seconds } from "./report.js";
import { durationMs, runTaskOnce, type RenderedTask, type TaskOutcome } from "./tasks.js";
import { renderTemplate } from "./templates.js";
import type {
  DataStore,
  NodeSetDef,
  Playbook,
  PlaybookEvent,
  PlaybookReport,
  Task,
  TemplateContext,
} from "./types.js";

export interface RunPlaybookOptions {
  /** discovery and RPC */
  client: Client;
  /** for KV data stores and locks (default: the client's own connection, opened when needed) */
  nc?: NatsConnection;
  /** given on the command line */
  inputs?: Record<string, string | unknown>;
  /** discover node sets and render every task (templates resolved), run nothing, take no locks */
  noop?: boolean;
  /** live view */
  onEvent?: (e: PlaybookEvent) => void;
  signal?: AbortSignal;
  logger?: Logger;
  /** shell tasks and file node sets resolve relative paths here (default: the playbook's dir) */
  cwd?: string;
  /** stores to use instead of opening pb.data_stores (tests, embedders); not closed by the run */
  stores?: Record<string, DataStore>;
  /** how locks are taken: owner, how long to wait for a held lock, TTL (see takeLocks) */
  locks?: Pick<LockDeps, "owner" | "waitMs" | "ttlMs">;
  /** how often a waiting job task polls its executions (default 1000 ms) */
  jobPollMs?: number;
}

/** Choria's default pause between tries. */
const DEFAULT_TRY_SLEEP_MS = 10_000;

/**
 * Runs a playbook as Choria did: inputs, data stores, locks (before anything else; a
 * held lock throws PlaybookError("locked") and there is no report), node sets, then
 * pre_book → tasks → on_success | on_fail → post_book, locks released, report.
 *
 * Hooks: a failing pre_book ends the run at once (no main tasks, no on_fail, no
 * post_book: Choria's Tasks#run returns before them); on_success runs after passing
 * tasks and its failure fails the book; on_fail runs after failing tasks and cannot
 * rescue them; post_book always runs after the main list and its failure fails the
 * book. A list stops at its first failing task unless that task has fail_ok.
 *
 * Task failures never throw: the report says success false and why. Bad inputs throw
 * PlaybookError("bad_input"), stores that cannot open PlaybookError("data").
 */
export async function runPlaybook(pb: Playbook, o: RunPlaybookOptions): Promise<PlaybookReport> {
  const rec = new RunRecorder(pb, o.onEvent, o.logger);
  const cwd = o.cwd ?? (pb.source ? dirname(resolve(pb.source)) : process.cwd());
  const needsNc =
    Object.values(pb.data_stores).some((d) => d.type === "kv") ||
    pb.locks.some((l) => l.startsWith("governor:"));
  const nc = o.nc ?? (needsNc ? await o.client.connect() : undefined);
  const deps: DataDeps = { cwd, ...(nc && { nc }) };

  const stores = o.stores ?? (await openDataStores(pb.data_stores, deps));
  const closeStores = async () => {
    if (o.stores) return;
    await Promise.all(Object.values(stores).map((s) => s.close?.().catch(() => {})));
  };
  let release: (() => Promise<void>) | undefined;
  try {
    const given = o.inputs ?? {};
    // a book without inputs needs no resolving, and unknown given inputs are still refused
    const { values, dynamic } =
      Object.keys(pb.inputs).length === 0 && Object.keys(given).length === 0
        ? { values: {}, dynamic: [] as string[] }
        : await resolveInputs(pb, given, o.noop ? readOnly(stores, rec) : stores);

    if (!o.noop && pb.locks.length > 0) {
      release = await takeLocks(
        pb,
        stores,
        { ...deps, ...o.locks, collective: o.client.collective, ...(o.signal && { signal: o.signal }) },
        (e) => {
          rec.emit(e);
          if (e.kind === "lock")
            rec.log(e.state === "waiting" ? "warn" : "info", "locks", `lock ${e.lock} ${e.state}`);
        },
      );
    }
    const run = new Run(pb, o, rec, stores, cwd, values, dynamic);
    return await run.execute();
  } finally {
    try {
      await release?.();
    } catch (err) {
      // the run is over; a lock that could not be given back expires with its TTL
      o.logger?.warn(`playbook ${pb.metadata.name}: ${(err as Error).message}`);
    }
    await closeStores();
  }
}

type Level = "debug" | "info" | "warn" | "error";

/** One run's state: node sets, the previous task, and the recorder. */
class Run {
  private nodes: Record<string, string[]> = {};
  private previous: TemplateContext["previous_task"];
  private readonly ctx: TemplateContext;

  constructor(
    private readonly pb: Playbook,
    private readonly o: RunPlaybookOptions,
    private readonly rec: RunRecorder,
    private readonly stores: Record<string, DataStore>,
    private readonly cwd: string,
    private readonly values: Record<string, unknown>,
    private readonly dynamic: string[],
  ) {
    this.ctx = {
      inputs: values,
      dynamicInput: (name) => this.readDynamic(name),
      nodes: this.nodes,
      metadata: pb.metadata,
      startedAt: rec.started,
    };
  }

  private log(level: Level, from: string, msg: string): void {
    this.rec.log(level, from, msg);
  }

  private async readDynamic(name: string): Promise<unknown> {
    const ref = this.pb.inputs[name]?.data;
    const m = ref !== undefined ? /^([^/]+)\/(.+)$/.exec(ref) : null;
    if (!m) return this.values[name];
    const store = this.stores[m[1] as string];
    if (!store) throw new PlaybookError("data", `input ${name}: no data store ${m[1]}`);
    return store.read(m[2] as string);
  }

  private context(): TemplateContext {
    return { ...this.ctx, nodes: this.nodes, ...(this.previous && { previous_task: this.previous }) };
  }

  /** Renders every string in a value (objects and arrays walked), each through renderTemplate. */
  private async render<T>(value: T): Promise<T> {
    const ctx = this.context();
    const walk = async (v: unknown): Promise<unknown> => {
      if (typeof v === "string") return v.includes("{{") ? renderTemplate(v, ctx) : v;
      if (Array.isArray(v)) return Promise.all(v.map(walk));
      if (v !== null && typeof v === "object") {
        const out: Record<string, unknown> = {};
        for (const [k, x] of Object.entries(v)) out[k] = await walk(x);
        return out;
      }
      return v;
    };
    return (await walk(value)) as T;
  }

  /** A task's own fields rendered; its hooks are rendered when they run, and its source is kept. */
  private async renderTask(t: Task): Promise<RenderedTask> {
    const { pre_task, post_task, source, ...rest } = t;
    const r = (await this.render(rest)) as RenderedTask;
    return {
      ...r,
      ...(pre_task && { pre_task }),
      ...(post_task && { post_task }),
      ...(source && { source }),
    };
  }

  async execute(): Promise<PlaybookReport> {
    const { pb, o } = this;
    const noop = o.noop === true;
    this.log(
      "info",
      "run",
      `${noop ? "rendering (noop)" : "starting"} playbook ${pb.metadata.name} ${pb.metadata.version}`,
    );
    try {
      await resolveNodeSets(pb, {
        client: o.client,
        cwd: this.cwd,
        signal: o.signal,
        log: (l, m) => this.log(l, "nodes", m),
        render: (d: NodeSetDef) => this.render(d),
        onSet: (name, list) => {
          this.nodes[name] = list;
          this.rec.emit({ kind: "nodes", set: name, nodes: list });
        },
      });
    } catch (err) {
      const msg = (err as Error).message;
      this.log("error", "nodes", msg);
      return this.finish(false, msg);
    }
    if (noop) return this.noop();

    if (!(await this.runList("pre_book", pb.pre_book))) {
      this.log("warn", "run", "the pre_book hook failed: the playbook fails without running its tasks");
      return this.finish(false, this.failure ?? "pre_book failed");
    }
    let success = await this.runList("tasks", pb.tasks);
    let reason = success ? undefined : this.failure;
    this.log("info", "run", `finished the main tasks: success: ${success}`);
    if (success) {
      success = await this.runList("on_success", pb.on_success);
      if (!success) reason = this.failure;
    } else {
      await this.runList("on_fail", pb.on_fail);
    }
    if (!(await this.runList("post_book", pb.post_book))) {
      this.log("warn", "run", "the post_book hook failed: the playbook fails");
      if (success) reason = this.failure;
      success = false;
    }
    return this.finish(success, reason);
  }

  /** The message of the last failure that stopped a list (the book's fail_message). */
  private failure: string | undefined;

  private async finish(success: boolean, reason?: string): Promise<PlaybookReport> {
    // metadata.on_fail may name inputs ("deploy of {{{ inputs.release }}} failed"); a
    // template that does not render is shown as written rather than hiding the failure
    const written = this.pb.metadata.on_fail;
    const onFail =
      written === undefined || success ? written : String(await this.render(written).catch(() => written));
    const fail_message = success ? undefined : onFail ? `${onFail}${reason ? ` (${reason})` : ""}` : reason;
    this.log(
      success ? "info" : "error",
      "run",
      `playbook ${this.pb.metadata.name} ${success ? "succeeded" : `failed: ${fail_message ?? ""}`}`,
    );
    this.rec.emit({ kind: "end", success, ...(fail_message !== undefined && { fail_message }) });
    return this.rec.finish({
      success,
      fail_message,
      inputs: this.values,
      dynamic: this.dynamic,
      nodes: this.nodes,
    });
  }

  /** Runs a list; stops at the first failure of a task without fail_ok. True when nothing stopped it. */
  private async runList(set: string, tasks: Task[]): Promise<boolean> {
    if (tasks.length === 0) return true;
    this.log("info", set, `running ${set} with ${tasks.length} task(s)`);
    for (const [i, t] of tasks.entries()) {
      const ok = await this.runOne(set, i, t);
      if (!ok && !t.fail_ok) {
        this.log("warn", set, `${set} stopped at task ${i + 1} of ${tasks.length}`);
        return false;
      }
      if (!ok) this.log("warn", set, `task ${i + 1} of ${set} failed but has fail_ok: continuing`);
    }
    return true;
  }

  private description(t: Task): string {
    return t.description ?? `${t.type} task`;
  }

  /** One task with its hooks, tries and sleeps; records it and makes it the previous task. */
  private async runOne(set: string, index: number, t: Task): Promise<boolean> {
    const from = `${set}[${index}]`;
    const start = Date.now();
    let description = this.description(t);
    if (this.o.signal?.aborted)
      return this.record(set, index, t, description, start, false, { success: false, msg: "interrupted" });
    if (t.pre_task && t.pre_task.length > 0 && !(await this.runList("pre_task", t.pre_task))) {
      const out = { success: false, msg: `a pre_task hook of ${description} failed: the task did not run` };
      this.failure = out.msg;
      this.log("warn", from, out.msg);
      return this.record(set, index, t, description, start, false, out);
    }
    let outcome: TaskOutcome = { success: false, msg: "not run" };
    let ran = false;
    const tries = Math.max(1, t.tries ?? 1);
    try {
      if (t.pre_sleep !== undefined) {
        const ms = durationMs(t.pre_sleep, "pre_sleep");
        this.log("info", from, `sleeping ${ms / 1000}s before the task`);
        await sleep(ms, this.o.signal);
      }
      const trySleep =
        t.try_sleep !== undefined ? durationMs(t.try_sleep, "try_sleep") : DEFAULT_TRY_SLEEP_MS;
      for (let attempt = 1; attempt <= tries; attempt++) {
        // rendered on every try: dynamic inputs and data may have changed since the last
        let rendered: RenderedTask;
        try {
          rendered = await this.renderTask(t);
        } catch (err) {
          outcome = { success: false, msg: `cannot render the task: ${(err as Error).message}` };
          this.log("error", from, outcome.msg);
          break;
        }
        description = rendered.description ?? description;
        this.rec.emit({ kind: "task_start", set, index, type: t.type, description, attempt });
        this.log("info", from, `running ${description}${tries > 1 ? ` (try ${attempt}/${tries})` : ""}`);
        outcome = await runTaskOnce(rendered, {
          client: this.o.client,
          nodes: this.nodes,
          stores: this.stores,
          cwd: this.cwd,
          signal: this.o.signal,
          log: (l, m) => this.log(l, from, m),
          progress: (done, total) => this.rec.emit({ kind: "task_progress", set, index, done, total }),
          ...(this.o.jobPollMs !== undefined && { jobPollMs: this.o.jobPollMs }),
        });
        ran = true;
        this.log(outcome.success ? "info" : "error", from, outcome.msg);
        if (outcome.success || this.o.signal?.aborted) break;
        if (attempt < tries) {
          this.log(
            "warn",
            from,
            `failed on try ${attempt}/${tries}, sleeping ${trySleep / 1000}s: ${outcome.msg}`,
          );
          await sleep(trySleep, this.o.signal);
        }
      }
    } catch (err) {
      // a bad duration in pre_sleep or try_sleep: a failure of this task, not of the run
      outcome = { success: false, msg: (err as Error).message };
      this.log("error", from, outcome.msg);
    }
    if (!outcome.success) this.failure = `${set} task ${index + 1} (${description}): ${outcome.msg}`;
    let ok = this.record(set, index, t, description, start, ran, outcome);
    if (t.post_task && t.post_task.length > 0 && !(await this.runList("post_task", t.post_task))) {
      this.log("warn", from, `a post_task hook of ${description} failed: the task fails`);
      this.failure = `a post_task hook of ${description} failed`;
      ok = false;
    }
    return ok;
  }

  private record(
    set: string,
    index: number,
    t: Task,
    description: string,
    start: number,
    ran: boolean,
    out: TaskOutcome,
  ): boolean {
    const end = Date.now();
    const run_time = seconds(end - start);
    this.rec.tasks.push({
      type: t.type,
      set,
      description,
      start_time: new Date(start).toISOString(),
      end_time: new Date(end).toISOString(),
      run_time,
      ran,
      msg: out.msg,
      success: out.success,
      ...(out.data !== undefined && { data: out.data }),
    });
    this.previous = {
      success: out.success,
      description,
      msg: out.msg,
      data: out.data ?? null,
      runtime: run_time,
    };
    this.rec.emit({ kind: "task_end", set, index, success: out.success, msg: out.msg, run_time });
    return out.success;
  }

  /**
   * noop: every list is rendered as it would run (a task's hooks around it), in
   * Choria's order with both on_success and on_fail shown; nothing runs. A task that
   * does not render fails the report. previous_task is a stand-in that succeeded.
   */
  private async noop(): Promise<PlaybookReport> {
    let ok = true;
    let reason: string | undefined;
    const show = async (set: string, tasks: Task[]): Promise<void> => {
      for (const [index, t] of tasks.entries()) {
        if (t.pre_task) await show("pre_task", t.pre_task);
        const start = Date.now();
        let out: TaskOutcome;
        let description = this.description(t);
        try {
          const r = await this.renderTask(t);
          description = r.description ?? description;
          const { pre_task: _a, post_task: _b, source: _c, ...shown } = r;
          out = { success: true, msg: `would run: ${summary(r)}`, data: shown };
        } catch (err) {
          out = { success: false, msg: `cannot render the task: ${(err as Error).message}` };
          ok = false;
          reason ??= `${set} task ${index + 1} (${description}): ${out.msg}`;
        }
        this.rec.emit({ kind: "task_start", set, index, type: t.type, description, attempt: 0 });
        this.log(out.success ? "info" : "error", `${set}[${index}]`, out.msg);
        this.record(set, index, t, description, start, false, out);
        this.previous = { success: true, description, msg: "(noop)", data: null, runtime: 0 };
        if (t.post_task) await show("post_task", t.post_task);
      }
    };
    for (const [set, tasks] of [
      ["pre_book", this.pb.pre_book],
      ["tasks", this.pb.tasks],
      ["on_success", this.pb.on_success],
      ["on_fail", this.pb.on_fail],
      ["post_book", this.pb.post_book],
    ] as const) {
      await show(set, tasks);
    }
    return this.finish(ok, reason);
  }
}

/** One line saying what a rendered task would do. */
function summary(t: RenderedTask): string {
  const nodes = (v: unknown) =>
    Array.isArray(v)
      ? `${v.length} node(s) [${v.slice(0, 5).join(", ")}${v.length > 5 ? ", ..." : ""}]`
      : String(v);
  switch (t.type) {
    case "rpc":
      return `rpc ${t.action} on ${nodes(t.nodes)} with ${JSON.stringify(t.properties ?? {})}`;
    case "shell":
      return `shell ${t.command}${t.nodes !== undefined ? ` --nodes ${nodes(t.nodes)}` : ""}`;
    case "data":
      return `data ${t.action} ${t.key}${t.action === "write" ? ` = ${JSON.stringify(t.value)}` : ""}`;
    case "webhook":
      return `webhook ${t.method ?? "POST"} ${t.uri}`;
    case "job":
      return `job on ${nodes(t.nodes)}${t.wait === false ? "" : " (waiting)"}`;
  }
}

/** noop: inputs with `save` must not write; the stores read as usual and log what they would write. */
function readOnly(stores: Record<string, DataStore>, rec: RunRecorder): Record<string, DataStore> {
  const out: Record<string, DataStore> = {};
  for (const [name, s] of Object.entries(stores)) {
    out[name] = {
      name: s.name,
      type: s.type,
      read: (key) => s.read(key),
      write: (key) => Promise.resolve(rec.log("info", "inputs", `noop: would write ${name}/${key}`)),
      delete: (key) => Promise.resolve(rec.log("info", "inputs", `noop: would delete ${name}/${key}`)),
    };
  }
  return out;
}
