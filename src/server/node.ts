import {
  applyOutputDefaults,
  findAction,
  formatIssues,
  validateInputs,
  type AgentDDL,
} from "../core/ddl/index.js";
import { matchAgents, matchFilter, matchIdentity } from "../core/filter/index.js";
import {
  StatusCode,
  encodeMessage,
  encodeReply,
  encodeSecureReply,
  encodeSecureReplyV1,
  encodeReplyV1,
  encodeTransportV1,
  encodeTransport,
  nowNanos,
  type RpcReplyBody,
  type TransportHeaders,
  copyFederationData,
} from "../core/protocol/index.js";
import { auditTime, type Auditor } from "./audit.js";
import { defaultDataRegistry, type DataRegistry } from "./data/index.js";
import { ClassesSource } from "./facts.js";
import type { DecodeResult, DecodedRequest } from "./decoder.js";
import type { MachineSource, MachineStateInfo } from "./machines.js";
import type { AgentRegistry } from "./registry.js";
import { ReplayGuard } from "./replay.js";
import { NodeStats, type DropReason, type ServerStats } from "./stats.js";
import {
  ActionReply,
  allowAll,
  type ActionRequest,
  type AgentDefinition,
  type Authorizer,
  type AuthzDecision,
  type HostInfo,
  type NodeCredential,
  type NodeReply,
} from "./types.js";

/** Where a node reports what it dropped and what failed; the Server rate-limits these into its log. */
export interface NodeEvents {
  drop?(reason: DropReason, detail: string, node: NodeRuntime): void;
  handlerError?(err: unknown, agent: string, action: string, node: NodeRuntime): void;
  /** A data plugin failed while a filter asked it (the filter then does not match). */
  dataError?(err: unknown, source: string, node: NodeRuntime): void;
  /** An action ran (or timed out: statuscode -1); seconds from dispatch to its reply. */
  action?(agent: string, action: string, statuscode: number, seconds: number, node: NodeRuntime): void;
}

export interface NodeRuntimeOptions {
  identity: string;
  collectives: string[];
  /** Defaults to the first collective. */
  mainCollective?: string;
  facts?: Record<string, unknown>;
  classes?: string[];
  /** Read the classes from this file whenever needed, as go-choria does (ignored when `classes` is given). */
  classesFile?: string;
  /** Data plugins for compound filters and rpcutil#get_data; share one per server (default: the built-ins). */
  dataRegistry?: DataRegistry;
  /** The agents this node runs; may be shared by many nodes. */
  registry: AgentRegistry;
  /** The node's server JWT (sent with replies) and its reply signer. */
  credential: NodeCredential;
  /** Sign replies as Choria does by default (plugin.security.choria.sign_replies). */
  signReplies?: boolean;
  /** Default: allow every verified caller. */
  authorizer?: Authorizer;
  /** Process-wide facts for rpcutil and choria_util. */
  host?: HostInfo;
  /** rpcaudit: gets every request that reaches authorization, allowed or denied, and refused replays and reply subjects. */
  auditor?: Auditor;
  events?: NodeEvents;
  /**
   * Remembers request ids until their TTL window closes so each runs once; share one
   * between the nodes of a process (default: a guard of the node's own).
   */
  replayGuard?: ReplayGuard;
  /** Requests with a longer TTL (seconds) are refused (default MAX_REQUEST_TTL). */
  maxTtl?: number;
  /** The node's autonomous agents (choria_util, scout, the scout data plugin); none by default. */
  machines?: MachineSource;
}

/**
 * The longest TTL a node accepts by default, in seconds: 5 h, the most go-choria's
 * client ever sends (batched requests with a cached transport). Choria has no cap, so a
 * captured request with ttl=1e9 runs forever after.
 */
export const MAX_REQUEST_TTL = 5 * 3600;

const NOT_AUTHORIZED = "You are not authorized to call this agent or action";

