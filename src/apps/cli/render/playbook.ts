import { SingleBar } from "cli-progress";
import type {
  DataStoreDef,
  InputFlag,
  NodeSetDef,
  Playbook,
  PlaybookEvent,
  PlaybookReport,
  Task,
} from "../../../services/playbooks/index.js";
import { plural } from "./words.js";

/** `tasks[2]` as a person counts: `tasks #3`. */
const where = (set: string, index: number): string => `${set} #${index + 1}`;

const secs = (s: number): string => `${s.toFixed(2)}s`;

function shortList(nodes: string[], max = 5): string {
  const shown = nodes.slice(0, max).join(", ");
  return nodes.length > max ? `${shown}, ... (${nodes.length - max} more)` : shown;
}

/**
 * One line per thing that happens in a run (the live view), or undefined for events
 * the view leaves out: progress (the bar shows it) and info/debug log lines (the task
 * lines say the same). `attempt` 0 is a noop rendering.
 */
export function playbookEventLine(e: PlaybookEvent, o: { noop?: boolean } = {}): string | undefined {
  switch (e.kind) {
    case "lock":
      return `lock     ${e.lock}: ${e.state === "waiting" ? "held by another run, waiting" : e.state}`;
    case "nodes":
      return `nodes    ${e.set}: ${plural(e.nodes.length, "node")}${e.nodes.length > 0 ? ` (${shortList(e.nodes)})` : ""}`;
    case "task_start":
      return e.attempt === 0
        ? undefined
        : `start    ${where(e.set, e.index)} ${e.type}: ${e.description}${e.attempt > 1 ? ` (try ${e.attempt})` : ""}`;
    case "task_progress":
      return undefined;
    case "task_end":
      if (o.noop) return `${e.success ? "noop    " : "FAILED  "} ${where(e.set, e.index)}: ${e.msg}`;
      return `${e.success ? "ok      " : "FAILED  "} ${where(e.set, e.index)} (${secs(e.run_time)}): ${e.msg}`;
    case "log":
      if (e.entry.level !== "warn" && e.entry.level !== "error") return undefined;
      // the run logs each lock event too: its lock line has said it
      if (e.entry.from === "locks" && /^lock \S+ (waiting|held|released)$/.test(e.entry.msg))
        return undefined;
      return `${e.entry.level === "warn" ? "warning " : "error   "} ${e.entry.from}: ${e.entry.msg}`;
    case "end":
      return undefined;
  }
}

/** The live view's progress bar for rpc batches: on a terminal only, cleared when the task ends. */
export interface TaskBar {
  update(done: number, total: number): void;
  stop(): void;
}

export function taskBar(stream: NodeJS.WriteStream = process.stderr): TaskBar {
  if (!stream.isTTY) return { update() {}, stop() {} };
  const bar = new SingleBar({
    stream,
    format: "{bar} {value} / {total} nodes",
    clearOnComplete: true,
    hideCursor: true,
    fps: 10,
  });
  let started = false;
  return {
    update(done, total) {
      if (!started) bar.start(total, done);
      else {
        bar.setTotal(total);
        bar.update(done);
      }
      started = true;
    },
    stop() {
      if (started) bar.stop();
      started = false;
    },
  };
}

/** The summary printed after a run. */
export function renderPlaybookSummary(r: PlaybookReport, o: { noop?: boolean } = {}): string {
  const ran = r.tasks.filter((t) => t.ran);
  const passed = r.tasks.filter((t) => t.success).length;
  const failed = r.tasks.filter((t) => !t.success).length;
  const head = `Playbook ${r.playbook.name} ${r.playbook.version}: ${
    o.noop
      ? r.report.success
        ? "rendered (noop)"
        : "does not render (noop)"
      : r.report.success
        ? "succeeded"
        : "FAILED"
  } in ${secs(r.metrics.run_time)}`;
  const lines = [head];
  for (const [set, nodes] of Object.entries(r.nodes)) {
    lines.push(`  nodes ${set}: ${plural(nodes.length, "node")}`);
  }
  lines.push(
    o.noop
      ? `  tasks: ${plural(r.tasks.length, "task")} rendered, none run`
      : `  tasks: ${ran.length} run, ${passed} passed, ${failed} failed`,
  );
  if (r.report.fail_message) lines.push(`  reason: ${r.report.fail_message}`);
  return lines.join("\n") + "\n";
}

