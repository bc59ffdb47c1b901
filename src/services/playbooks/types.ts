/**
 * Playbooks: the one representation (IR) that both front ends compile to. A TypeScript
 * playbook (definePlaybook) and a YAML playbook (parsePlaybookYaml) produce a `Playbook`;
 * the runner only ever sees this. Field names follow Choria's YAML playbooks
 * (../shared/research/landscape.md §1.2) so a YAML book reads as Choria's did.
 *
 * Template strings (`{{{ inputs.x }}}`) may appear in any string value of a task, node
 * set or input default; they are kept as written here and rendered by the runner.
 */

/** Where a value or error came from in the source: YAML line and key path, or a TS path. */
export interface SourceRef {
  file: string;
  /** 1-based line, when the source is YAML */
  line?: number;
  /** e.g. `tasks[2].rpc.batch_size` */
  path: string;
}

export type InputType = "string" | "integer" | "number" | "boolean" | "array" | "hash" | "any";

export interface InputDef {
  description?: string;
  type: InputType;
  required?: boolean;
  default?: unknown;
  /** a regex (`/^x+$/`) or a named validator (`:shellsafe`, `:ipv4address`, `:ipv6address`, `:boolean`, …) */
  validation?: string;
  /** "store/key": the input's value comes from (and with save: goes to) a data store */
  data?: string;
  /** write the value given on the command line into the data store */
  save?: boolean;
  /** read from the store every time it is referenced, never cached */
  dynamic?: boolean;
  /** Chorus: the allowed values */
  enum?: unknown[];
}

/** Checks that apply to every node set. */
export interface NodeSetCommon {
  /** fail when fewer nodes are found */
  at_least?: number;
  /** the message when no node is found (an empty set fails unless empty_ok) */
  when_empty?: string;
  empty_ok?: boolean;
  /** take at most this many nodes */
  limit?: number;
  /** ping the nodes (rpcutil ping) and fail when any does not answer */
  test?: boolean;
  /** agent -> SemVer range the nodes' agent versions must satisfy */
  uses?: Record<string, string>;
}

export type NodeSetDef =
  | (NodeSetCommon & {
      /** Chorus discovery (Choria's `mcollective` type; `mcollective` is accepted as an alias in YAML) */
      type: "discovery";
      discovery_method?: string;
      discovery_options?: Record<string, string>;
      identities?: string[];
      classes?: string[];
      agents?: string[];
      facts?: string[];
      compound?: string;
      collective?: string;
    })
  | (NodeSetCommon & { type: "file"; file: string })
  | (NodeSetCommon & { type: "shell"; script: string; timeout?: string })
  | (NodeSetCommon & { type: "list"; nodes: string[] });

/** Keys every task has (Choria's common task keys). */
export interface TaskCommon {
  description?: string;
  /** attempts (default 1) */
  tries?: number;
  /** between attempts (default "10s") */
  try_sleep?: string;
  /** before the first attempt */
  pre_sleep?: string;
  /** a failure does not stop the list */
  fail_ok?: boolean;
  /** run before / after this task (Choria's undocumented per-task hooks) */
  pre_task?: Task[];
  post_task?: Task[];
  /** where it was written, for errors and the report */
  source?: SourceRef;
}

export type Task =
  | (TaskCommon & {
      type: "rpc";
      /** node set name or a template giving an array of identities */
      nodes: string;
      /** "agent.action" */
      action: string;
      properties?: Record<string, unknown>;
      batch_size?: number;
      batch_sleep_time?: string;
      silent?: boolean;
      /** an expression (Chorus's `--filter-replies` language) every reply must satisfy */
      assert?: string;
      post?: "summarize"[];
    })
  | (TaskCommon & {
      type: "shell";
      command: string;
      cwd?: string;
      environment?: Record<string, string>;
      /** node set passed as `--nodes a,b` */
      nodes?: string;
      timeout?: string;
    })
  | (TaskCommon & { type: "data"; action: "write" | "delete"; key: string; value?: unknown })
  | (TaskCommon & {
      type: "webhook";
      uri: string;
      method?: "GET" | "POST";
      headers?: Record<string, string>;
      data?: Record<string, unknown>;
      timeout?: string;
    })
  | (TaskCommon & {
      type: "job";
      nodes: string;
      /** the workflow document (YAML text or an object) given to job#run_workflow */
      workflow: string | Record<string, unknown>;
      /** wait for the executions to finish (default true) */
      wait?: boolean;
      timeout?: string;
    });

