import { hostname } from "node:os";
import { clientSettings, loadConfig } from "../core/config/index.js";
import { closeNats, connectNats, type NatsConnection } from "../core/connector/index.js";
import {
  applyOutputDefaults,
  findAction,
  InputError,
  validateInputs,
  type AgentDDL,
} from "../core/ddl/index.js";
import {
  broadcastSubject,
  directSubject,
  emptyFilter,
  encodeMessage,
  encodeRequest,
  encodeSecureRequest,
  encodeTransport,
  newRequestId,
  nowNanos,
  replyPrefix,
  replySubject,
  serviceSubject,
  StatusCode,
  type Filter,
  isCallerReplySubject,
} from "../core/protocol/index.js";
import { ChoriaSecurity } from "../core/security/index.js";
import { ReplyCollector } from "./collect.js";
import { findAgentDDL } from "./ddl.js";
import { checkMethod, discoverOffline, isNetworkMethod, type DiscoveryMethod } from "./discovery/index.js";
import { applyLimit, limitCount, planBatches } from "./pacing.js";
import { ClientError } from "./errors.js";
import {
  emptyDropCounts,
  openReply,
  parseRpcReplyBody,
  replyOpener,
  type ReplyTrust,
  type RpcReplyFields,
} from "./replies.js";
import type {
  ClientLogger,
  ClientOptions,
  DiscoverOptions,
  DropCounts,
  PingOptions,
  PingResult,
  RequestMode,
  RequestOptions,
  RpcReply,
  RpcResult,
  RpcStats,
} from "./types.js";

const DEFAULT_DISCOVERY_TIMEOUT_MS = 2000;
const DEFAULT_WINDOW_MS = 300;
const DEFAULT_TTL_S = 60;
const DEFAULT_BATCH_SLEEP_MS = 1000;

/** Resolves after `ms`, or at once when `signal` aborts. */
function abortableSleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

// Choria's discovery agent gets base64("ping") as its payload, which the message
// field base64-encodes once more on the wire.
const DISCOVERY_MESSAGE = encodeMessage(encodeMessage("ping"));

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

const quietLogger: ClientLogger = { debug() {}, info() {}, warn() {}, error() {} };

/** A filter with all five lists present: library callers may pass partial objects. */
export function completeFilter(f: Partial<Filter> | undefined): Filter {
  const e = emptyFilter();
  if (!f) return e;
  return {
    fact: f.fact ?? e.fact,
    cf_class: f.cf_class ?? e.cf_class,
    agent: f.agent ?? e.agent,
    identity: f.identity ?? e.identity,
    compound: f.compound ?? e.compound,
  };
}

/**
 * The identities an identity-only filter names, when none is a regex: such a filter
 * needs no network round trip (Choria's broadcast discovery shortcut). Undefined otherwise.
 */
export function identityOnlyTargets(filter: Filter | undefined): string[] | undefined {
  if (!filter || filter.identity.length === 0) return undefined;
  if (filter.fact.length > 0 || filter.cf_class.length > 0 || filter.agent.length > 0) return undefined;
  if (filter.compound.length > 0) return undefined;
  if (filter.identity.some((i) => i.length >= 2 && i.startsWith("/") && i.endsWith("/"))) return undefined;
  return [...new Set(filter.identity)];
}

interface BroadcastOutcome {
  requestId: string;
  senders: string[];
  /** per sender, ms from publish to arrival */
  rtt: number[];
  dropped: DropCounts;
}

/** Fleet RPC client: discovery, signed requests, reply verification and statistics. */
export class Client {
  readonly collective: string;
  readonly callerId: string;
  readonly identity: string;
  readonly discoveryTimeoutMs: number;
  readonly windowMs: number;

  private readonly opts: ClientOptions;
  private readonly log: ClientLogger;
  private nc?: NatsConnection;
  private connecting?: Promise<NatsConnection>;
  private closed = false;
  private readonly ddls = new Map<string, AgentDDL>();

  constructor(opts: ClientOptions) {
    if (!opts.collective) throw new ClientError("bad_option", "a collective is required");
    if (!opts.connection && (!opts.servers || opts.servers.length === 0)) {
      throw new ClientError("bad_option", "at least one NATS server is required");
    }
    this.opts = opts;
    this.collective = opts.collective;
    this.callerId = opts.security.callerId;
    this.identity = opts.identity ?? hostname();
    this.discoveryTimeoutMs = opts.discoveryTimeoutMs ?? DEFAULT_DISCOVERY_TIMEOUT_MS;
    this.windowMs = opts.windowMs ?? DEFAULT_WINDOW_MS;
    this.log = opts.logger ?? quietLogger;
    if (opts.connection) this.nc = opts.connection;
  }