const json = (v: unknown): string => (typeof v === "string" ? v : JSON.stringify(v));

function table(rows: string[][], indent = "  "): string[] {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map(
    (r) =>
      indent +
      r
        .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] as number)))
        .join("  ")
        .trimEnd(),
  );
}

function nodeSetLine(d: NodeSetDef): string {
  const parts: string[] = [d.type];
  switch (d.type) {
    case "discovery":
      if (d.discovery_method) parts.push(`method=${d.discovery_method}`);
      if (d.identities?.length) parts.push(`identities=${json(d.identities)}`);
      if (d.classes?.length) parts.push(`classes=${json(d.classes)}`);
      if (d.agents?.length) parts.push(`agents=${json(d.agents)}`);
      if (d.facts?.length) parts.push(`facts=${json(d.facts)}`);
      if (d.compound) parts.push(`compound=${json(d.compound)}`);
      if (d.collective) parts.push(`collective=${d.collective}`);
      break;
    case "file":
      parts.push(d.file);
      break;
    case "shell":
      parts.push(json(d.script));
      break;
    case "list":
      parts.push(json(d.nodes));
      break;
  }
  if (d.at_least !== undefined) parts.push(`at_least=${d.at_least}`);
  if (d.limit !== undefined) parts.push(`limit=${d.limit}`);
  if (d.empty_ok) parts.push("empty_ok");
  if (d.when_empty) parts.push(`when_empty=${json(d.when_empty)}`);
  if (d.test) parts.push("test");
  if (d.uses && Object.keys(d.uses).length > 0) parts.push(`uses=${json(d.uses)}`);
  return parts.join(" ");
}

function storeLine(d: DataStoreDef): string {
  switch (d.type) {
    case "memory":
      return "memory";
    case "environment":
      return `environment${d.prefix ? ` prefix=${d.prefix}` : ""}`;
    case "file":
      return `file ${d.file}${d.format ? ` format=${d.format}` : ""}${d.create ? " create" : ""}`;
    case "kv":
      return `kv bucket=${d.bucket}${d.create ? " create" : ""}`;
    case "shell":
      return `shell ${d.command}${d.timeout ? ` timeout=${d.timeout}` : ""}`;
  }
}

/** A task as written (templates unrendered), one line. */
export function taskLine(t: Task): string {
  let what: string;
  switch (t.type) {
    case "rpc":
      what = `rpc ${t.action} on ${t.nodes}`;
      if (t.properties && Object.keys(t.properties).length > 0) what += ` ${json(t.properties)}`;
      if (t.batch_size !== undefined)
        what += ` batch ${t.batch_size}${t.batch_sleep_time ? ` every ${t.batch_sleep_time}` : ""}`;
      if (t.assert) what += ` assert ${json(t.assert)}`;
      if (t.post?.length) what += ` post ${t.post.join(",")}`;
      if (t.silent) what += " silent";
      break;
    case "shell":
      what = `shell ${t.command}${t.nodes ? ` --nodes ${t.nodes}` : ""}`;
      if (t.cwd) what += ` (in ${t.cwd})`;
      if (t.timeout) what += ` timeout ${t.timeout}`;
      break;
    case "data":
      what = `data ${t.action} ${t.key}${t.action === "write" ? ` = ${json(t.value)}` : ""}`;
      break;
    case "webhook":
      what = `webhook ${t.method ?? "POST"} ${t.uri}`;
      break;
    case "job":
      what = `job ${typeof t.workflow === "string" ? "(workflow text)" : String(t.workflow.name ?? "(workflow)")} on ${t.nodes}${t.wait === false ? " (no wait)" : ""}${t.timeout ? ` timeout ${t.timeout}` : ""}`;
      break;
  }
  const extra: string[] = [];
  if ((t.tries ?? 1) > 1) extra.push(`tries ${t.tries}${t.try_sleep ? ` every ${t.try_sleep}` : ""}`);
  if (t.pre_sleep) extra.push(`pre_sleep ${t.pre_sleep}`);
  if (t.fail_ok) extra.push("fail_ok");
  const desc = t.description ? `${t.description}: ` : "";
  return `${desc}${what}${extra.length > 0 ? ` [${extra.join(", ")}]` : ""}`;
}

