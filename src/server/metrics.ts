import type { Counter, Histogram, Registry } from "prom-client";
import { MetricsEndpoint, promClient } from "../core/util/index.js";
import type { SpoolStats } from "../services/submission/index.js";
import type { JobAgentStats } from "./agents/index.js";
import type { MachineHostStats } from "./machines.js";
import type { RequestDecoder } from "./decoder.js";
import type { ReplayGuard } from "./replay.js";
import type { ActionPolicyStats } from "./authz/index.js";
import type { NodeRuntime } from "./node.js";
import { ServerError } from "./registry.js";
import type { ServerStats } from "./stats.js";

export interface ServerMetricsOptions {
  port: number;
  /** Interface to bind (Choria's plugin.choria.stats_address); default loopback. */
  host?: string;
  /** The nodes to report, read at every scrape. */
  nodes: () => Iterable<NodeRuntime>;
  decoder?: RequestDecoder;
  replay?: ReplayGuard;
  /** Node.js process metrics (CPU, memory, event loop...); default true. */
  processMetrics?: boolean;
  /** Action policy line counts, read at every scrape; undefined when no policy authorizer runs. */
  policy?: () => ActionPolicyStats | undefined;
  /** The submission spool's stats, read at every scrape; undefined while no spool runs. */
  spool?: () => SpoolStats | undefined;
  /** The job agent's counters and its running executions (a directory scan), read at every scrape. */
  jobs?: { stats: () => JobAgentStats; running: () => number };
  /** The machine host's figures, read at every scrape; undefined while no machines run. */
  machines?: () => MachineHostStats | undefined;
}

const JOB_COUNTERS: [keyof JobAgentStats, string, string][] = [
  ["started", "started", "Workflow executions started"],
  ["invalid", "invalid_workflows", "Workflows refused by the schema or semantic checks"],
  ["badIds", "bad_ids", "Requests with a malformed execution or workflow id"],
  ["unknownIds", "unknown_ids", "Requests for an execution the node does not have"],
  ["failures", "failures", "Executions that could not be started or stopped"],
];

type SpoolCounterField = Exclude<keyof SpoolStats, "pending" | "corruptFiles">;
const SPOOL_COUNTERS: [SpoolCounterField, string, string][] = [
  ["published", "sent", "Spooled messages published"],
  ["duplicates", "duplicates", "Reliable publishes the stream already held"],
  ["retries", "failed_tries", "Failed publish attempts (the message stays spooled for a retry)"],
  ["expired", "expired", "Spooled messages discarded for being past their TTL"],
  ["exhausted", "exhausted", "Reliable messages discarded after their maximum tries"],
  ["corrupt", "corrupt", "Unreadable spool files moved aside to corrupt/"],
];

/** Counters another component keeps, copied into the registry at every scrape. */
function copiedCounters<S>(
  registers: Registry[],
  prefix: string,
  table: [keyof S, string, string][],
  read: () => S | undefined,
): void {
  const { Counter } = promClient();
  for (const [field, name, help] of table) {
    new Counter({
      name: `${prefix}${name}`,
      help,
      registers,
      collect() {
        this.reset();
        const st = read();
        if (st) this.inc(st[field] as number);
      },
    });
  }
}

// Choria's server counters; same names, labelled by identity like go-choria's.
type CounterField = Exclude<keyof ServerStats, "dropped" | "agents">;
const COUNTERS: [CounterField, string][] = [
  ["total", "Total messages received"],
  ["validated", "Messages that passed security validation"],
  ["unvalidated", "Messages that failed decoding or security validation"],
  ["passed", "Requests whose filter matched this node"],
  ["filtered", "Requests whose filter did not match this node"],
  ["replies", "Replies sent"],
  ["ttlexpired", "Requests dropped for being outside their TTL window"],
  ["events", "Lifecycle events published"],
];

/**
 * Prometheus endpoint at /choria/metrics (and /metrics). Counters are read from
 * the nodes at scrape time, so the request path never touches prom-client, which is
 * loaded only when an endpoint is configured (promClient(): a node without
 * plugin.choria.stats_port should not carry it).
 */
export class ServerMetrics extends MetricsEndpoint {
  private readonly actionRequests: Counter<"identity" | "agent" | "action" | "status">;
  private readonly actionDuration: Histogram<"identity" | "agent" | "action">;

