/**
 * The web console's HTTP API: request and response bodies of every endpoint. The front
 * end (web/ui/, type-only imports: it has no Node types) codes against these; the server (server.ts) implements them.
 * Every error is `ApiError` with a 4xx/5xx status. Every /api route except
 * POST /api/login needs the session cookie (`chorus_session`, HttpOnly, Secure,
 * SameSite=Strict); without one: 401 `{error: "not logged in"}`, expired: 401
 * `{error: "session expired: log in again"}`.
 */

export interface ApiError {
  error: string;
}

// ---- session ---------------------------------------------------------------

/** POST /api/login */
export interface LoginRequest {
  username: string;
  password: string;
}
/** POST /api/login -> 200 (sets the cookie); 401 `{error: "wrong username or password"}` */
export interface SessionInfo {
  username: string;
  /** ISO time the session expires */
  expiresAt: string;
  /** "aaa": requests are signed by the AAA signer as this user; "local": with the console's own identity */
  mode: "aaa" | "local";
  /** the collective requests go to */
  collective: string;
}
export type LoginResponse = SessionInfo;
/** POST /api/logout -> 200 */
export interface LogoutResponse {
  ok: true;
}
/** GET /api/session -> 200 SessionInfo or 401 */
export type SessionResponse = SessionInfo;

// ---- fleet -----------------------------------------------------------------

export type NodeStatus = "alive" | "stale" | "gone";

export interface FleetNode {
  identity: string;
  facts: Record<string, unknown>;
  classes: string[];
  agents: string[];
  /** ISO time of the last registration or lifecycle event */
  lastSeen: string;
  /** seconds since lastSeen */
  ageS: number;
  status: NodeStatus;
}

/**
 * GET /api/fleet — query: repeated `identity`, `fact`, `class`, `agent`, `compound`
 * (the CLI's -I -F -C -A -S filter language; `identity=a&identity=b`), `offset`
 * (default 0), `limit` (default 100, max 1000), `status` (alive|stale|gone; default all).
 * A bad filter -> 400 with the filter error's message.
 */
export interface FleetQuery {
  identity?: string[];
  fact?: string[];
  class?: string[];
  agent?: string[];
  compound?: string[];
  status?: NodeStatus;
  offset?: number;
  limit?: number;
}
export interface FleetResponse {
  total: number;
  offset: number;
  limit: number;
  nodes: FleetNode[];
  /** counts over the whole table (not filtered) */
  summary: Record<NodeStatus, number>;
  /**
   * where node data comes from besides lifecycle events and rpcutil#inventory polls:
   * "live" registration subscription, "refused" (the credential may not subscribe: its NATS
   * permissions or the broker said so), or "off" (no credential given)
   */
  registration: RegistrationState;
  /** seconds between inventory polls (0: only at start) */
  inventoryEveryS: number;
}
export type RegistrationState = "live" | "refused" | "off";
/** GET /api/fleet/:identity -> the node or 404 */
export type FleetNodeResponse = FleetNode;
/**
 * GET /api/fleet/counts?fact=os.family, optionally filtered by `identity`, `class`, `agent`,
 * `compound` and `where` (fact filters, since `fact` names the fact counted).
 */
export interface FleetCountsResponse {
  fact: string;
  /** value (stringified; "(unset)" when the node lacks the fact) -> number of nodes */
  counts: Record<string, number>;
}

// ---- DDL -------------------------------------------------------------------

export interface DdlInput {
  name: string;
  prompt: string;
  description: string;
  /** string, integer, number, float, boolean, list, hash, array */
  type: string;
  optional: boolean;
  default?: unknown;
  /** for type list */
  list?: string[];
  validation?: string;
  maxlength?: number;
}
export interface DdlAction {
  name: string;
  description: string;
  display?: string;
  inputs: DdlInput[];
  outputs: { name: string; description: string; display_as?: string; type?: string }[];
}
export interface DdlAgent {
  name: string;
  description: string;
  version?: string;
  actions: DdlAction[];
}
/** GET /api/ddl */
export interface DdlResponse {
  agents: DdlAgent[];
}

// ---- discovery and requests ------------------------------------------------

/** The filter as the CLI's flags (each optional, repeated values). */
export interface FilterSpec {
  identity?: string[];
  fact?: string[];
  class?: string[];
  agent?: string[];
  compound?: string[];
}

