import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Config } from "../../core/config/index.js";
import {
  applyOutputDefaults,
  builtinDDL,
  findAction,
  formatIssues,
  validateInputs,
} from "../../core/ddl/index.js";
import { StatusCode } from "../../core/protocol/index.js";
import type { ClientClaims } from "../../core/security/index.js";
import {
  WorkflowError,
  idKind,
  parseWorkflow,
  type AgentInvoker,
  type ExecutionStatus,
  type Workflow,
} from "../../services/jobs/index.js";
import { parseSize } from "../../services/submission/index.js";
import type { NodeRuntime } from "../node.js";
import type { AgentRegistry } from "../registry.js";
import { ActionReply, type ActionRequest, type AgentHandler } from "../types.js";

export const JOB_AGENT = "job";

/** What the job agent needs of a node's executions: a services/jobs Jobs, or the emulator's stand-in. */
export interface JobHost {
  start(
    w: Workflow,
    meta: { caller: string; requestId?: string },
  ): { execution_id: string; workflow_id: string };
  query(id: string): ExecutionStatus | undefined;
  stop(id: string, graceMs?: number): Promise<ExecutionStatus>;
  running(): ExecutionStatus[];
}

/** Counters of the job agent (metrics; the tests read them). */
export interface JobAgentStats {
  /** executions started */
  started: number;
  /** workflows refused by the schema or the semantic checks */
  invalid: number;
  /** malformed execution or workflow ids */
  badIds: number;
  /** well-formed ids this node has no execution for */
  unknownIds: number;
  /** starts or stops that failed on the node (disk, process limits...) */
  failures: number;
}

export interface JobAgentOptions {
  /**
   * The executions of the node a request reached. `create` is true only for
   * run_workflow, so a host that makes state per node (the emulator) makes it only
   * when a workflow runs there.
   */
  host(node: NodeRuntime, create: boolean): JobHost | undefined;
  /**
   * false: the node has no submission spool, so workflow events go nowhere; the
   * run_workflow reply says so (the workflow still runs and can be queried).
   */
  events: boolean;
}

/** The job agent: run_workflow, query_workflow, stop_workflow and running_workflows. */
export class JobAgent {
  private readonly counters: JobAgentStats = {
    started: 0,
    invalid: 0,
    badIds: 0,
    unknownIds: 0,
    failures: 0,
  };

  constructor(private readonly o: JobAgentOptions) {}

  get stats(): JobAgentStats {
    return { ...this.counters };
  }

  handlers(): Record<string, AgentHandler> {
    return {
      run_workflow: (req, reply) => this.run(req, reply),
      query_workflow: (req, reply) => {
        const st = this.find(req, reply);
        return st && statusOutput(st);
      },
      stop_workflow: async (req, reply) => {
        const st = this.find(req, reply);
        if (!st) return;
        try {
          const after = await (this.o.host(req.node, false) as JobHost).stop(st.execution_id);
          return { execution_id: after.execution_id, workflow_id: after.workflow_id, state: after.state };
        } catch (err) {
          if (!(err instanceof WorkflowError)) this.counters.failures++;
          reply.fail((err as Error).message);
          return;
        }
      },
      running_workflows: (req) => {
        const running = this.o.host(req.node, false)?.running() ?? [];
        return {
          executions: running.map((s) => ({
            execution_id: s.execution_id,
            workflow_id: s.workflow_id,
            name: s.name,
            started: s.started,
            caller: s.caller,
          })),
          count: running.length,
        };
      },
    };
  }

  private run(req: ActionRequest, reply: ActionReply): Record<string, unknown> | undefined {
    let w: Workflow;
    try {
      w = parseWorkflow(String(req.data.workflow));
    } catch (err) {
      this.counters.invalid++;
      // the engine's message names the step and field: steps[2] "deploy".timeout: ...
      reply.fail((err as Error).message, StatusCode.InvalidData);
      return undefined;
    }
    let ids: { execution_id: string; workflow_id: string };
    try {
      ids = (this.o.host(req.node, true) as JobHost).start(w, {
        caller: req.caller,
        requestId: req.requestId,
      });
    } catch (err) {
      this.counters.failures++;
      reply.fail(`cannot start workflow ${w.name}: ${(err as Error).message}`);
      return undefined;
    }
    this.counters.started++;
    if (!this.o.events)
      reply.statusmsg = "OK (no submission spool on this node: workflow events are not published)";
    return { ...ids, state: "running" };
  }

  /** The execution an id names, or a failed reply saying why there is none. */
  private find(req: ActionRequest, reply: ActionReply): ExecutionStatus | undefined {
    const id = String(req.data.id);
    try {
      // the engine's own check, before the id comes near a path
      idKind(id);
    } catch (err) {
      this.counters.badIds++;
      reply.fail((err as Error).message, StatusCode.InvalidData);
      return undefined;
    }
    const st = this.o.host(req.node, false)?.query(id);
    if (!st) {
      this.counters.unknownIds++;
      reply.fail(`no ${id.startsWith("wf_") ? "execution of workflow" : "execution"} ${id} on this node`);
    }
    return st;
  }
}

function statusOutput(s: ExecutionStatus): Record<string, unknown> {
  return {
    execution_id: s.execution_id,
    workflow_id: s.workflow_id,
    name: s.name,
    state: s.state,
    started: s.started,
    ...(s.finished !== undefined && { finished: s.finished }),
    caller: s.caller,
    steps: s.steps,
  };
}

