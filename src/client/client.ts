import { existsSync } from "node:fs";
import { hostname } from "node:os";
import { clientSettings, loadConfig } from "../core/config/index.js";
import { closeNats, connectNats, flushNats, type NatsConnection } from "../core/connector/index.js";
import {
  applyOutputDefaults,
  findAction,
  InputError,
  validateInputs,
  type AgentDDL,
} from "../core/ddl/index.js";
import {
  asyncReplySubject,
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
  decodeRequestV1,
  decodeSecureRequestV1,
  encodeRequestV1,
  encodeSecureRequestV1,
  encodeTransportV1,
  newRequestIdV1,
  type TransportHeaders,
} from "../core/protocol/index.js";
import {
  ChoriaSecurity,
  FileSecurity,
  SecurityError,
  delegatedCallerId,
  securityFromSettings,
} from "../core/security/index.js";
import { findAgentDDL } from "./ddl.js";
import {
  checkMethod,
  DISCOVER_NAMES,
  discoverOffline,
  isNetworkMethod,
  REQUEST_NAMES,
  type DiscoveryMethod,
  type DiscoveryNames,
} from "./discovery/index.js";
import {
  ASYNC_RECORD_PROTOCOL,
  checkAsyncOptions,
  publishAsyncRecord,
  type AsyncRequestOptions,
  type AsyncRequestResult,
} from "./async.js";
import { applyLimit, planBatches } from "./pacing.js";
import { ClientError, badOption, naming, opt } from "./errors.js";
import { checkReplyTo, checkRequestOptions, DEFAULT_TTL_S } from "./options.js";
import { emptyDropCounts, parseRpcReplyBody, type ReplyTrust, type RpcReplyFields } from "./replies.js";
import { ReplyRound } from "./round.js";
import { federationCollectives, publishFederated } from "./federation.js";
import { checkSecureRequest, remoteSigner, REMOTE_SIGNER_AGENT } from "./signer.js";
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

/** A request whose inputs and options passed their checks: what each of its rounds sends, and how. */
interface PreparedRequest {
  agent: string;
  action: string;
  opts: RequestOptions;
  mode: RequestMode;
  ttlS: number;
  filter: Filter;
  discoveryTimeoutMs: number;
  /** the wait for replies of each round */
  timeoutMs: number;
  /** the mcorpc body, encoded once for every round */
  message: string;
  /** fills the action's DDL output defaults into a reply's data, when it declares any */
  fillOutputs: ((data: Record<string, unknown>) => void) | undefined;
}

/** What the rounds (batches, retries) of one request gather into its result. */
interface Gathering {
  nc: NatsConnection;
  req: PreparedRequest;
  result: RpcResult;
  trust: ReplyTrust | undefined;
  /** senders accepted in any round: each counts once */
  seen: Set<string>;
  /** every node the request addresses: a reply from anyone else is unexpected */
  targets: Set<string>;
  /** performance.now() at which the last round ended */
  ended: number;
}

function newStats(requestid: string, discovered: number, discoverMs: number, startTime: Date): RpcStats {
  return {
    requestid,
    discovered,
    responses: 0,
    ok: 0,
    failed: 0,
    noResponses: [],
    unexpected: [],
    discoverMs,
    publishMs: 0,
    requestMs: 0,
    startTime,
    dropped: emptyDropCounts(),
  };
}

/** Signature checks asked of a client without v2 trust: nothing can pass them. */
const NO_V2_TRUST: ReplyTrust = {
  verifyServerToken: () => {
    throw new SecurityError("untrusted", "this client has no v2 issuers to check reply signatures with");
  },
  verifySignature: () => false,
};

/** Fleet RPC client: discovery, signed requests, reply verification and statistics. */
export class Client {
  readonly collective: string;
  readonly callerId: string;
  readonly identity: string;
  /** the protocols each request goes out in */
  readonly protocols: readonly (1 | 2)[];
  readonly discoveryTimeoutMs: number;
  readonly windowMs: number;