/** Host facts of a node with no connection (tests, a job manager); `over` fills in what is known. */
export function defaultHost(over: Partial<HostInfo> = {}): HostInfo {
  return {
    version: "0.0.0",
    startTime: Date.now(),
    securityProvider: "choria",
    middlewareServers: [],
    connectorTls: false,
    connectedServer: () => "",
    connectionStats: () => ({}),
    configItem: () => undefined,
    ...over,
  };
}

/**
 * One node identity: its facts, classes, collectives, agents and counters. It owns
 * no connection: `handle()` takes a decoded request and returns the signed reply
 * bytes and subject to publish (or nothing), so one process can host many nodes
 * over a few shared connections.
 */
export class NodeRuntime {
  readonly identity: string;
  readonly collectives: readonly string[];
  readonly mainCollective: string;
  readonly registry: AgentRegistry;
  readonly host: HostInfo;
  facts: Record<string, unknown>;
  signReplies: boolean;
  authorizer: Authorizer;
  auditor: Auditor | undefined;
  events: NodeEvents;
  readonly counters = new NodeStats();
  readonly maxTtl: number;
  private credential: NodeCredential;
  private readonly replay: ReplayGuard;
  private readonly replaySlot: number;
  #classes: string[];
  #classesSource: ClassesSource | undefined;
  readonly dataRegistry: DataRegistry;
  /** The node's autonomous agents, when it hosts any (a Server sets this while running). */
  machines: MachineSource | undefined;
  /** What compound filters call for `fstat("/etc/hosts").size` and the like. */
  readonly data = (source: string, query: string): Record<string, unknown> => {
    try {
      return this.dataRegistry.run(source, query, this);
    } catch (err) {
      // the filter treats a failed plugin as no match; say why, as go-choria logs it
      this.events.dataError?.(err, source, this);
      throw err;
    }
  };

  constructor(opts: NodeRuntimeOptions) {
    if (opts.collectives.length === 0) throw new Error("a node needs at least one collective");
    this.identity = opts.identity;
    this.collectives = [...opts.collectives];
    this.mainCollective = opts.mainCollective ?? (opts.collectives[0] as string);
    this.registry = opts.registry;
    this.facts = opts.facts ?? {};
    this.#classes = opts.classes ?? [];
    this.#classesSource =
      opts.classes === undefined && opts.classesFile ? new ClassesSource(opts.classesFile) : undefined;
    this.dataRegistry = opts.dataRegistry ?? defaultDataRegistry;
    this.credential = opts.credential;
    this.signReplies = opts.signReplies ?? true;
    this.authorizer = opts.authorizer ?? allowAll;
    this.auditor = opts.auditor;
    this.host = opts.host ?? defaultHost();
    this.events = opts.events ?? {};
    this.maxTtl = opts.maxTtl ?? MAX_REQUEST_TTL;
    this.replay = opts.replayGuard ?? new ReplayGuard({ maxBytes: 4 * 1024 * 1024 });
    this.replaySlot = this.replay.slot();
    this.machines = opts.machines;
  }

  /** The running machines (empty without a machine host), for data plugins and inventory. */
  machineStates(): MachineStateInfo[] {
    return this.machines?.states() ?? [];
  }

  /** The node's classes: the configured list, or the classes file as it is now. */
  get classes(): string[] {
    return this.#classesSource ? this.#classesSource.read().classes : this.#classes;
  }

  /** Replaces the classes with a fixed list (no longer read from a file). */
  set classes(v: string[]) {
    this.#classes = v;
    this.#classesSource = undefined;
  }

  /** Why the classes are unknown (the classes file cannot be read), or undefined. */
  classesProblem(): string | undefined {
    return this.#classesSource?.read().error;
  }

  /** A copy of the counters. */
  get stats(): ServerStats {
    return this.counters.snapshot();
  }

  /** Replace the JWT and signer (e.g. after a token renewal). */
  setCredential(c: NodeCredential): void {
    this.credential = c;
  }