/** Registers the job agent (its DDL ships as schemas/builtin-agent-ddls/job.json). */
export function registerJobAgent(registry: AgentRegistry, o: JobAgentOptions): JobAgent {
  const agent = new JobAgent(o);
  registry.register(builtinDDL(JOB_AGENT), agent.handlers(), { replace: true });
  return agent;
}

/**
 * Runs a node's own agents in-process for workflow agent steps (the manager process,
 * emulated nodes): the DDL's input checks and defaults, the handler, the DDL's output
 * defaults, as a request over NATS would get them. Steps act with the node's authority:
 * whoever may call job#run_workflow may run commands anyway. Never throws.
 */
export function localInvoker(node: NodeRuntime, caller: string): AgentInvoker {
  const callerClaims: ClientClaims = {
    purpose: "choria_client_id",
    iss: "",
    public_key: "",
    callerid: caller,
  };
  return {
    async call(agent, action, inputs, timeoutMs) {
      const fail = (statuscode: StatusCode, statusmsg: string) => ({ statuscode, statusmsg, data: {} });
      const def = node.registry.get(agent);
      if (!def) return fail(StatusCode.UnknownAction, `unknown agent ${agent} on ${node.identity}`);
      const handler = Object.hasOwn(def.actions, action) ? def.actions[action] : undefined;
      if (!handler || !findAction(def.ddl, action))
        return fail(StatusCode.UnknownAction, `Unknown action ${action} for agent ${agent}`);
      const data: Record<string, unknown> = { ...inputs };
      const issues = validateInputs(def.ddl, action, data);
      if (issues.length > 0) {
        const missing = issues.some((i) => i.reason === "is required");
        return fail(missing ? StatusCode.MissingData : StatusCode.InvalidData, formatIssues(issues));
      }
      const req: ActionRequest = {
        agent,
        action,
        data,
        caller,
        callerClaims,
        requestId: "",
        sender: node.identity,
        collective: node.mainCollective,
        ttl: Math.ceil(timeoutMs / 1000),
        time: Date.now() * 1e6,
        node,
        // the engine gives up on the step at its timeout; this tells the handler so
        signal: AbortSignal.timeout(timeoutMs),
      };
      const reply = new ActionReply();
      try {
        const out = await handler(req, reply);
        if (out && typeof out === "object") Object.assign(reply.data, out);
      } catch (err) {
        return fail(StatusCode.UnknownError, err instanceof Error ? err.message : String(err));
      }
      applyOutputDefaults(def.ddl, action, reply.data);
      return { statuscode: reply.statuscode, statusmsg: reply.statusmsg, data: reply.data };
    },
  };
}

/** Where and how a server runs workflows (ServerOptions.jobs). */
export interface JobsSettings {
  /** executions live in `<dir>/<execution id>/` */
  dir: string;
  /** per-step output log cap, bytes (default 1 MiB) */
  maxOutputBytes?: number;
  /** argv prefix that starts a manager (default: dist/server/job-manager.js with the config file) */
  managerCommand?: string[];
}

/**
 * `plugin.chorus.jobs.*` of a server config; undefined when the agent is off.
 * enable: default on when the node has a submission spool (events need it), off
 * otherwise; turned on without a spool, workflows run but report no events.
 * dir: default `<spool's parent>/jobs`, or `<config dir>/jobs` without a spool.
 * max_output: per-step log cap, a size like 1MB (default 1 MiB).
 */
export function jobsSettings(cfg: Config, spool: string | undefined): JobsSettings | undefined {
  const k = (n: string) => `plugin.chorus.jobs.${n}`;
  if (!cfg.bool(k("enable"), spool !== undefined)) return undefined;
  const rawDir = cfg.get(k("dir"));
  const base = dirname(resolve(cfg.file));
  const dir = rawDir ? resolve(base, rawDir) : join(spool !== undefined ? dirname(spool) : base, "jobs");
  const rawMax = cfg.get(k("max_output"));
  const maxOutputBytes = rawMax === undefined ? undefined : parseSize(rawMax);
  if (rawMax !== undefined && maxOutputBytes === undefined)
    throw cfg.error(k("max_output"), `${k("max_output")}: "${rawMax}" is not a size (e.g. 1MB)`);
  if (maxOutputBytes !== undefined && maxOutputBytes < 1024)
    throw cfg.error(k("max_output"), `${k("max_output")} must be at least 1KB`);
  return {
    dir,
    ...(maxOutputBytes !== undefined && { maxOutputBytes }),
    managerCommand: jobManagerCommand(cfg.file),
  };
}

/**
 * The server's job manager (dist/server/job-manager.js), which loads the node's agents
 * from `configFile` for agent steps. Under vitest the sources are TypeScript, which
 * node cannot start as a process: the built file is used then (after `npm run build`).
 */
export function jobManagerCommand(configFile?: string): string[] {
  const here = import.meta.url;
  const entry = here.endsWith(".js")
    ? new URL("../job-manager.js", here)
    : new URL("../../../dist/server/job-manager.js", here);
  return [
    process.execPath,
    fileURLToPath(entry),
    ...(configFile !== undefined ? ["--config", resolve(configFile)] : []),
  ];
}