  /** A client configured from a Choria-style client config file (Choria key names). */
  static async fromConfigFile(path: string, overrides: Partial<ClientOptions> = {}): Promise<Client> {
    const cfg = loadConfig(path);
    const s = clientSettings(cfg);
    // Choria's discovery keys: the default method and per-method sources.
    const discoveryDefaults: Record<string, Record<string, string>> = {};
    const inventorySource = cfg.get("plugin.choria.discovery.inventory.source");
    if (inventorySource) discoveryDefaults.inventory = { file: inventorySource };
    const externalCommand = cfg.get("plugin.choria.discovery.external.command");
    if (externalCommand) discoveryDefaults.external = { command: externalCommand };
    const defaultMethod = cfg.get("default_discovery_method");
    const security =
      overrides.security ??
      new ChoriaSecurity({
        seedFile: s.seedFile,
        tokenFile: s.tokenFile,
        issuers: s.issuers,
        natsJwtFile: s.natsJwtFile,
        ...(s.caFile !== undefined && { caFile: s.caFile }),
        ...(s.certFile !== undefined && { certFile: s.certFile }),
        ...(s.keyFile !== undefined && { keyFile: s.keyFile }),
      });
    return new Client({
      security,
      servers: s.middlewareHosts,
      collective: s.mainCollective,
      identity: s.identity,
      discoveryTimeoutMs: s.discoveryTimeoutMs,
      windowMs: s.windowedTimeoutMs,
      libdir: s.libdir,
      ...(defaultMethod && { discoveryMethod: defaultMethod }),
      discoveryDefaults,
      ...overrides,
    });
  }

  /** Opens the NATS connection (done lazily by every call that needs it). */
  async connect(): Promise<NatsConnection> {
    if (this.closed) throw new ClientError("closed", "the client is closed");
    if (this.nc) return this.nc;
    this.connecting ??= (async () => {
      const sec = this.opts.security;
      const natsJwt = this.opts.natsJwt ?? sec.natsJwt;
      const caFile = this.opts.caFile ?? sec.caFile;
      const nc = await connectNats({
        servers: this.opts.servers,
        name: `chorus client ${this.callerId}`,
        // Replies come back under our reply prefix, which is all the broker ACL lets us read.
        inboxPrefix: replyPrefix(this.collective, this.callerId),
        seedHex: sec.seedHex,
        ...(natsJwt !== undefined && { natsJwt }),
        ...(caFile !== undefined && { caFile }),
        ...(sec.certFile !== undefined && { certFile: sec.certFile }),
        ...(sec.keyFile !== undefined && { keyFile: sec.keyFile }),
        // Without a logger of ours, the connector's own (warnings to stderr) applies.
        ...(this.opts.logger && {
          logger: {
            info: (m: string) => this.log.info(m),
            warn: (m: string) => this.log.warn(m),
            error: (m: string) => this.log.error(m),
          },
        }),
      }).catch((err: unknown) => {
        throw new ClientError(
          "connect_failed",
          `cannot connect to ${this.opts.servers.join(", ")}: ${(err as Error).message}`,
          { cause: err },
        );
      });
      this.nc = nc;
      return nc;
    })();
    try {
      return await this.connecting;
    } finally {
      this.connecting = undefined;
    }
  }

  /** Makes a DDL known for its agent, ahead of libdir and built-in DDLs. */
  registerDDL(ddl: AgentDDL): void {
    this.ddls.set(ddl.metadata.name, ddl);
  }

  /** The DDL used for `agent`: registered, then libdir, then built-in. */
  ddl(agent: string): AgentDDL {
    let d = this.ddls.get(agent);
    if (!d) {
      d = findAgentDDL(agent, this.opts.libdir ?? []);
      this.ddls.set(agent, d);
    }
    return d;
  }

  private trust(verify: boolean | undefined): ReplyTrust | undefined {
    return (verify ?? this.opts.verifyReplySignatures) ? this.opts.security : undefined;
  }

