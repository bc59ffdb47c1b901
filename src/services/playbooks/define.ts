/**
 * The typed TypeScript front end. A `.ts` playbook default-exports `definePlaybook({...})`;
 * TypeScript checks what it can (task `nodes` must name a declared node set or be a
 * template; input `data` bindings, `data` task keys and locks must name a declared data
 * store; an input's `default` matches its `type`) and validatePlaybook checks the rest, so
 * both front ends give the same IR and the same errors.
 */
import type { DataStoreDef, InputDef, NodeSetDef, Playbook, PlaybookMetadata, Task } from "./types.js";
import { validatePlaybook } from "./validate.js";

/** A `{{{ expr }}}` template: accepted wherever a node set name is. */
export type TemplateString = `{{{${string}}}}`;

type TaskOf<T extends Task["type"]> = Extract<Task, { type: T }>;

/** Per-task hooks are typed like the lists they sit in. */
type Hooked<T, N extends string, D extends string> = Omit<T, "pre_task" | "post_task" | "source"> & {
  pre_task?: PlaybookTask<N, D>[];
  post_task?: PlaybookTask<N, D>[];
};

export type RpcTaskDef<N extends string = string, D extends string = string> = Hooked<
  Omit<TaskOf<"rpc">, "nodes">,
  N,
  D
> & { nodes: N | TemplateString };
export type ShellTaskDef<N extends string = string, D extends string = string> = Hooked<
  Omit<TaskOf<"shell">, "nodes">,
  N,
  D
> & { nodes?: N | TemplateString };
export type DataTaskDef<N extends string = string, D extends string = string> = Hooked<
  Omit<TaskOf<"data">, "key">,
  N,
  D
> & { key: `${D}/${string}` };
export type WebhookTaskDef<N extends string = string, D extends string = string> = Hooked<
  TaskOf<"webhook">,
  N,
  D
>;
export type JobTaskDef<N extends string = string, D extends string = string> = Hooked<
  Omit<TaskOf<"job">, "nodes">,
  N,
  D
> & { nodes: N | TemplateString };

/** A task as a TS playbook writes it: node set and data store names are checked against the book. */
export type PlaybookTask<N extends string = string, D extends string = string> =
  RpcTaskDef<N, D> | ShellTaskDef<N, D> | DataTaskDef<N, D> | WebhookTaskDef<N, D> | JobTaskDef<N, D>;

type InputValue = {
  string: string;
  integer: number;
  number: number;
  boolean: boolean;
  array: unknown[];
  hash: Record<string, unknown>;
  any: unknown;
};

/** An input whose `default` and `enum` match its `type` (a template string is allowed as a default too). */
export type InputDefinition<D extends string = string> = {
  [T in keyof InputValue]: Omit<InputDef, "type" | "default" | "enum" | "data"> & {
    type: T;
    default?: InputValue[T] | TemplateString;
    enum?: InputValue[T][];
    data?: `${D}/${string}`;
  };
}[keyof InputValue];

export interface PlaybookDefinition<N extends string = string, D extends string = string> {
  metadata: PlaybookMetadata;
  uses?: Record<string, string>;
  inputs?: Record<string, InputDefinition<NoInfer<D>>>;
  nodes?: Record<N, NodeSetDef>;
  data_stores?: Record<D, DataStoreDef>;
  /** a store name, `store/path`, or `governor:NAME` */
  locks?: (NoInfer<D> | `${NoInfer<D>}/${string}` | `governor:${string}`)[];
  pre_book?: PlaybookTask<NoInfer<N>, NoInfer<D>>[];
  tasks?: PlaybookTask<NoInfer<N>, NoInfer<D>>[];
  on_success?: PlaybookTask<NoInfer<N>, NoInfer<D>>[];
  on_fail?: PlaybookTask<NoInfer<N>, NoInfer<D>>[];
  post_book?: PlaybookTask<NoInfer<N>, NoInfer<D>>[];
}

/**
 * The file loadPlaybook is importing, so errors raised while a `.ts` book is evaluated name
 * it. A global symbol, because the book may see another copy of this module than the loader.
 */
export const LOADING_FILE = Symbol.for("chorus.playbook.loading");

/**
 * Compiles a typed definition to the IR, through the same checks as YAML. Names are
 * inferred from `nodes` and `data_stores`; a task naming an undeclared node set or store
 * does not type-check.
 */
export function definePlaybook<const N extends string = never, const D extends string = never>(
  def: PlaybookDefinition<N, D>,
): Playbook {
  const loading = (globalThis as { [LOADING_FILE]?: string })[LOADING_FILE];
  return validatePlaybook(def, loading ?? "<definePlaybook>");
}

/*
 * The builders only add `type`; they are generic over the whole task so the literal node set
 * and store names survive to be checked against the book's `nodes` and `data_stores`.
 */

/** `rpc({ nodes: "web", action: "service.restart" })`: an rpc task. */
export function rpc<const T extends Omit<RpcTaskDef, "type">>(t: T): T & { type: "rpc" } {
  return { type: "rpc", ...t };
}

/** `shell({ command: "./check.sh" })`: a local shell task. */
export function shell<const T extends Omit<ShellTaskDef, "type">>(t: T): T & { type: "shell" } {
  return { type: "shell", ...t };
}

/** `data({ action: "write", key: "mem/last", value: "{{{ uuid }}}" })`: writes or deletes a data store key. */
export function data<const T extends Omit<DataTaskDef, "type">>(t: T): T & { type: "data" } {
  return { type: "data", ...t };
}

/** `webhook({ uri: "https://…", method: "POST" })`: an HTTP call. */
export function webhook<const T extends Omit<WebhookTaskDef, "type">>(t: T): T & { type: "webhook" } {
  return { type: "webhook", ...t };
}

/** `job({ nodes: "web", workflow: {...} })`: runs a workflow through the job agent. */
export function job<const T extends Omit<JobTaskDef, "type">>(t: T): T & { type: "job" } {
  return { type: "job", ...t };
}