  private readonly opts: ClientOptions;
  private readonly log: ClientLogger;
  private nc?: NatsConnection;
  private connecting?: Promise<NatsConnection> | undefined;
  private closed = false;
  private readonly ddls = new Map<string, AgentDDL>();

  constructor(opts: ClientOptions) {
    if (!opts.collective) throw new ClientError("bad_option", "a collective is required");
    if (!opts.connection && (!opts.servers || opts.servers.length === 0)) {
      throw new ClientError("bad_option", "at least one NATS server is required");
    }
    this.opts = opts;
    this.collective = opts.collective;
    this.protocols = [...(opts.protocols ?? [opts.security ? 2 : 1])];
    if (this.protocols.includes(2) && !opts.security)
      throw new ClientError("bad_option", "protocol v2 needs choria security (a seed and a JWT)");
    if (this.protocols.includes(1) && !opts.x509)
      throw new ClientError(
        "bad_option",
        "protocol v1 needs x509 security (a certificate, its key and the CA)",
      );
    if (this.protocols.length === 0) throw new ClientError("bad_option", "no protocol to speak");
    const v1Signed = this.protocols.includes(1) && opts.requestSigner !== undefined;
    if (v1Signed && (this.protocols.length > 1 || !opts.security))
      throw new ClientError(
        "bad_option",
        "a protocol v1 client with a remote signer speaks v1 only and needs the login token and seed (plugin.choria.security.request_signer.token_file and seed_file)",
      );
    // v1 through the AAA signer: the request carries the caller id the signer writes (a v1
    // broker has no per-user subjects, so the inbox can follow it)
    this.callerId = (
      v1Signed
        ? delegatedCallerId((opts.security as ChoriaSecurity).callerId)
        : this.protocols.includes(2)
          ? opts.security?.callerId
          : opts.x509?.callerId
    ) as string;
    if (this.protocols.length > 1 && opts.x509?.callerId !== this.callerId)
      throw new ClientError(
        "bad_option",
        `a client speaking v1 and v2 needs one caller id for both (replies share one inbox): the token says ${this.callerId}, the certificate ${String(opts.x509?.callerId)}`,
      );
    if (this.protocols.includes(1) && opts.federation)
      throw new ClientError("bad_option", "protocol v1 requests cannot go through federation");
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
    // Choria's request_signer keys: an AAA service signs for us, with the login token.
    const rs = s.requestSigner;
    // Before the first login the token is missing: say that, not "cannot read token file".
    if (rs && !overrides.security && !existsSync(rs.tokenFile))
      throw new ClientError("no_token", `no login token at ${rs.tokenFile}`);
    const v1 = s.protocols.includes(1);
    const v2 = s.protocols.includes(2);
    const security =
      overrides.security ??
      (v2
        ? securityFromSettings(s)
        : rs
          ? // a v1 client with the AAA signer proves itself with its login token and key
            new ChoriaSecurity({ seedFile: rs.seedFile, tokenFile: rs.tokenFile, issuers: s.issuers })
          : undefined);
    const x509 =
      overrides.x509 ??
      (v1 && s.x509
        ? // a client acts as its certificate's name; `identity` is only the sender
          new FileSecurity(s.x509)
        : undefined);
    const log = overrides.logger;
    const requestSigner =
      rs &&
      remoteSigner({
        ...rs,
        caFile: s.caFile,
        onTokenExpiring:
          overrides.onTokenExpiring ?? ((at) => log?.warn(`login token expires at ${at.toISOString()}`)),
      });
    // Choria's federation keys: requests go through federation brokers, and the client
    // connects to the federation network instead of a collective's.
    const fedCollectives = federationCollectives(cfg.list("plugin.choria.federation.collectives", []));
    const fedHosts = cfg.list("plugin.choria.federation_middleware_hosts", []);
    return new Client({
      ...(security && { security }),
      ...(x509 && { x509 }),
      protocols: s.protocols,
      servers: fedCollectives.length > 0 && fedHosts.length > 0 ? fedHosts : s.middlewareHosts,
      ...(fedCollectives.length > 0 && { federation: { collectives: fedCollectives } }),
      collective: s.mainCollective,
      identity: s.identity,
      discoveryTimeoutMs: s.discoveryTimeoutMs,
      windowMs: s.windowedTimeoutMs,
      libdir: s.libdir,
      ...(defaultMethod && { discoveryMethod: defaultMethod }),
      discoveryDefaults,
      ...(requestSigner && { requestSigner }),
      ...overrides,
    });
  }