  /**
   * Runs the server pipeline for one received message: counters, filter, TTL,
   * agent and action lookup, input validation, authorization, dispatch with the
   * DDL timeout, then the signed reply. Never throws; undefined means no reply.
   */
  async handle(decoded: DecodeResult, _subject?: string): Promise<NodeReply | undefined> {
    const c = this.counters;
    c.total++;
    c.lastMessage = Date.now();
    if (!decoded.ok) {
      c.unvalidated++;
      this.drop(decoded.reason, decoded.detail);
      return undefined;
    }
    c.validated++;
    const req = decoded.request;
    if (!this.collectives.includes(req.collective)) {
      this.drop("wrong_collective", `request for collective ${req.collective}`);
      return undefined;
    }
    if (decoded.replyError !== undefined) {
      this.refuse(decoded, "reply_not_caller", decoded.replyError);
      return undefined;
    }
    let matched: boolean;
    // go-choria reads an unreadable classes file as no classes, so a class filter never
    // matches; here that is also counted and logged, since the node cannot judge it. Only
    // when the identity and agent filters (checked first, as go-choria) let it through,
    // so requests meant for other nodes stay quiet.
    const f = req.filter;
    const classesProblem =
      f?.cf_class?.length &&
      !(f.identity?.length && !matchIdentity(f.identity, this.identity)) &&
      !(f.agent?.length && !matchAgents(f.agent, this.agents))
        ? this.classesProblem()
        : undefined;
    if (classesProblem !== undefined) {
      c.filtered++;
      this.drop("classes_unknown", `request ${req.id} has a class filter: ${classesProblem}`);
      return undefined;
    }
    try {
      matched = matchFilter(req.filter, this);
    } catch (err) {
      this.drop("unsupported_filter", (err as Error).message);
      return undefined;
    }
    if (!matched) {
      c.filtered++;
      return undefined;
    }
    c.passed++;
    if (!(req.ttl <= this.maxTtl)) {
      this.refuse(
        decoded,
        "ttl_too_long",
        `request ${req.id} has ttl ${req.ttl}s, above the ${this.maxTtl}s cap`,
      );
      return undefined;
    }
    const now = nowNanos();
    const ttlNs = req.ttl * 1e9;
    if (!(now - ttlNs < req.time && req.time < now + ttlNs)) {
      c.ttlexpired++;
      return undefined;
    }
    // After the signature (a forger cannot burn ids) and the window (old ids are gone).
    const verdict = this.replay.check(req.id, this.replaySlot, (req.time + ttlNs) / 1e6);
    if (verdict !== "fresh") {
      this.refuse(
        decoded,
        verdict === "replayed" ? "replayed" : "replay_forgotten",
        verdict === "replayed"
          ? `request ${req.id} from ${req.caller} was already received: replay refused`
          : `request ${req.id} from ${req.caller} is older than the replay cache remembers: refused`,
      );
      return undefined;
    }
    const agent = this.registry.get(req.agent);
    if (!agent) {
      this.drop("unknown_agent", `request ${req.id} for unknown agent ${req.agent}`);
      return undefined;
    }
    c.dispatched(req.agent);
    try {
      const payload = agent.raw ? await this.runRaw(agent, decoded) : await this.runAction(agent, decoded);
      if (payload === undefined) return undefined;
      const reply = this.buildReply(decoded, payload);
      c.replies++;
      return reply;
    } catch (err) {
      this.drop("reply_error", `request ${req.id}: ${(err as Error).message}`);
      return undefined;
    }
  }

  /** Names of the agents this node runs, sorted (what agent filters match against). */
  get agents(): string[] {
    return this.registry.names();
  }

  private drop(reason: DropReason, detail: string): void {
    this.counters.drop(reason);
    this.events.drop?.(reason, detail, this);
  }

  /** A drop that is also an attempt worth an audit line (replays, foreign reply subjects, huge TTLs). */
  private refuse(d: DecodedRequest, reason: DropReason, detail: string): void {
    this.drop(reason, detail);
    this.audit(d, d.body?.action ?? "", d.body?.data ?? {}, "deny", detail);
  }