function taskLines(tasks: Task[], indent: string, out: string[]): void {
  tasks.forEach((t, i) => {
    out.push(`${indent}${i + 1}. ${taskLine(t)}`);
    if (t.pre_task?.length) {
      out.push(`${indent}   pre_task:`);
      taskLines(t.pre_task, `${indent}     `, out);
    }
    if (t.post_task?.length) {
      out.push(`${indent}   post_task:`);
      taskLines(t.post_task, `${indent}     `, out);
    }
  });
}

/**
 * `chorus playbook show`: what a book is and takes. `reserved` are the run command's own
 * options: an input of that name is given with --input NAME=VALUE only.
 */
export function renderPlaybookShow(pb: Playbook, flags: InputFlag[], reserved: ReadonlySet<string>): string {
  const m = pb.metadata;
  const out: string[] = [`Playbook: ${m.name} ${m.version}`];
  if (m.description) out.push(`Description: ${m.description}`);
  if (m.author) out.push(`Author: ${m.author}`);
  if (m.tags?.length) out.push(`Tags: ${m.tags.join(", ")}`);
  if (m.run_as) out.push(`Run as: ${m.run_as}`);
  out.push(`Source: ${pb.source}`);
  if (Object.keys(pb.uses).length > 0) {
    out.push("", "Uses:");
    out.push(...table(Object.entries(pb.uses).map(([a, r]) => [a, r])));
  }
  out.push("", "Inputs:");
  if (flags.length === 0) out.push("  (none)");
  else
    out.push(
      ...table(
        flags.map((f) => {
          const def = pb.inputs[f.name];
          const how = f.dynamic
            ? `dynamic from ${def?.data ?? "?"}`
            : f.required
              ? "required"
              : f.default !== undefined
                ? `default ${json(f.default)}`
                : "optional";
          const flag = reserved.has(f.name) ? `--input ${f.name}=` : f.flag;
          const bound = !f.dynamic && def?.data ? ` (data ${def.data}${def.save ? ", saved" : ""})` : "";
          return [flag, f.type, how + bound, f.description];
        }),
      ),
    );
  out.push("", "Node sets:");
  const sets = Object.entries(pb.nodes);
  if (sets.length === 0) out.push("  (none)");
  else out.push(...table(sets.map(([n, d]) => [n, nodeSetLine(d)])));
  const stores = Object.entries(pb.data_stores);
  if (stores.length > 0) {
    out.push("", "Data stores:");
    out.push(...table(stores.map(([n, d]) => [n, storeLine(d)])));
  }
  if (pb.locks.length > 0) {
    out.push("", "Locks:");
    for (const l of pb.locks) out.push(`  ${l}`);
  }
  for (const [set, tasks] of [
    ["pre_book", pb.pre_book],
    ["tasks", pb.tasks],
    ["on_success", pb.on_success],
    ["on_fail", pb.on_fail],
    ["post_book", pb.post_book],
  ] as const) {
    if (tasks.length === 0 && set !== "tasks") continue;
    out.push("", `${set}:`);
    if (tasks.length === 0) out.push("  (none)");
    taskLines(tasks, "  ", out);
  }
  return out.join("\n") + "\n";
}