  /** Opens the NATS connection (done lazily by every call that needs it). */
  async connect(): Promise<NatsConnection> {
    if (this.closed) throw new ClientError("closed", "the client is closed");
    if (this.nc) return this.nc;
    this.connecting ??= (async () => {
      const sec = this.opts.security;
      const x509 = this.opts.x509;
      const natsJwt = this.opts.natsJwt ?? sec?.natsJwt;
      const caFile = this.opts.caFile ?? sec?.caFile ?? x509?.caFile;
      // the x509 certificate is the mTLS identity when there is no other TLS pair
      const certFile = sec?.certFile ?? x509?.certFile;
      const keyFile = sec?.certFile !== undefined ? sec.keyFile : x509?.keyFile;
      const nc = await connectNats({
        servers: this.opts.servers,
        name: `chorus client ${this.callerId}`,
        // Replies come back under our reply prefix, which is all the broker ACL lets us read.
        inboxPrefix: replyPrefix(this.collective, this.callerId),
        ...(sec && { seedHex: sec.seedHex }),
        ...(natsJwt !== undefined && { natsJwt }),
        ...(caFile !== undefined && { caFile }),
        ...(certFile !== undefined && { certFile }),
        ...(keyFile !== undefined && { keyFile }),
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
    // v1 replies are never signed: asking for signatures then refuses them (see openReply)
    return (verify ?? this.opts.verifyReplySignatures) ? (this.opts.security ?? NO_V2_TRUST) : undefined;
  }

  /**
   * Signs one request, locally or through the remote signer (one signing call per
   * request); the returned transport bytes can be published to any number of subjects.
   */
  /** A request id every protocol spoken accepts: v1 wants 32 hex characters, v2 a KSUID. */
  private newId(): string {
    return this.protocols.includes(1) ? newRequestIdV1() : newRequestId();
  }

  /**
   * Signs one request per protocol spoken (usually one), locally or through the remote
   * signer; the returned transports can be published to any number of subjects.
   */
  private async signedRequest(
    agent: string,
    message: string,
    filter: Filter,
    requestId: string,
    ttlS: number = this.opts.ttlS ?? DEFAULT_TTL_S,
    replyTo?: string,
  ): Promise<Uint8Array[]> {
    const headers = {
      reply: replyTo ?? replySubject(this.collective, this.callerId, requestId),
      sender: this.identity,
    };
    const out: Uint8Array[] = [];
    for (const p of this.protocols) {
      out.push(
        p === 1
          ? await this.signedV1(agent, message, filter, requestId, ttlS, headers)
          : await this.signedV2(agent, message, filter, requestId, ttlS, headers),
      );
    }
    return out;
  }

  private async signedV1(
    agent: string,
    message: string,
    filter: Filter,
    requestId: string,
    ttlS: number,
    headers: TransportHeaders,
  ): Promise<Uint8Array> {
    const x509 = this.opts.x509 as FileSecurity;
    // v1 carries the payload as text; `message` here is already v2's base64 of it
    const request = encodeRequestV1({
      message: Buffer.from(message, "base64"),
      requestid: requestId,
      senderid: this.identity,
      callerid: this.callerId,
      collective: this.collective,
      agent,
      ttl: ttlS,
      time: Math.floor(Date.now() / 1000),
      filter,
    });
    const remote = this.opts.requestSigner;
    if (!remote || agent === REMOTE_SIGNER_AGENT)
      return encodeTransportV1(encodeSecureRequestV1(request, x509.sign(request), x509.certPem), headers);
    // the AAA signer signs with its privileged certificate, as the caller
    const signed = await remote.sign(request, { rpc: (a, act, d, o) => this.request(a, act, d, o) });
    let theirs: string;
    try {
      theirs = decodeRequestV1(decodeSecureRequestV1(signed).requestBytes).request.id;
    } catch (err) {
      throw new ClientError(
        "signer_failed",
        `the ${remote.kind} signer returned an unusable v1 secure request: ${(err as Error).message}`,
        { cause: err },
      );
    }
    if (theirs !== requestId)
      throw new ClientError(
        "signer_failed",
        `the ${remote.kind} signer signed request ${theirs}, not ${requestId}`,
      );
    return encodeTransportV1(signed, headers);
  }

  private async signedV2(
    agent: string,
    message: string,
    filter: Filter,
    requestId: string,
    ttlS: number,
    headers: TransportHeaders,
  ): Promise<Uint8Array> {
    const sec = this.opts.security as ChoriaSecurity;
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
    const remote = this.opts.requestSigner;
    const secure =
      remote && agent !== REMOTE_SIGNER_AGENT
        ? checkSecureRequest(
            await remote.sign(request, { rpc: (a, act, d, o) => this.request(a, act, d, o) }),
            request,
            `the ${remote.kind} signer`,
          )
        : encodeSecureRequest(request, sec.sign(request), sec.token);
    return encodeTransport(secure, headers);
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
    const requestId = this.newId();
    const senders: string[] = [];
    const rtt: number[] = [];
    const dropped = emptyDropCounts();
    let sentAt = 0;
    const bytes = await this.signedRequest("discovery", DISCOVERY_MESSAGE, filter, requestId);
    const round = new ReplyRound(nc, replySubject(this.collective, this.callerId, requestId), {
      requestId,
      trust: this.trust(verify),
      seen: new Set(),
      dropped,
      log: this.log,
      what: "discovery reply",
      accept: (o) => {
        senders.push(o.sender);
        rtt.push(performance.now() - sentAt);
      },
    });
    const publish = () => {
      sentAt = performance.now();
      this.publishTo(nc, "broadcast", "discovery", [], bytes, requestId);
    };
    await round.run(publish, timeoutMs, { quietMs: windowMs, signal });
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
      /** what the caller's options call the method and its options */
      names: DiscoveryNames;
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
        // Configured sources (inventory file, external command) unless the call's options override them.
        options: { ...this.opts.discoveryDefaults?.[method as string], ...o.options },
        names: o.names,
      });
      // A list of nodes (flatfile, earlier results) is "nodes given", not discovery: 0 ms
      // reports "no discovery was done" (the CLI's exit code 4 when nobody answered).
      const listed = method === "flatfile" || method === "file" || method === "results";
      return { targets, ms: listed ? 0 : performance.now() - t0 };
    }
    const { names } = o;
    if (o.options && Object.keys(o.options).length > 0) {
      throw badOption(
        names.options,
        naming`broadcast discovery takes no ${opt(names.options, "discovery")} options (got ${Object.keys(o.options).join(", ")})`,
      );
    }
    // Named groups live in inventory files; on the wire "group:x" would match no node.
    const group = filter.identity.find((i) => i.startsWith("group:"));
    if (group !== undefined) {
      throw badOption(
        "filter",
        naming`${opt("filter.identity")} ${group}: groups need inventory discovery (${opt(names.method)} inventory)`,
      );
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
      names: DISCOVER_NAMES,
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
   * Validates inputs against the DDL and the options (throwing before anything is
   * sent), discovers unless `nodes` are given, applies the limit, then publishes one
   * signed request (to each node in direct mode, in batches when asked; once with the
   * filter in broadcast mode; once to the service queue in service mode) and gathers
   * replies. Nodes that did not answer get the request again for each retry.
   */
  async request(
    agent: string,
    action: string,
    data: Record<string, unknown> = {},
    opts: RequestOptions = {},
  ): Promise<RpcResult> {
    const req = this.prepare(agent, action, data, opts);
    const startTime = new Date();
    const { targets, discoverMs } = await this.requestTargets(req);
    const batches = req.mode === "direct" ? planBatches(targets, opts.batchSize, opts.canary) : [targets];
    const stats = newStats(this.newId(), targets.length, discoverMs, startTime);
    const result: RpcResult = { agent, action, replies: [], stats };
    // Interrupted during discovery: report what was found, as not sent, without sending anything.
    if (opts.signal?.aborted) {
      stats.interrupted = true;
      if (targets.length > 0) stats.skipped = [...targets];
      return result;
    }
    if (targets.length === 0 && req.mode !== "service") return result;
    const nc = await this.connect();
    if (opts.replyTo !== undefined) {
      await this.publishOnly(nc, req, targets, stats, opts.replyTo);
      return result;
    }
    const g: Gathering = {
      nc,
      req,
      result,
      trust: this.trust(opts.verifyReplySignatures),
      seen: new Set(),
      targets: new Set(targets),
      ended: 0,
    };
    opts.onPublish?.(targets);
    const started = (g.ended = performance.now());
    const sent = await this.sendBatches(g, batches);
    await this.retrySilent(g, sent);
    stats.requestMs = g.ended - started;
    for (const id of new Set(sent)) if (!g.seen.has(id)) stats.noResponses.push(id);
    stats.noResponses.sort();
    stats.unexpected.sort();
    if (opts.signal?.aborted) stats.interrupted = true;
    return result;
  }

  /**
   * An asynchronous request: checks and discovers as request() does, stores a record of
   * the request (who, what, which nodes) in the replies stream and waits for its
   * acknowledgement, then publishes the signed request with the asynchronous reply
   * subject, where a receiver collects the replies, and returns without waiting for
   * any. Nothing is sent when discovery finds no node, when `signal` aborts during
   * discovery, or when the record is not stored (ClientError no_replies_stream,
   * record_denied, record_failed).
   */
  async requestAsync(
    agent: string,
    action: string,
    data: Record<string, unknown> = {},
    opts: AsyncRequestOptions = {},
  ): Promise<AsyncRequestResult> {
    checkAsyncOptions(opts);
    const req = this.prepare(agent, action, data, opts);
    const { targets } = await this.requestTargets(req);
    const requestId = this.newId();
    const replyTo = asyncReplySubject(this.collective, this.callerId, requestId);
    const result: AsyncRequestResult = {
      requestId,
      replyTo,
      nodes: targets,
      discovered: targets.length,
      publishedMs: 0,
      sent: false,
    };
    if (opts.signal?.aborted || targets.length === 0) return result;
    const nc = await this.connect();
    // Signed before the record is stored: a refused signing leaves no record of a request never sent.
    const bytes = await this.signedRequest(agent, req.message, req.filter, requestId, req.ttlS, replyTo);
    await publishAsyncRecord(
      nc,
      {
        protocol: ASYNC_RECORD_PROTOCOL,
        request_id: requestId,
        agent,
        action,
        caller: this.callerId,
        collective: this.collective,
        reply_to: replyTo,
        nodes: targets,
        discovered: targets.length,
        time: new Date().toISOString(),
        ttl: req.ttlS,
      },
      opts.recordTimeoutMs,
    );
    opts.onPublish?.(targets);
    this.publishTo(nc, req.mode, agent, targets, bytes, requestId);
    await flushNats(nc);
    result.publishedMs = Date.now();
    result.sent = true;
    return result;
  }

  /** Checks a request's inputs (filling their defaults into a copy of `data`) and options. */
  private prepare(
    agent: string,
    action: string,
    data: Record<string, unknown>,
    opts: RequestOptions,
  ): PreparedRequest {
    const ddl = opts.ddl ?? this.ddl(agent);
    const body = { ...data };
    // Fills input defaults into `body` as a side effect, as Choria clients do.
    const issues = validateInputs(ddl, action, body);
    if (issues.length > 0) throw new InputError(agent, action, issues);
    const { mode, ttlS } = checkRequestOptions(opts, this.opts.ttlS ?? DEFAULT_TTL_S);
    checkReplyTo(opts.replyTo, this.collective, this.callerId);
    const output = findAction(ddl, action)?.output ?? {};
    const fillOutputs = Object.values(output).some((o) => o.default !== undefined)
      ? (d: Record<string, unknown>) => applyOutputDefaults(ddl, action, d)
      : undefined;
    const discoveryTimeoutMs = opts.discoveryTimeoutMs ?? this.discoveryTimeoutMs;
    return {
      agent,
      action,
      opts,
      mode,
      ttlS,
      filter: mode === "service" ? emptyFilter() : completeFilter(opts.filter),
      discoveryTimeoutMs,
      timeoutMs: opts.timeoutMs ?? discoveryTimeoutMs + ddl.metadata.timeout * 1000,
      message: encodeMessage(JSON.stringify({ agent, action, data: body })),
      fillOutputs,
    };
  }

  /** The nodes a request addresses (none for a service agent, the given nodes, or discovery), limited. */
  private async requestTargets(req: PreparedRequest): Promise<{ targets: string[]; discoverMs: number }> {
    const o = req.opts;
    let found: { targets: string[]; ms: number };
    if (req.mode === "service") {
      // A service agent is one logical endpoint: no discovery, the first reply wins.
      found = { targets: [], ms: 0 };
    } else if (o.nodes) {
      found = { targets: [...new Set(o.nodes)], ms: 0 };
    } else {
      found = await this.findTargets(req.filter, {
        method: o.discoveryMethod,
        options: o.discoveryOptions,
        timeoutMs: req.discoveryTimeoutMs,
        windowMs: o.discoveryWindowed ? this.windowMs : 0,
        verify: o.verifyReplySignatures,
        signal: o.signal,
        names: REQUEST_NAMES,
      });
    }
    const targets =
      o.limit === undefined ? found.targets : applyLimit(found.targets, o.limit, o.limitMethod, o.limitSeed);
    return { targets, discoverMs: found.ms };
  }

  /** Async RPC (`replyTo`): replies go to someone else's subject; publish, flush, done. */
  private async publishOnly(
    nc: NatsConnection,
    req: PreparedRequest,
    targets: string[],
    stats: RpcStats,
    replyTo: string,
  ): Promise<void> {
    const t0 = performance.now();
    req.opts.onPublish?.(targets);
    const bytes = await this.signedRequest(
      req.agent,
      req.message,
      req.filter,
      stats.requestid,
      req.ttlS,
      replyTo,
    );
    this.publishTo(nc, req.mode, req.agent, targets, bytes, stats.requestid);
    await flushNats(nc);
    stats.publishMs = performance.now() - t0;
  }

  /**
   * One round per batch, after a pause between batches; a canary batch that did not
   * all answer OK stops the rest. Returns the nodes the request went to, in order.
   */
  private async sendBatches(g: Gathering, batches: string[][]): Promise<string[]> {
    const o = g.req.opts;
    const stats = g.result.stats;
    let sent = 0;
    for (let b = 0; b < batches.length; b++) {
      const batch = batches[b] as string[];
      if (b > 0) {
        const sleep = o.batchSleepMs ?? DEFAULT_BATCH_SLEEP_MS;
        if (sleep > 0) await abortableSleep(sleep, o.signal);
      }
      if (o.signal?.aborted) break;
      o.onBatch?.(b, batch);
      // Batches after the first get their own request id: a node that missed the
      // first batch's window must not be able to answer a later one twice.
      await this.round(g, b === 0 ? stats.requestid : this.newId(), batch, g.req.mode);
      sent += batch.length;
      if (b === 0 && o.canary !== undefined && batches.length > 1) {
        const bad = batch.some((n) => !g.seen.has(n)) || g.result.replies.some((r) => r.statuscode !== 0);
        if (bad) {
          stats.canaryStopped = true;
          break;
        }
      }
    }
    const all = batches.flat();
    if (sent < all.length) stats.skipped = all.slice(sent);
    return all.slice(0, sent);
  }

  /** Up to `retries` more rounds to the nodes that have not answered; each gets a new request id. */
  private async retrySilent(g: Gathering, sent: readonly string[]): Promise<void> {
    const o = g.req.opts;
    if (g.req.mode === "service") return;
    for (let attempt = 1; attempt <= (o.retries ?? 0); attempt++) {
      if (o.signal?.aborted) break;
      const missing = sent.filter((n) => !g.seen.has(n));
      if (missing.length === 0) break;
      g.result.stats.retries = attempt;
      // Direct even for a broadcast request: a broadcast retry would reach every node again.
      await this.round(g, this.newId(), missing, "direct");
    }
  }

  /** Publishes one signed request to `nodes` and collects until they all answered or time is up. */
  private async round(g: Gathering, id: string, nodes: readonly string[], how: RequestMode): Promise<void> {
    const { nc, req, result } = g;
    const { stats, replies } = result;
    const onReply = req.opts.onReply;
    const expected = new Set(nodes);
    let answered = 0;
    // Signed once per round, before the round starts: every node gets the same bytes, as
    // go-choria's cached transports do, and a refused signing sends nothing.
    const bytes = await this.signedRequest(req.agent, req.message, req.filter, id, req.ttlS);
    const round: ReplyRound = new ReplyRound(nc, replySubject(this.collective, this.callerId, id), {
      requestId: id,
      trust: g.trust,
      seen: g.seen,
      dropped: stats.dropped,
      log: this.log,
      what: "reply",
      accept: (o) => {
        const r = this.rpcReply(o.sender, o.message, new Date(o.timeNs / 1e6), req.fillOutputs);
        replies.push(r);
        stats.responses++;
        if (r.statuscode === 0) stats.ok++;
        else stats.failed++;
        if (onReply) this.notify(onReply, r);
        if (how === "service") round.finish();
        else if (expected.has(r.sender)) {
          if (++answered === expected.size) round.finish();
        } else if (!g.targets.has(r.sender)) {
          stats.unexpected.push(r.sender);
        }
      },
    });
    const publish = () => this.publishTo(nc, how, req.agent, nodes, bytes, id);
    stats.publishMs += await round.run(publish, req.timeoutMs, {
      signal: req.opts.signal,
      flush: () => nc.flush(),
    });
    g.ended = round.ended;
  }

  /** Hands a reply to the caller's callback; a callback that throws costs a warning, not the request. */
  private notify(onReply: (reply: RpcReply) => void, r: RpcReply): void {
    try {
      onReply(r);
    } catch (err) {
      this.log.warn(`onReply callback failed for ${r.sender}: ${errorText(err)}`);
    }
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
    fill: ((data: Record<string, unknown>) => void) | undefined,
  ): RpcReply {
    let f: RpcReplyFields;
    try {
      f = parseRpcReplyBody(message);
      if (f.tooDeep) this.log.warn(`reply from ${sender} rejected: ${f.statusmsg}`);
      else if (fill) fill(f.data);
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
    transports: readonly Uint8Array[],
    requestId: string,
  ): void {
    for (const bytes of transports) this.publishOne(nc, mode, agent, nodes, bytes, requestId);
  }

  private publishOne(
    nc: NatsConnection,
    mode: RequestMode,
    agent: string,
    nodes: readonly string[],
    bytes: Uint8Array,
    requestId: string,
  ): void {
    const federation = this.opts.federation;
    if (federation && federation.collectives.length > 0) {
      const subject =
        mode === "service"
          ? serviceSubject(this.collective, agent)
          : broadcastSubject(this.collective, agent);
      publishFederated({
        nc,
        federation,
        identity: this.identity,
        requestId,
        bytes,
        ...(mode === "direct" ? { direct: { collective: this.collective, nodes } } : { subject }),
      });
      return;
    }
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