/** POST /api/discover */
export interface DiscoverRequest {
  /** adds `agent` to the filter's agents */
  agent?: string;
  filter?: FilterSpec;
}
export interface DiscoverResponse {
  count: number;
  /** the first 100, sorted */
  nodes: string[];
}

/**
 * POST /api/requests — inputs validated against the DDL (400 with the reason).
 * `batch_size` 1-100 000; `batch_sleep` 0-3600 s, only with batch_size (default 1 s
 * between batches); `canary` 1-100 000: send to that many nodes first and go on only when
 * they all answered OK.
 */
export interface StartRequest {
  agent: string;
  action: string;
  inputs?: Record<string, unknown>;
  filter?: FilterSpec;
  batch_size?: number;
  /** seconds between batches */
  batch_sleep?: number;
  canary?: number;
}
export interface StartRequestResponse {
  id: string;
}

/**
 * GET /api/requests/:id/events — text/event-stream. Events (the SSE `event:` name and
 * its JSON `data:`), in this order: `targets` once, then `progress` and `reply`
 * interleaved, then `summary`, then `end`; `error` instead of summary when the request failed.
 * A late subscriber gets every event so far replayed first.
 */
export interface TargetsEvent {
  total: number;
}
export interface ProgressEvent {
  done: number;
  total: number;
}
export interface ReplyEvent {
  sender: string;
  statuscode: number;
  statusmsg: string;
  data: Record<string, unknown>;
}
export interface SummaryEvent {
  requestid: string;
  discovered: number;
  responses: number;
  ok: number;
  failed: number;
  noResponses: string[];
  unexpected: string[];
  requestMs: number;
  /** the canary batch did not all answer OK, so the rest was not sent */
  canaryStopped?: boolean;
  /** nodes never sent the request (after a failed canary) */
  skipped?: number;
}
export interface ErrorEvent {
  error: string;
  /** "denied": the AAA service refused the request (see the Audit page) */
  kind?: "denied" | "failed";
}
export interface EndEvent {
  ok: boolean;
}
export type RequestEventName = "targets" | "progress" | "reply" | "summary" | "error" | "end";

// ---- jobs (receiver), audit, scout ----------------------------------------

/** GET /api/jobs (503 `{error}` when no receiver URL is configured) */
export interface JobsResponse {
  jobs: Record<string, unknown>[];
}
/** GET /api/jobs/:id */
export interface JobResponse {
  job: Record<string, unknown>;
  replies: Record<string, unknown>[];
}

export type AuditDecision = "allow" | "deny" | "unknown";

/**
 * GET /api/audit?caller=&agent=&decision=&limit=&before= — the AAA signer's audit records
 * (stream CHORUS_AAA_AUDIT) newest first. `caller`: part of the caller id, any case;
 * `agent`, `decision`: exact; `limit` 1-500 (default 200); `before`: only records with a
 * lower stream sequence (the next page back).
 */
export interface AuditQuery {
  caller?: string;
  agent?: string;
  decision?: AuditDecision;
  limit?: number;
  before?: number;
}
/** One io.choria.signer.v1.signature_audit record, flattened for the view. */
export interface AuditEntry {
  /** stream sequence */
  seq: number;
  /** ISO time the signer decided */
  time: string;
  /** the verified caller, or "unverified" when the token or signature failed */
  caller: string;
  /** the caller an unverified request claimed */
  claimedCaller?: string;
  agent: string;
  /** "" for discovery */
  action: string;
  decision: AuditDecision;
  reason: string;
  site: string;
  requestid: string;
  collective: string;
  sender: string;
  /** the request's filter as CLI flags */
  filter?: string;
}
export interface AuditResponse {
  /** the stream read, when the console reads one */
  stream?: string;
  records: AuditEntry[];
  /** records in the console's memory matching the filter, all pages */
  matched: number;
  /** why the list is empty or partial: no audit credential, no stream yet, a refused read */
  note?: string;
}

/** GET /api/scout */
export interface ScoutCheck {
  node: string;
  name: string;
  state: string;
  /** ISO time, when known */
  since?: string;
  output?: string;
}
export interface ScoutResponse {
  checks: ScoutCheck[];
  /** state -> number of checks */
  counts: Record<string, number>;
  /** nodes that did not answer */
  noResponses: string[];
}