  /** Signs one request; the returned transport bytes can be published to any number of subjects. */
  private signedRequest(
    agent: string,
    message: string,
    filter: Filter,
    requestId: string,
    ttlS: number = this.opts.ttlS ?? DEFAULT_TTL_S,
    replyTo?: string,
  ): Uint8Array {
    const sec = this.opts.security;
    const request = encodeRequest({
      message,
      id: requestId,
      sender: this.identity,
      caller: this.callerId,
      collective: this.collective,
      agent,
      ttl: ttlS,
      time: nowNanos(),
      filter,
    });
    const secure = encodeSecureRequest(request, sec.sign(request), sec.token);
    return encodeTransport(secure, {
      reply: replyTo ?? replySubject(this.collective, this.callerId, requestId),
      sender: this.identity,
    });
  }

  /**
   * Broadcast discovery: a signed `ping` to the discovery agent carrying the filter,
   * collecting the senders of valid replies.
   */
  private async broadcastPing(
    filter: Filter,
    timeoutMs: number,
    windowMs: number,
    verify: boolean | undefined,
    signal: AbortSignal | undefined,
  ): Promise<BroadcastOutcome> {
    const nc = await this.connect();
    const requestId = newRequestId();
    const trust = this.trust(verify);
    const seen = new Set<string>();
    const senders: string[] = [];
    const rtt: number[] = [];
    const dropped = emptyDropCounts();
    let sentAt = 0;
    const collector = new ReplyCollector(
      nc,
      replySubject(this.collective, this.callerId, requestId),
      (data, opened) => {
        const o = opened ?? openReply(data, trust);
        if (!o.ok) {
          dropped[o.reason]++;
          this.log.debug(`discovery reply dropped (${o.reason}): ${o.detail}`);
          return;
        }
        if (o.requestId !== requestId) {
          dropped.request++;
          return;
        }
        if (seen.has(o.sender)) {
          dropped.duplicate++;
          return;
        }
        seen.add(o.sender);
        senders.push(o.sender);
        rtt.push(performance.now() - sentAt);
        collector.touch();
      },
      replyOpener(trust),
      (err) => {
        dropped.malformed++;
        this.log.warn(`discovery reply could not be handled: ${errorText(err)}`);
      },
    );
    try {
      const bytes = this.signedRequest("discovery", DISCOVERY_MESSAGE, filter, requestId);
      sentAt = performance.now();
      nc.publish(broadcastSubject(this.collective, "discovery"), bytes);
      collector.start(timeoutMs, windowMs);
      const release = collector.stopOn(signal);
      await collector.done;
      release();
    } finally {
      collector.finish();
    }
    return { requestId, senders, rtt, dropped };
  }

  /**
   * The nodes a filter selects with the chosen method. Identity-only filters without
   * regexes are answered locally for broadcast; file, inventory and external methods
   * never touch the broker. Returns the targets and the time spent (0 when local).
   */
  private async findTargets(
    filter: Filter,
    o: {
      method?: string | undefined;
      options?: Record<string, string> | undefined;
      timeoutMs: number;
      windowMs: number;
      verify?: boolean | undefined;
      signal?: AbortSignal | undefined;
    },
  ): Promise<{ targets: string[]; ms: number }> {
    const name = o.method ?? this.opts.discoveryMethod;
    const method = name === undefined ? undefined : checkMethod(name);
    const t0 = performance.now();
    if (!isNetworkMethod(method)) {
      const targets = await discoverOffline({
        method: method as DiscoveryMethod,
        filter,
        collective: this.collective,
        timeoutMs: o.timeoutMs,
        // Configured sources (inventory file, external command) unless --do overrides them.
        options: { ...this.opts.discoveryDefaults?.[method as string], ...o.options },
      });
      // A list of nodes (flatfile, earlier results) is "nodes given", not discovery: 0 ms keeps
      // exit code 4 for "nobody answered" as with --nodes before.
      const listed = method === "flatfile" || method === "file" || method === "results";
      return { targets, ms: listed ? 0 : performance.now() - t0 };
    }
    if (o.options && Object.keys(o.options).length > 0) {
      throw new ClientError(
        "bad_option",
        `broadcast discovery takes no --do options (got ${Object.keys(o.options).join(", ")})`,
      );
    }
    // Named groups live in inventory files; on the wire "group:x" would match no node.
    const group = filter.identity.find((i) => i.startsWith("group:"));
    if (group !== undefined) {
      throw new ClientError("bad_option", `-I ${group}: groups need inventory discovery (--dm inventory)`);
    }
    const local = identityOnlyTargets(filter);
    if (local) return { targets: local, ms: 0 };
    const r = await this.broadcastPing(filter, o.timeoutMs, o.windowMs, o.verify, o.signal);
    return { targets: r.senders, ms: performance.now() - t0 };
  }

