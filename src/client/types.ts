import type { FederationOptions } from "./federation.js";
import type { NatsConnection } from "../core/connector/index.js";
import type { RequestSigner } from "./signer.js";
import type { AgentDDL } from "../core/ddl/index.js";
import type { Filter } from "../core/protocol/index.js";
import type { ChoriaSecurity, FileSecurity } from "../core/security/index.js";
import type { Logger } from "../core/util/index.js";

/** The client's logger: core/util's Logger (pino's fits). */
export type ClientLogger = Logger;

export interface ClientOptions {
  /** protocol v2 credentials (ed25519 seed + JWT) */
  security?: ChoriaSecurity | undefined;
  /** protocol v1 credentials (x509 certificate + RSA key); its certificate is also the broker mTLS identity */
  x509?: FileSecurity | undefined;
  /**
   * Protocols every request is sent in (default: 2 with `security`, else 1). Both: a mixed
   * fleet answers one request; each copy carries the same id and caller, so one inbox collects all.
   */
  protocols?: readonly (1 | 2)[];
  /** NATS URLs */
  servers: string[];
  /** CA bundle for the broker; defaults to the security provider's CA */
  caFile?: string;
  /** NATS user JWT; defaults to the security provider's companion JWT */
  natsJwt?: string;
  /** main collective: requests, discovery and the reply inbox live here */
  collective: string;
  /** `sender` on requests; Choria uses the client's configured identity */
  identity?: string;
  /** broadcast discovery timeout (default 2000) */
  discoveryTimeoutMs?: number;
  /** quiet period that ends windowed discovery (default 300) */
  windowMs?: number;
  /** request TTL in seconds (default 60, as Choria) */
  ttlS?: number;
  /** directories searched for `<agent>.json` DDLs before the built-in ones */
  libdir?: string[];
  /** verify reply signatures on every request unless a call says otherwise */
  verifyReplySignatures?: boolean;
  logger?: ClientLogger;
  /** discovery method when a call names none (config `default_discovery_method`; default broadcast) */
  discoveryMethod?: string;
  /** per-method default options, e.g. { inventory: { file } } from `plugin.choria.discovery.inventory.source` */
  discoveryDefaults?: Record<string, Record<string, string>>;
  /** use this connection instead of opening one (tests, embedding); it is not closed by close() */
  connection?: NatsConnection;
  /**
   * Signs requests remotely (an AAA signer, see remoteSigner) instead of with the
   * security provider's own key and JWT; requests to aaa_signer itself stay local.
   */
  requestSigner?: RequestSigner;
  /**
   * Called once per login token when it expires within 5 minutes (fromConfigFile's
   * remote signer); default: a warning through `logger`.
   */
  onTokenExpiring?: (expiresAt: Date) => void;
  /**
   * Publish through federation brokers (Choria's plugin.choria.federation.collectives):
   * every request goes to `choria.federation.<name>.federation` for each name, direct
   * requests 200 targets per message; `servers` is then the federation network.
   */
  federation?: FederationOptions;
}

export interface DiscoverOptions {
  filter?: Partial<Filter>;
  /** total time to wait (default: the client's discovery timeout) */
  timeoutMs?: number;
  /** end 300 ms (windowMs) after the last reply instead of waiting the full timeout */
  windowed?: boolean;
  /** quiet period for windowed mode (default: the client's windowMs) */
  windowMs?: number;
  verifyReplySignatures?: boolean;
  /** stop waiting early; what arrived so far is returned */
  signal?: AbortSignal;
  /** broadcast (default), flatfile, inventory, external, results; see discovery/ */
  method?: string;
  /** method options (`--do key=value`) */
  options?: Record<string, string>;
}

/** direct: one copy per node; broadcast: one message with the filter; service: one reply from a service agent */
export type RequestMode = "direct" | "broadcast" | "service";

export interface RpcReply {
  sender: string;
  statuscode: number;
  statusmsg: string;
  data: Record<string, unknown>;
  /** the reply's own timestamp */
  time: Date;
}

/** Why replies were thrown away; none of them reach `replies`. */
export interface DropCounts {
  /** failed to decode at some layer */
  malformed: number;
  /** sha256 of the reply did not match the secure reply's hash */
  hash: number;
  /** unsigned, bad signature, untrusted sender token, or token identity != sender */
  signature: number;
  /** reply for another request id */
  request: number;
  /** a second reply from the same sender */
  duplicate: number;
}

export interface RpcStats {
  requestid: string;
  discovered: number;
  responses: number;
  ok: number;
  failed: number;
  /** expected senders that did not reply, sorted */
  noResponses: string[];
  /** senders that replied but were not expected, sorted */
  unexpected: string[];
  /** 0 when no network discovery was done (nodes given, identity-only filter) */
  discoverMs: number;
  publishMs: number;
  /** from the start of publishing until the last reply or the timeout */
  requestMs: number;
  startTime: Date;
  dropped: DropCounts;
  /** nodes never sent the request: a canary batch failed, or ^C during discovery or between batches */
  skipped?: string[];
  /** true when a failing canary batch stopped the request */
  canaryStopped?: boolean;
  /** true when `signal` aborted the request (^C), whatever stage it was at */
  interrupted?: boolean;
  /** how many retry rounds were sent to nodes that had not answered */
  retries?: number;
}

export interface RpcResult {
  agent: string;
  action: string;
  replies: RpcReply[];
  stats: RpcStats;
}

export interface RequestOptions {
  /** default direct */
  mode?: RequestMode;
  filter?: Partial<Filter>;
  /** skip discovery and address these identities */
  nodes?: string[];
  /** total wait for replies; default discovery timeout + the agent's DDL timeout */
  timeoutMs?: number;
  discoveryTimeoutMs?: number;
  /** windowed broadcast discovery */
  discoveryWindowed?: boolean;
  verifyReplySignatures?: boolean;
  /** use this DDL instead of looking one up */
  ddl?: AgentDDL;
  /** stop early (e.g. on ^C): after discovery nothing is sent; while collecting, the replies so far are returned */
  signal?: AbortSignal;
  /** called once discovery is done, just before publishing, with the nodes expected to reply */
  onPublish?: (targets: readonly string[]) => void;
  /** called for each accepted reply as it arrives */
  onReply?: (reply: RpcReply) => void;
  /** discovery method and its options (see DiscoverOptions) */
  discoveryMethod?: string;
  discoveryOptions?: Record<string, string>;
  /** address at most N (or "N%") of the discovered nodes */
  limit?: number | string;
  limitMethod?: "first" | "random";
  /** seed for random limits: the same seed and fleet select the same nodes */
  limitSeed?: string | number;
  /** direct mode: publish to this many nodes at a time, waiting for their replies */
  batchSize?: number;
  /** pause between batches (default 1000) */
  batchSleepMs?: number;
  /** send to this many nodes first and stop unless they all answer OK */
  canary?: number;
  /** publish with this reply subject and return at once (replies go elsewhere) */
  replyTo?: string;
  /** request TTL in seconds for this call */
  ttlS?: number;
  /** re-send to nodes that did not answer, up to N more times */
  retries?: number;
  /** called before each batch is published */
  onBatch?: (index: number, nodes: readonly string[]) => void;
}

export interface PingReply {
  sender: string;
  /** round trip from publishing the ping to receiving this reply */
  ms: number;
}

export interface PingResult {
  replies: PingReply[];
  requestid: string;
  dropped: DropCounts;
}

export type PingOptions = Pick<
  DiscoverOptions,
  "filter" | "timeoutMs" | "windowed" | "windowMs" | "verifyReplySignatures" | "signal"
>;