  private audit(
    d: DecodedRequest,
    action: string,
    data: Record<string, unknown>,
    decision: "allow" | "deny",
    reason: string,
  ): void {
    this.auditor?.record({
      timestamp: auditTime(Date.now()),
      request_id: d.request.id,
      request_time: auditTime(Math.floor(d.request.time / 1e6)),
      caller: d.request.caller,
      sender: d.request.sender,
      agent: d.request.agent,
      action,
      data,
      decision,
      reason,
    });
  }

  private async runRaw(agent: AgentDefinition, d: DecodedRequest): Promise<Uint8Array | undefined> {
    const req = new HandlerRequest(this, d, "", {});
    const first = (agent.raw as NonNullable<AgentDefinition["raw"]>)(d.message, req);
    // A synchronous answer (discovery's "pong") cannot overrun: no timer per node per
    // request, which an emulator answering 50 000 pings would otherwise arm and clear.
    if (typeof (first as { then?: unknown } | undefined)?.then !== "function")
      return typeof first === "string" ? Buffer.from(first, "utf8") : (first as Uint8Array | undefined);
    return this.withTimeout(agent.ddl, d, req, async () => {
      const out = await first;
      return typeof out === "string" ? Buffer.from(out, "utf8") : out;
    });
  }

  private async runAction(agent: AgentDefinition, d: DecodedRequest): Promise<Uint8Array | undefined> {
    const ddl = agent.ddl;
    const body = d.body;
    if (!body) return rpcReply("", StatusCode.InvalidData, `Could not parse request: ${d.bodyError}`);
    const action = body.action;
    const handler = Object.hasOwn(agent.actions, action) ? agent.actions[action] : undefined;
    if (!handler || !findAction(ddl, action)) {
      return rpcReply(
        action,
        StatusCode.UnknownAction,
        `Unknown action ${action} for agent ${d.request.agent}`,
      );
    }
    // The decoded body is shared by every node: validate a copy, since defaults are filled in place.
    const data: Record<string, unknown> = { ...body.data };
    // Ruby MCollective clients add this bookkeeping key to every request.
    delete data.process_results;
    const issues = validateInputs(ddl, action, data);
    if (issues.length > 0) {
      const missing = issues.some((i) => i.reason === "is required");
      return rpcReply(
        action,
        missing ? StatusCode.MissingData : StatusCode.InvalidData,
        formatIssues(issues),
      );
    }
    let decision: AuthzDecision = { allowed: true, reason: "agent is not subject to authorization" };
    if (agent.authorize) {
      decision = { allowed: false, reason: "authorizer failed" };
      try {
        decision = toDecision(
          await this.authorizer.authorize({
            agent: d.request.agent,
            action,
            caller: d.request.caller,
            callerClaims: d.callerClaims,
            collective: d.request.collective,
            data,
            node: this,
            sender: d.request.sender,
            ttl: d.request.ttl,
            time: d.request.time,
            filter: d.request.filter,
          }),
        );
      } catch (err) {
        this.events.handlerError?.(err, d.request.agent, action, this);
      }
    }
    this.audit(d, action, data, decision.allowed ? "allow" : "deny", decision.reason);
    if (!decision.allowed) return rpcReply(action, StatusCode.Aborted, NOT_AUTHORIZED);
    const req = new HandlerRequest(this, d, action, data);
    const onAction = this.events.action;
    const t0 = onAction ? performance.now() : 0;
    let status = -1;
    const out = await this.withTimeout(ddl, d, req, async () => {
      const reply = new ActionReply();
      try {
        const out = await handler(req, reply);
        if (out && typeof out === "object") Object.assign(reply.data, out);
      } catch (err) {
        this.events.handlerError?.(err, d.request.agent, action, this);
        reply.statuscode = StatusCode.UnknownError;
        reply.statusmsg = err instanceof Error ? err.message : String(err);
      }
      applyOutputDefaults(ddl, action, reply.data);
      status = reply.statuscode;
      return rpcReply(action, reply.statuscode, reply.statusmsg, reply.data);
    });
    onAction?.(
      d.request.agent,
      action,
      out === undefined ? -1 : status,
      (performance.now() - t0) / 1000,
      this,
    );
    return out;
  }