  /**
   * Finds the nodes matching a filter: broadcast by default (identity-only filters
   * without regexes are answered locally), or a file, inventory or external method.
   */
  async discover(opts: DiscoverOptions = {}): Promise<string[]> {
    const r = await this.findTargets(completeFilter(opts.filter), {
      method: opts.method,
      options: opts.options,
      timeoutMs: opts.timeoutMs ?? this.discoveryTimeoutMs,
      windowMs: opts.windowed ? (opts.windowMs ?? this.windowMs) : 0,
      verify: opts.verifyReplySignatures,
      signal: opts.signal,
    });
    return r.targets;
  }

  /** Pings matching nodes through the discovery agent; each reply with its round-trip time. */
  async ping(opts: PingOptions = {}): Promise<PingResult> {
    const window = opts.windowed ? (opts.windowMs ?? this.windowMs) : 0;
    const r = await this.broadcastPing(
      completeFilter(opts.filter),
      opts.timeoutMs ?? this.discoveryTimeoutMs,
      window,
      opts.verifyReplySignatures,
      opts.signal,
    );
    return {
      requestid: r.requestId,
      replies: r.senders.map((sender, i) => ({ sender, ms: r.rtt[i] as number })),
      dropped: r.dropped,
    };
  }

  /**
   * Validates inputs against the DDL (throwing before anything is sent), discovers
   * unless `nodes` are given, applies the limit, then publishes one signed request
   * (to each node in direct mode, in batches when asked; once with the filter in
   * broadcast mode; once to the service queue in service mode) and gathers replies.
   * Nodes that did not answer get the request again for each retry.
   */
  async request(
    agent: string,
    action: string,
    data: Record<string, unknown> = {},
    opts: RequestOptions = {},
  ): Promise<RpcResult> {
    const ddl = opts.ddl ?? this.ddl(agent);
    const body = { ...data };
    // Fills input defaults into `body` as a side effect, as Choria clients do.
    const issues = validateInputs(ddl, action, body);
    if (issues.length > 0) throw new InputError(agent, action, issues);
    const actionDDL = findAction(ddl, action);
    const hasOutputDefaults =
      actionDDL !== undefined && Object.values(actionDDL.output).some((o) => o.default !== undefined);

    const mode = opts.mode ?? "direct";
    if (mode !== "direct" && mode !== "broadcast" && mode !== "service") {
      throw new ClientError("bad_option", `unknown request mode "${String(mode)}"`);
    }
    const paced = opts.batchSize !== undefined || opts.canary !== undefined;
    if (paced && mode !== "direct") {
      throw new ClientError(
        "bad_option",
        "--batch and --canary need direct mode (not --broadcast or --service)",
      );
    }
    // A broadcast reaches every matching node, so a subset cannot be picked.
    if (opts.limit !== undefined && mode !== "direct") {
      throw new ClientError("bad_option", "--limit needs direct mode (not --broadcast or --service)");
    }
    // Nothing waits for replies with --reply-to, so nothing could judge a canary or a retry.
    if (opts.replyTo !== undefined && (paced || opts.retries)) {
      throw new ClientError("bad_option", "--reply-to cannot be combined with --batch, --canary or --retry");
    }
    if (opts.retries !== undefined && (!Number.isInteger(opts.retries) || opts.retries < 0)) {
      throw new ClientError("bad_option", `--retry: ${opts.retries} is not a whole number`);
    }
    const ttlS = opts.ttlS ?? this.opts.ttlS ?? DEFAULT_TTL_S;
    // The wire field is whole seconds.
    if (!Number.isInteger(ttlS) || ttlS < 1) {
      throw new ClientError("bad_option", `--ttl: ${ttlS} is not a whole number of seconds (at least 1)`);
    }
    // Pacing options are checked now: discovery is already traffic.
    if (opts.limit !== undefined) limitCount(opts.limit, 0);
    planBatches([], opts.batchSize, opts.canary);
    if (opts.replyTo !== undefined && !/^[^\s*>]+$/.test(opts.replyTo)) {
      throw new ClientError(
        "bad_option",
        `--reply-to: "${opts.replyTo}" is not a NATS subject without wildcards`,
      );
    }
    // Nodes answer only inside the caller's private inbox (anything else could be a
    // re-wrapped request answering a third party), so say so before sending.
    if (opts.replyTo !== undefined && !isCallerReplySubject(opts.replyTo, this.callerId)) {
      throw new ClientError(
        "bad_option",
        `--reply-to: "${opts.replyTo}" is not under this caller's inbox ${replyPrefix(this.collective, this.callerId)}.; nodes refuse any other reply subject`,
      );
    }
    const filter = mode === "service" ? emptyFilter() : completeFilter(opts.filter);
    const discoveryTimeoutMs = opts.discoveryTimeoutMs ?? this.discoveryTimeoutMs;
    const startTime = new Date();
    const dropped = emptyDropCounts();

    let targets: string[];
    let discoverMs = 0;
    if (mode === "service") {
      // A service agent is one logical endpoint: no discovery, the first reply wins.
      targets = [];
    } else if (opts.nodes) {
      targets = [...new Set(opts.nodes)];
    } else {
      const found = await this.findTargets(filter, {
        method: opts.discoveryMethod,
        options: opts.discoveryOptions,
        timeoutMs: discoveryTimeoutMs,
        windowMs: opts.discoveryWindowed ? this.windowMs : 0,
        verify: opts.verifyReplySignatures,
        signal: opts.signal,
      });
      targets = found.targets;
      discoverMs = found.ms;
    }
    if (opts.limit !== undefined) targets = applyLimit(targets, opts.limit, opts.limitMethod, opts.limitSeed);
    const batches = mode === "direct" ? planBatches(targets, opts.batchSize, opts.canary) : [targets];

    const requestId = newRequestId();
    const stats: RpcStats = {
      requestid: requestId,
      discovered: targets.length,
      responses: 0,
      ok: 0,
      failed: 0,
      noResponses: [],
      unexpected: [],
      discoverMs,
      publishMs: 0,
      requestMs: 0,
      startTime,
      dropped,
    };
    const replies: RpcReply[] = [];
    const result: RpcResult = { agent, action, replies, stats };
    // Interrupted during discovery: report what was found without sending anything.
    if ((targets.length === 0 && mode !== "service") || opts.signal?.aborted) return result;

    const nc = await this.connect();
    const message = encodeMessage(JSON.stringify({ agent, action, data: body }));

    if (opts.replyTo !== undefined) {
      // Async RPC: replies go to someone else's subject; publish, flush, done.
      const t0 = performance.now();
      opts.onPublish?.(targets);
      const bytes = this.signedRequest(agent, message, filter, requestId, ttlS, opts.replyTo);
      this.publishTo(nc, mode, agent, targets, bytes);
      await nc.flush();
      stats.publishMs = performance.now() - t0;
      return result;
    }

    const trust = this.trust(opts.verifyReplySignatures);
    const seen = new Set<string>();
    const expectedAll = new Set(targets);
    const onReply = opts.onReply;
    const timeoutMs = opts.timeoutMs ?? discoveryTimeoutMs + ddl.metadata.timeout * 1000;
    opts.onPublish?.(targets);
    const tStart = performance.now();
    let tEnd = tStart;

    /** Publishes one signed request to `nodes` and collects until they all answered or time is up. */
    const round = async (id: string, nodes: readonly string[], how: RequestMode = mode): Promise<void> => {
      const expected = new Set(nodes);
      let answered = 0;
      // The reply subscription exists before anything is published, so no early reply is lost.
      const collector = new ReplyCollector(
        nc,
        replySubject(this.collective, this.callerId, id),
        (bytes, opened) => {
          const o = opened ?? openReply(bytes, trust);
          if (!o.ok) {
            dropped[o.reason]++;
            this.log.debug(`reply dropped (${o.reason}): ${o.detail}`);
            return;
          }
          if (o.requestId !== id) {
            dropped.request++;
            return;
          }
          const sender = o.sender;
          if (seen.has(sender)) {
            dropped.duplicate++;
            return;
          }
          seen.add(sender);
          const r = this.rpcReply(sender, o.message, new Date(o.timeNs / 1e6), (data) => {
            if (hasOutputDefaults) applyOutputDefaults(ddl, action, data);
          });
          replies.push(r);
          stats.responses++;
          if (r.statuscode === 0) stats.ok++;
          else stats.failed++;
          if (onReply) {
            try {
              onReply(r);
            } catch (err) {
              this.log.warn(`onReply callback failed for ${sender}: ${(err as Error).message}`);
            }
          }
          if (how === "service") collector.finish();
          else if (expected.has(sender)) {
            if (++answered === expected.size) collector.finish();
          } else if (!expectedAll.has(sender)) {
            stats.unexpected.push(sender);
          }
        },
        replyOpener(trust),
        (err) => {
          dropped.malformed++;
          this.log.warn(`reply could not be handled: ${errorText(err)}`);
        },
      );
      const t0 = performance.now();
      try {
        // Signed once per round: every node gets the same bytes, as go-choria's cached transports do.
        const bytes = this.signedRequest(agent, message, filter, id, ttlS);
        this.publishTo(nc, how, agent, nodes, bytes);
        collector.start(Math.max(0, timeoutMs - (performance.now() - t0)));
        await nc.flush();
        stats.publishMs += performance.now() - t0;
        const release = collector.stopOn(opts.signal);
        await collector.done;
        release();
      } finally {
        collector.finish();
      }
      tEnd = collector.ended;
    };

    let sent = 0;
    for (let b = 0; b < batches.length; b++) {
      const batch = batches[b] as string[];
      if (b > 0) {
        const sleep = opts.batchSleepMs ?? DEFAULT_BATCH_SLEEP_MS;
        if (sleep > 0) await abortableSleep(sleep, opts.signal);
      }
      if (opts.signal?.aborted) break;
      opts.onBatch?.(b, batch);
      // Batches after the first get their own request id: a node that missed the
      // first batch's window must not be able to answer a later one twice.
      await round(b === 0 ? requestId : newRequestId(), batch);
      sent += batch.length;
      if (b === 0 && opts.canary !== undefined && batches.length > 1) {
        const bad = batch.some((n) => !seen.has(n)) || replies.some((r) => r.statuscode !== 0);
        if (bad) {
          stats.canaryStopped = true;
          break;
        }
      }
    }
    const unsent = batches.flat().slice(sent);
    if (unsent.length > 0) stats.skipped = unsent;

    for (let attempt = 1; attempt <= (opts.retries ?? 0) && mode !== "service"; attempt++) {
      if (opts.signal?.aborted) break;
      const missing = batches
        .flat()
        .slice(0, sent)
        .filter((n) => !seen.has(n));
      if (missing.length === 0) break;
      stats.retries = attempt;
      if (mode === "broadcast") {
        // A broadcast retry would reach every node again; address the silent ones directly.
        await round(newRequestId(), missing, "direct");
      } else {
        await round(newRequestId(), missing);
      }
    }

    stats.requestMs = tEnd - tStart;
    const sentSet = new Set(batches.flat().slice(0, sent));
    for (const id of sentSet) if (!seen.has(id)) stats.noResponses.push(id);
    stats.noResponses.sort();
    stats.unexpected.sort();
    return result;
  }

