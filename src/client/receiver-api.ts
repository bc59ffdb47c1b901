import { dirname, isAbsolute, resolve } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { loadConfig } from "../core/config/index.js";
import { readTokenFile } from "../core/util/index.js";
import { badOption, ClientError, naming, opt, type ClientErrorCode } from "./errors.js";

/** Where a receiver's HTTP API listens unless told otherwise. */
export const DEFAULT_RECEIVER_API = "http://127.0.0.1:8091";

/** The client config key naming the receiver API's URL. */
export const RECEIVER_API_CONFIG_KEY = "plugin.chorus.receiver.api";
/** Client config key naming the file with the receiver API's bearer token (Chorus only). */
export const RECEIVER_TOKEN_CONFIG_KEY = "plugin.chorus.receiver.api_token_file";

const DEFAULT_TIMEOUT_MS = 10_000;

/**
 * Added to the timeout for a watch's answer: a receiver holds a watch of a request it
 * has not stored yet for up to 5 s (the record may be on its way) before its 404.
 */
const WATCH_WAIT_MS = 10_000;

/** Request ids the API accepts: KSUIDs, and other clients' ids of letters and digits. */
const REQUEST_ID = /^[0-9A-Za-z]{1,64}$/;

/** How far an asynchronous request has got, as a receiver stored it. */
export interface RequestStatus {
  request_id: string;
  agent: string;
  action: string;
  caller: string;
  collective: string;
  /** ISO 8601 */
  created: string;
  discovered: number;
  replied: number;
  ok: number;
  failed: number;
  /** repliers that were not among the request's nodes */
  unexpected: number;
  /** discovered > 0 and every node of the request replied */
  complete: boolean;
  /** ISO 8601 */
  last_reply?: string;
  /** false while only replies are stored, no record (yet) */
  known: boolean;
}

export interface StoredReply {
  sender: string;
  statuscode: number;
  statusmsg: string;
  data: unknown;
  /** ISO 8601 */
  time: string;
}

export interface ListRequestsOptions {
  /** at most this many, newest first (the API's default: 50) */
  limit?: number;
  caller?: string;
  agent?: string;
  /** only requests created before this time */
  before?: Date | string;
}

export interface RepliesOptions {
  limit?: number;
  offset?: number;
  /** only failed replies */
  failed?: boolean;
}

export interface FollowOptions {
  /** give up after this long (default: never) */
  timeoutMs?: number;
  /** stop early (^C): the status so far is returned */
  signal?: AbortSignal;
  /** each status as it changes */
  onStatus?: (s: RequestStatus) => void;
}

export interface FollowResult {
  /** the last status seen; undefined only when interrupted before the first */
  status: RequestStatus | undefined;
  /** why following ended */
  outcome: "complete" | "timeout" | "interrupted";
}

export interface ReceiverApiOptions {
  /** base URL, e.g. http://127.0.0.1:8091 */
  url: string;
  /** the bearer token of a receiver with `http_token_file` */
  token?: string | undefined;
  /** per call, until the answer's headers (watch) or whole body (others) arrived; default 10000 */
  timeoutMs?: number;
}

/** An error from the receiver API: `status` is the HTTP status when it answered. */
export class ReceiverApiError extends ClientError {
  readonly status: number | undefined;

  constructor(code: ClientErrorCode, message: string, o: { status?: number; cause?: unknown } = {}) {
    super(code, message, o.cause === undefined ? undefined : { cause: o.cause });
    this.status = o.status;
  }
}

/** The receiver API URL a client config names (RECEIVER_API_CONFIG_KEY), if any. */
export function receiverApiFromConfig(configPath: string): string | undefined {
  return loadConfig(configPath).get(RECEIVER_API_CONFIG_KEY);
}