  constructor(opts: ServerMetricsOptions) {
    super({
      port: opts.port,
      host: opts.host,
      listenError: (err) =>
        new ServerError("stats_port", `cannot listen on stats port ${opts.port}: ${err.message}`, {
          cause: err,
        }),
    });
    const { Counter, Gauge, Histogram, collectDefaultMetrics } = promClient();
    const reg = [this.registry];
    const nodes = opts.nodes;
    for (const [field, help] of COUNTERS) {
      new Counter({
        name: `choria_server_${field}`,
        help,
        labelNames: ["identity"],
        registers: reg,
        collect() {
          this.reset();
          for (const n of nodes()) this.inc({ identity: n.identity }, n.counters[field]);
        },
      });
    }
    new Counter({
      name: "choria_server_dropped",
      help: "Messages dropped without a reply, by reason",
      labelNames: ["identity", "reason"],
      registers: reg,
      collect() {
        this.reset();
        for (const n of nodes()) {
          for (const [reason, v] of Object.entries(n.stats.dropped)) {
            if (v > 0) this.inc({ identity: n.identity, reason }, v);
          }
        }
      },
    });
    new Counter({
      name: "choria_server_agent_requests",
      help: "Requests dispatched to each agent",
      labelNames: ["identity", "agent"],
      registers: reg,
      collect() {
        this.reset();
        for (const n of nodes()) {
          for (const [agent, v] of Object.entries(n.stats.agents))
            this.inc({ identity: n.identity, agent }, v);
        }
      },
    });
    const decoder = opts.decoder;
    if (decoder) {
      new Counter({
        name: "chorus_server_decoder_verifications",
        help: "Messages fully decoded and verified (cache misses)",
        registers: reg,
        collect() {
          this.reset();
          this.inc(decoder.stats.verifications);
        },
      });
      new Counter({
        name: "chorus_server_decoder_cache_hits",
        help: "Messages answered from the verification cache",
        registers: reg,
        collect() {
          this.reset();
          this.inc(decoder.stats.cacheHits);
        },
      });
      new Gauge({
        name: "chorus_server_decoder_cache_bytes",
        help: "Estimated bytes held by the verification cache (bounded by its byte limit)",
        registers: reg,
        collect() {
          this.set(decoder.stats.cacheBytes);
        },
      });
    }
    const replay = opts.replay;
    if (replay) {
      new Gauge({
        name: "chorus_server_replay_cache_bytes",
        help: "Estimated bytes of remembered request ids (replay protection)",
        registers: reg,
        collect() {
          this.set(replay.stats.bytes);
        },
      });
      new Counter({
        name: "chorus_server_replay_cache_evictions",
        help: "Request ids forgotten before their TTL window closed because the replay cache was full",
        registers: reg,
        collect() {
          this.reset();
          this.inc(replay.stats.evicted);
        },
      });
    }
    const policy = opts.policy;
    if (policy) {
      const fields: [keyof ActionPolicyStats, string, string][] = [
        [
          "skippedLines",
          "policy_lines_skipped",
          "Action policy allow lines ignored because they cannot be evaluated",
        ],
        [
          "widenedDenyLines",
          "policy_deny_lines_widened",
          "Action policy deny lines that cannot be evaluated, kept matching every request",
        ],
        [
          "skippedGroupLines",
          "policy_group_lines_skipped",
          "Policy groups lines ignored (no members or a bad name)",
        ],
      ];
      for (const [field, name, help] of fields) {
        new Counter({
          name: `chorus_server_${name}`,
          help,
          registers: reg,
          collect() {
            this.reset();
            const st = policy();
            if (st) this.inc(st[field]);
          },
        });
      }
    }
    // Observed as actions finish (not read at scrape time) since durations need buckets.
    this.actionRequests = new Counter({
      name: "chorus_server_action_requests",
      help: "Actions run, by agent, action and reply status (timeout when no reply was sent)",
      labelNames: ["identity", "agent", "action", "status"],
      registers: reg,
    });
    this.actionDuration = new Histogram({
      name: "chorus_server_action_duration_seconds",
      help: "Time from dispatch to reply per agent action",
      labelNames: ["identity", "agent", "action"],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: reg,
    });
    const spool = opts.spool;
    if (spool) {
      // the spool keeps its own counters; copy them at scrape time like the node's
      new Gauge({
        name: "chorus_submission_spool_messages",
        help: "Messages waiting in the submission spool, by priority",
        labelNames: ["priority"],
        registers: reg,
        collect() {
          this.reset();
          spool()?.pending.forEach((n, p) => this.set({ priority: String(p) }, n));
        },
      });
      copiedCounters(reg, "chorus_submission_", SPOOL_COUNTERS, spool);
    }
    const jobs = opts.jobs;
    if (jobs) {
      new Gauge({
        name: "chorus_jobs_running",
        help: "Workflow executions running on the node",
        registers: reg,
        collect() {
          this.set(jobs.running());
        },
      });
      copiedCounters(reg, "chorus_jobs_", JOB_COUNTERS, jobs.stats);
    }
    const machines = opts.machines;
    if (machines) {
      new Gauge({
        name: "chorus_machines_running",
        help: "Autonomous agents running on the node",
        registers: reg,
        collect() {
          this.set(machines()?.running ?? 0);
        },
      });
      new Gauge({
        name: "chorus_machines_problems",
        help: "Machines in the store that could not be loaded (see choria_util#machine_states)",
        registers: reg,
        collect() {
          this.set(machines()?.problems ?? 0);
        },
      });
      new Counter({
        name: "chorus_machine_transitions",
        help: "Transitions of autonomous agents, by machine",
        labelNames: ["machine"],
        registers: reg,
        collect() {
          this.reset();
          for (const [machine, n] of machines()?.transitions ?? []) this.inc({ machine }, n);
        },
      });
      new Gauge({
        name: "chorus_machine_events_queued",
        help: "Machine events waiting for the broker",
        registers: reg,
        collect() {
          this.set(machines()?.events.queued ?? 0);
        },
      });
      const eventCounters: ["sent" | "dropped", string][] = [
        ["sent", "Machine events the broker confirmed"],
        ["dropped", "Machine events dropped because the queue was full while the broker was away"],
      ];
      for (const [field, help] of eventCounters) {
        new Counter({
          name: `chorus_machine_events_${field}`,
          help,
          registers: reg,
          collect() {
            this.reset();
            this.inc(machines()?.events[field] ?? 0);
          },
        });
      }
    }
    if (opts.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  /** Records one finished action; statuscode -1 means it timed out. */
  observeAction(identity: string, agent: string, action: string, statuscode: number, seconds: number): void {
    this.actionRequests.inc({
      identity,
      agent,
      action,
      status: statuscode < 0 ? "timeout" : String(statuscode),
    });
    this.actionDuration.observe({ identity, agent, action }, seconds);
  }

  async metrics(): Promise<string> {
    return this.registry.metrics();
  }
}