export type TaskType = Task["type"];

export type DataStoreDef =
  | { type: "memory" }
  | { type: "environment"; prefix?: string }
  | { type: "file"; file: string; format?: "yaml" | "json"; create?: boolean }
  | { type: "kv"; bucket: string; create?: boolean }
  | { type: "shell"; command: string; timeout?: string; cwd?: string; environment?: Record<string, string> };

/**
 * A lock taken before any task runs: `store` (the playbook's name in that store) or
 * `store/path`. On a `kv` store the lock is a key created atomically; `governor:NAME` takes
 * a slot of a Streams governor (counted capacity).
 */
export type LockDef = string;

export interface PlaybookMetadata {
  name: string;
  version: string;
  author?: string;
  description?: string;
  run_as?: string;
  loglevel?: "debug" | "info" | "warn" | "error";
  /** message when the book fails */
  on_fail?: string;
  tags?: string[];
}

/** The intermediate representation. JSON-serialisable: `chorus playbook show --json` prints it. */
export interface Playbook {
  metadata: PlaybookMetadata;
  /** agent -> SemVer range, checked on every node set */
  uses: Record<string, string>;
  inputs: Record<string, InputDef>;
  nodes: Record<string, NodeSetDef>;
  data_stores: Record<string, DataStoreDef>;
  locks: LockDef[];
  pre_book: Task[];
  tasks: Task[];
  on_success: Task[];
  on_fail: Task[];
  post_book: Task[];
  /** the file it was compiled from */
  source: string;
}

/** One line of the run's log, kept in the report. */
export interface PlaybookLogEntry {
  time: string;
  level: "debug" | "info" | "warn" | "error";
  from: string;
  msg: string;
}

export interface TaskReport {
  type: TaskType;
  /** which list: pre_book, tasks, on_success, on_fail, post_book, pre_task, post_task */
  set: string;
  description: string;
  start_time: string;
  end_time: string;
  run_time: number;
  ran: boolean;
  msg: string;
  success: boolean;
  /** task result data (rpc: replies summary; shell: exit code and output) */
  data?: unknown;
}

/** Choria's report (YAML with --report), field for field. */
export interface PlaybookReport {
  report: { version: 1; timestamp: string; success: boolean; fail_message?: string };
  playbook: { name: string; version: string };
  inputs: { static: Record<string, unknown>; dynamic: string[] };
  nodes: Record<string, string[]>;
  tasks: TaskReport[];
  metrics: {
    run_time: number;
    task_count: number;
    task_types: Record<string, { count: number; total_time: number; pass: number; fail: number }>;
  };
  logs: PlaybookLogEntry[];
}

/** What the runner tells a live view as it goes. */
export type PlaybookEvent =
  | { kind: "lock"; lock: string; state: "waiting" | "held" | "released" }
  | { kind: "nodes"; set: string; nodes: string[] }
  | { kind: "task_start"; set: string; index: number; type: TaskType; description: string; attempt: number }
  | { kind: "task_progress"; set: string; index: number; done: number; total: number }
  | { kind: "task_end"; set: string; index: number; success: boolean; msg: string; run_time: number }
  | { kind: "log"; entry: PlaybookLogEntry }
  | { kind: "end"; success: boolean; fail_message?: string };

/** A data store as the runner, inputs and data tasks use it (data.ts opens one from its DataStoreDef). */
export interface DataStore {
  readonly name: string;
  readonly type: DataStoreDef["type"];
  /** undefined when the key is not there */
  read(key: string): Promise<unknown>;
  write(key: string, value: unknown): Promise<void>;
  delete(key: string): Promise<void>;
  close?(): Promise<void>;
}

/** What templates see (`{{{ inputs.x }}}`, `{{{ nodes.web }}}`, `{{{ previous_task.msg }}}`, …). */
export interface TemplateContext {
  inputs: Record<string, unknown>;
  /** dynamic inputs are read from their store each time they are referenced */
  dynamicInput?: (name: string) => Promise<unknown>;
  nodes: Record<string, string[]>;
  metadata: PlaybookMetadata;
  previous_task?: { success: boolean; description: string; msg: string; data: unknown; runtime: number };
  /** when the run started (elapsed_time) */
  startedAt: number;
}
