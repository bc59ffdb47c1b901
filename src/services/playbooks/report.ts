import { stringify } from "yaml";
import type { Logger } from "../../core/util/index.js";
import type { Playbook, PlaybookEvent, PlaybookLogEntry, PlaybookReport, TaskReport } from "./types.js";

type Level = PlaybookLogEntry["level"];
const LEVELS: Record<Level, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** Seconds with millisecond precision, as Choria's reports give run times. */
export function seconds(ms: number): number {
  return Math.round(ms) / 1000;
}

/**
 * Collects what a run produces (task results, log lines) and turns it into Choria's
 * report. Log lines below the playbook's `loglevel` are neither kept nor shown.
 */
export class RunRecorder {
  readonly tasks: TaskReport[] = [];
  readonly logs: PlaybookLogEntry[] = [];
  private readonly startedAt = Date.now();
  private readonly min: number;

  constructor(
    private readonly pb: Playbook,
    private readonly onEvent: ((e: PlaybookEvent) => void) | undefined,
    private readonly logger: Logger | undefined,
  ) {
    this.min = LEVELS[pb.metadata.loglevel ?? "info"];
  }

  get started(): number {
    return this.startedAt;
  }

  log(level: Level, from: string, msg: string): void {
    if (LEVELS[level] < this.min) return;
    const entry: PlaybookLogEntry = { time: new Date().toISOString(), level, from, msg };
    this.logs.push(entry);
    this.emit({ kind: "log", entry });
    this.logger?.[level]({ playbook: this.pb.metadata.name, from }, msg);
  }

  /** A live view must never break the run: its exceptions are swallowed. */
  emit(e: PlaybookEvent): void {
    try {
      this.onEvent?.(e);
    } catch {
      // the view's problem, not the run's
    }
  }

  finish(o: {
    success: boolean;
    fail_message?: string | undefined;
    inputs: Record<string, unknown>;
    dynamic: string[];
    nodes: Record<string, string[]>;
  }): PlaybookReport {
    const task_types: PlaybookReport["metrics"]["task_types"] = {};
    for (const t of this.tasks) {
      const m = (task_types[t.type] ??= { count: 0, total_time: 0, pass: 0, fail: 0 });
      m.count++;
      m.total_time = seconds(m.total_time * 1000 + t.run_time * 1000);
      if (t.success) m.pass++;
      else m.fail++;
    }
    const staticInputs: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(o.inputs)) if (!o.dynamic.includes(k)) staticInputs[k] = v;
    return {
      report: {
        version: 1,
        timestamp: new Date(this.startedAt).toISOString(),
        success: o.success,
        ...(o.fail_message !== undefined && { fail_message: o.fail_message }),
      },
      playbook: { name: this.pb.metadata.name, version: this.pb.metadata.version },
      inputs: { static: staticInputs, dynamic: [...o.dynamic] },
      nodes: o.nodes,
      tasks: this.tasks,
      metrics: {
        run_time: seconds(Date.now() - this.startedAt),
        task_count: this.tasks.length,
        task_types,
      },
      logs: this.logs,
    };
  }
}

/** The report as YAML (`--report FILE`), keys in Choria's order. */
export function renderReportYaml(r: PlaybookReport): string {
  // aliases would make a report with shared arrays (a node set used twice) unreadable to people
  return stringify(r, { aliasDuplicateObjects: false, lineWidth: 0 });
}