/** The receiver API token a client config points at (RECEIVER_TOKEN_CONFIG_KEY), if any. */
export function receiverTokenFromConfig(configPath: string): string | undefined {
  const cfg = loadConfig(configPath);
  const file = cfg.get(RECEIVER_TOKEN_CONFIG_KEY);
  if (file === undefined || file === "") return undefined;
  const path = isAbsolute(file) ? file : resolve(dirname(resolve(configPath)), file);
  try {
    return readTokenFile(path);
  } catch (err) {
    throw new ReceiverApiError("bad_option", `${RECEIVER_TOKEN_CONFIG_KEY}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

function checkRequestId(id: string): void {
  if (!REQUEST_ID.test(id)) {
    throw badOption(
      "requestId",
      naming`${opt("requestId", "request id")} "${id}" is not an id: 1 to 64 letters and digits`,
    );
  }
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

function isStatus(x: unknown): x is RequestStatus {
  return (
    isObject(x) &&
    typeof x.request_id === "string" &&
    typeof x.complete === "boolean" &&
    ["discovered", "replied", "ok", "failed"].every((k) => typeof x[k] === "number")
  );
}

/** Text of a failed fetch: Node hides the reason (ECONNREFUSED...) in its cause. */
function fetchFailure(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (err instanceof Error ? err.message : String(err));
}

/**
 * One Server-Sent Event per blank-line-terminated block: `event:` and `data:` lines
 * (several data lines join with newlines); comments and other fields are ignored.
 */
async function* serverSentEvents(
  body: ReadableStream<Uint8Array>,
): AsyncGenerator<{ event: string; data: string }> {
  let buf = "";
  let event = "";
  let data: string[] = [];
  for await (const chunk of body.pipeThrough(new TextDecoderStream())) {
    buf += chunk;
    let nl: number;
    while ((nl = buf.search(/\r?\n/)) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + (buf[nl] === "\r" ? 2 : 1));
      if (line === "") {
        if (data.length > 0) yield { event: event || "message", data: data.join("\n") };
        event = "";
        data = [];
        continue;
      }
      const colon = line.indexOf(":");
      if (colon === 0) continue;
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
  }
}

/**
 * A typed client of a receiver's HTTP API (docs/jobs.md): requests, their status and
 * replies, and a status stream. Errors are ReceiverApiError: `receiver_unreachable`
 * (no answer, a timeout, or an answer that is not the API's) or `receiver_error` (an
 * error status, with the server's text); a malformed request id is refused before
 * any call (bad_option).
 */
export class ReceiverApi {
  readonly url: string;
  private readonly timeoutMs: number;
  private readonly token: string | undefined;

  constructor(o: ReceiverApiOptions) {
    let u: URL;
    try {
      u = new URL(o.url);
    } catch {
      throw badOption("url", naming`${opt("url", "receiver API URL")} "${o.url}" is not a URL`);
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") {
      throw badOption("url", naming`${opt("url", "receiver API URL")} "${o.url}" is not an http(s) URL`);
    }
    this.url = u.href.replace(/\/+$/, "");
    this.timeoutMs = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.token = o.token;
  }

  /** Requests, newest first. */
  async list(o: ListRequestsOptions = {}): Promise<RequestStatus[]> {
    const q = new URLSearchParams();
    if (o.limit !== undefined) q.set("limit", String(o.limit));
    if (o.caller !== undefined) q.set("caller", o.caller);
    if (o.agent !== undefined) q.set("agent", o.agent);
    if (o.before !== undefined) q.set("before", o.before instanceof Date ? o.before.toISOString() : o.before);
    const body = await this.getJson(`/v1/requests${q.size > 0 ? `?${q}` : ""}`);
    if (!isObject(body) || !Array.isArray(body.requests) || !body.requests.every(isStatus))
      throw this.notTheApi("/v1/requests");
    return body.requests;
  }

  /** One request's status; ReceiverApiError status 404 when the receiver knows nothing of it. */
  async status(id: string): Promise<RequestStatus> {
    checkRequestId(id);
    const path = `/v1/requests/${id}`;
    const body = await this.getJson(path);
    if (!isStatus(body)) throw this.notTheApi(path);
    return body;
  }

  /** A request's stored replies, a page at a time. */
  async replies(id: string, o: RepliesOptions = {}): Promise<StoredReply[]> {
    checkRequestId(id);
    const q = new URLSearchParams();
    if (o.limit !== undefined) q.set("limit", String(o.limit));
    if (o.offset !== undefined) q.set("offset", String(o.offset));
    if (o.failed !== undefined) q.set("failed", String(o.failed));
    const path = `/v1/requests/${id}/replies`;
    const body = await this.getJson(`${path}${q.size > 0 ? `?${q}` : ""}`);
    if (!isObject(body) || !Array.isArray(body.replies)) throw this.notTheApi(path);
    return body.replies as StoredReply[];
  }

  /**
   * The request's status each time it changes, ending after the status that made it
   * complete, or when `signal` aborts. A stream the receiver closes before that ends
   * the iteration too (the caller may watch again).
   */
  async *watch(id: string, o: { signal?: AbortSignal } = {}): AsyncGenerator<RequestStatus> {
    checkRequestId(id);
    const path = `/v1/requests/${id}/watch`;
    const ac = new AbortController();
    const stop = () => ac.abort();
    o.signal?.addEventListener("abort", stop, { once: true });
    try {
      const res = await this.fetch(path, ac.signal, "text/event-stream");
      if (!res.body || !res.headers.get("content-type")?.startsWith("text/event-stream"))
        throw this.notTheApi(path);
      for await (const ev of serverSentEvents(res.body)) {
        if (ev.event !== "status" && ev.event !== "complete") continue;
        let status: unknown;
        try {
          status = JSON.parse(ev.data);
        } catch {
          status = undefined;
        }
        // `complete` may come without a status of its own: the last one was it.
        if (isStatus(status)) yield status;
        else if (ev.event === "status") throw this.notTheApi(path);
        if (ev.event === "complete") return;
      }
    } catch (err) {
      if (o.signal?.aborted) return;
      if (err instanceof ReceiverApiError) throw err;
      throw new ReceiverApiError("receiver_unreachable", `${this.url}${path}: ${fetchFailure(err)}`, {
        cause: err,
      });
    } finally {
      o.signal?.removeEventListener("abort", stop);
      ac.abort();
    }
  }

  /**
   * Follows a request until it is complete, `timeoutMs` passed or `signal` aborted,
   * watching again when the receiver closes the stream early (a receiver restart). An
   * id the receiver does not know is its 404 (it waits a moment for a record that is
   * not stored yet before it says so).
   */
  async follow(id: string, o: FollowOptions = {}): Promise<FollowResult> {
    checkRequestId(id);
    const ac = new AbortController();
    const stop = () => ac.abort();
    o.signal?.addEventListener("abort", stop, { once: true });
    let timedOut = false;
    const timer =
      o.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            ac.abort();
          }, o.timeoutMs);
    let last: RequestStatus | undefined;
    try {
      while (!ac.signal.aborted) {
        for await (const s of this.watch(id, { signal: ac.signal })) {
          last = s;
          o.onStatus?.(s);
          if (s.complete) return { status: s, outcome: "complete" };
        }
        // rejects when aborted, which the loop condition then sees
        await delay(250, undefined, { signal: ac.signal }).catch(() => {});
      }
      // Timed out before any status: one plain look says what there is (or that the id is unknown).
      if (timedOut && last === undefined) last = await this.status(id);
      return { status: last, outcome: timedOut ? "timeout" : "interrupted" };
    } finally {
      clearTimeout(timer);
      o.signal?.removeEventListener("abort", stop);
    }
  }

  /** True when the receiver answers its health check. */
  async healthy(): Promise<boolean> {
    try {
      const body = await this.getJson("/healthz");
      return isObject(body) && body.ok === true;
    } catch {
      return false;
    }
  }

  private async getJson(path: string): Promise<unknown> {
    const res = await this.fetch(path, undefined, "application/json");
    try {
      return await res.json();
    } catch (err) {
      throw this.notTheApi(path, err);
    }
  }

  /**
   * GETs `path`; a timeout covers the wait for the headers (and, through the same
   * signal, a body read by the caller before the deadline). Error statuses throw.
   */
  private async fetch(path: string, signal: AbortSignal | undefined, accept: string): Promise<Response> {
    const stream = accept === "text/event-stream";
    const ms = this.timeoutMs + (stream ? WATCH_WAIT_MS : 0);
    const timeout = AbortSignal.timeout(ms);
    const timer = new AbortController();
    const onTimeout = () => timer.abort();
    timeout.addEventListener("abort", onTimeout, { once: true });
    signal?.addEventListener("abort", () => timer.abort(), { once: true });
    let res: Response;
    try {
      const headers: Record<string, string> = { accept };
      if (this.token !== undefined) headers.authorization = `Bearer ${this.token}`;
      res = await fetch(`${this.url}${path}`, { signal: timer.signal, headers });
    } catch (err) {
      const why = timeout.aborted ? `no answer within ${ms / 1000}s` : fetchFailure(err);
      throw new ReceiverApiError(
        "receiver_unreachable",
        `cannot reach the receiver API at ${this.url}: ${why}`,
        {
          cause: err,
        },
      );
    } finally {
      // A stream must outlive the timeout once its headers are in.
      if (stream) timeout.removeEventListener("abort", onTimeout);
    }
    if (!res.ok) {
      let text = "";
      try {
        const body: unknown = await res.json();
        if (isObject(body) && typeof body.error === "string") text = body.error;
      } catch {
        // not the API's error shape: the status says what there is to say
      }
      throw new ReceiverApiError(
        "receiver_error",
        `the receiver API at ${this.url} answered ${res.status}${text ? `: ${text}` : ` ${res.statusText}`}`,
        { status: res.status },
      );
    }
    return res;
  }

  private notTheApi(path: string, cause?: unknown): ReceiverApiError {
    return new ReceiverApiError(
      "receiver_unreachable",
      `${this.url}${path} did not answer as a receiver API does`,
      cause === undefined ? {} : { cause },
    );
  }
}