  /** Runs `fn` under the DDL timeout; past it the caller gets no reply, as in Choria. */
  private async withTimeout(
    ddl: AgentDDL,
    d: DecodedRequest,
    req: HandlerRequest,
    fn: () => Promise<Uint8Array | undefined>,
  ): Promise<Uint8Array | undefined> {
    // Choria's schema says at least 2 s; a broken DDL still gets a sane bound.
    const ms = ddl.metadata.timeout > 0 ? ddl.metadata.timeout * 1000 : 10_000;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), ms);
    });
    try {
      const work = fn();
      // A handler that fails after its timeout has nobody left to tell; keep that quiet.
      work.catch(() => undefined);
      const out = await Promise.race([work, timedOut]);
      if (out === "timeout") {
        req.expire();
        this.drop(
          "timeout",
          `${d.request.agent} request ${d.request.id} ran past its ${ddl.metadata.timeout}s timeout`,
        );
        return undefined;
      }
      return out;
    } finally {
      clearTimeout(timer);
    }
  }

  private buildReply(d: DecodedRequest, payload: Uint8Array): NodeReply {
    const r = d.request;
    const headers: TransportHeaders = { sender: this.identity };
    // Federation brokers route the reply back by these (and the hops it took), so they travel with it.
    if (d.transport.headers.federation) copyFederationData(d.transport, { headers });
    if (d.version === 1) {
      // v1 answers in kind: the payload as a raw string, hashed, never signed (go-choria's v1)
      const v1 = encodeReplyV1({
        message: payload,
        requestid: r.id,
        senderid: this.identity,
        agent: r.agent,
        time: Math.floor(Date.now() / 1000),
      });
      return { subject: d.replyTo, data: encodeTransportV1(encodeSecureReplyV1(v1), headers) };
    }
    const replyBytes = encodeReply({
      message: encodeMessage(payload),
      request: r.id,
      sender: this.identity,
      agent: r.agent,
      time: nowNanos(),
    });
    const signature = this.signReplies ? this.credential.sign(replyBytes) : undefined;
    const secure = encodeSecureReply(replyBytes, signature, this.credential.token);
    return { subject: d.replyTo, data: encodeTransport(secure, headers) };
  }
}

function toDecision(v: boolean | AuthzDecision): AuthzDecision {
  if (typeof v !== "boolean") return v;
  return v
    ? { allowed: true, reason: "allowed by the authorizer" }
    : { allowed: false, reason: "denied by the authorizer" };
}

function rpcReply(
  action: string,
  statuscode: StatusCode,
  statusmsg: string,
  data: Record<string, unknown> = {},
): Uint8Array {
  const body: RpcReplyBody = { action, statuscode, statusmsg, data };
  return Buffer.from(JSON.stringify(body), "utf8");
}

/**
 * The request a handler sees. The AbortController behind `signal` is made only when
 * a handler reads it: most never do, and an emulator dispatches to thousands of nodes.
 */
class HandlerRequest implements ActionRequest {
  readonly agent: string;
  readonly caller: string;
  readonly callerClaims: DecodedRequest["callerClaims"];
  readonly requestId: string;
  readonly sender: string;
  readonly collective: string;
  readonly ttl: number;
  readonly time: number;
  private ac: AbortController | undefined;
  private expired = false;

  constructor(
    readonly node: NodeRuntime,
    d: DecodedRequest,
    readonly action: string,
    readonly data: Record<string, unknown>,
  ) {
    const r = d.request;
    this.agent = r.agent;
    this.caller = r.caller;
    this.callerClaims = d.callerClaims;
    this.requestId = r.id;
    this.sender = r.sender;
    this.collective = r.collective;
    this.ttl = r.ttl;
    this.time = r.time;
  }

  get signal(): AbortSignal {
    if (!this.ac) {
      this.ac = new AbortController();
      if (this.expired) this.ac.abort(new Error("action timed out"));
    }
    return this.ac.signal;
  }

  expire(): void {
    this.expired = true;
    this.ac?.abort(new Error("action timed out"));
  }
}