  /**
   * One accepted reply's body as an RpcReply. A body that cannot be used (nested too
   * deep, or anything else that throws while it is read) becomes a failed reply
   * from its sender instead of an exception in the subscription callback, which would
   * lose the other replies; a warning names the sender.
   */
  private rpcReply(
    sender: string,
    message: Buffer,
    time: Date,
    fill: (data: Record<string, unknown>) => void,
  ): RpcReply {
    let f: RpcReplyFields;
    try {
      f = parseRpcReplyBody(message);
      if (f.tooDeep) this.log.warn(`reply from ${sender} rejected: ${f.statusmsg}`);
      else fill(f.data);
    } catch (err) {
      const statusmsg = `reply could not be processed: ${errorText(err)}`;
      this.log.warn(`reply from ${sender} rejected: ${statusmsg}`);
      f = { statuscode: StatusCode.UnknownError, statusmsg, data: {} };
    }
    return { sender, statuscode: f.statuscode, statusmsg: f.statusmsg, data: f.data, time };
  }

  private publishTo(
    nc: NatsConnection,
    mode: RequestMode,
    agent: string,
    nodes: readonly string[],
    bytes: Uint8Array,
  ): void {
    if (mode === "direct") {
      for (const id of nodes) nc.publish(directSubject(this.collective, id), bytes);
    } else if (mode === "service") {
      nc.publish(serviceSubject(this.collective, agent), bytes);
    } else {
      nc.publish(broadcastSubject(this.collective, agent), bytes);
    }
  }

  /** Drains and closes the connection this client opened. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const nc = this.nc ?? (await this.connecting?.catch(() => undefined));
    if (nc && !this.opts.connection) await closeNats(nc);
  }
}
