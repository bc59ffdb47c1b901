import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "../core/connector/index.js";
import { asyncRecordSubject } from "../core/protocol/index.js";
import { badOption, ClientError, naming, opt } from "./errors.js";
import type { RequestOptions } from "./types.js";

/** The stream a receiver keeps asynchronous replies and request records in. */
export const ASYNC_REPLIES_STREAM = "CHORUS_REPLIES";

/** `protocol` of a request record. */
export const ASYNC_RECORD_PROTOCOL = "io.chorus.async.v1.request";

/** How long requestAsync waits for the stream to acknowledge the record (default). */
export const DEFAULT_RECORD_TIMEOUT_MS = 5000;

/**
 * What an asynchronous request asked and of whom, stored (JSON, on the record subject)
 * before the request is published, so a receiver can tell which replies are missing.
 */
export interface AsyncRequestRecord {
  protocol: typeof ASYNC_RECORD_PROTOCOL;
  request_id: string;
  agent: string;
  action: string;
  caller: string;
  collective: string;
  reply_to: string;
  /** the nodes expected to reply */
  nodes: string[];
  discovered: number;
  /** ISO 8601 */
  time: string;
  /** seconds the request stays valid */
  ttl: number;
}

/**
 * The options of requestAsync: those of request() that make sense without waiting for
 * replies. Batches, canaries and retries need replies to pace or judge them, a
 * service request has no nodes to count replies against, and the reply subject is
 * the asynchronous one: those options are refused (see checkAsyncOptions).
 */
export type AsyncRequestOptions = Omit<
  RequestOptions,
  "replyTo" | "onReply" | "onBatch" | "timeoutMs" | "batchSize" | "batchSleepMs" | "canary" | "retries"
> & {
  /** wait for the stream's acknowledgement of the record (default 5000) */
  recordTimeoutMs?: number;
};

export interface AsyncRequestResult {
  requestId: string;
  /** where the nodes reply: asyncReplySubject(collective, callerId, requestId) */
  replyTo: string;
  /** the nodes the request went to (after discovery and limit) */
  nodes: string[];
  discovered: number;
  /** when the request was published (epoch ms); 0 when nothing was sent */
  publishedMs: number;
  /**
   * false when nothing was sent: discovery found no node, or the signal aborted
   * during discovery (no record was stored either)
   */
  sent: boolean;
}

/** Options requestAsync refuses, with the reason, checked before any traffic. */
export function checkAsyncOptions(o: AsyncRequestOptions): void {
  const any = o as RequestOptions;
  for (const name of ["batchSize", "batchSleepMs", "canary", "retries"] as const) {
    if (any[name] !== undefined) {
      throw badOption(
        name,
        naming`${opt(name)} cannot be used with an asynchronous request: nothing waits for the replies that pace or judge it`,
      );
    }
  }
  if (any.replyTo !== undefined) {
    throw badOption(
      "replyTo",
      naming`${opt("replyTo")} cannot be used with an asynchronous request: its replies go to the asynchronous reply subject`,
    );
  }
  if (o.mode === "service") {
    throw badOption(
      "mode=service",
      naming`${opt("mode=service")} cannot be used with an asynchronous request: a service request has no nodes to count replies against`,
    );
  }
  const t = o.recordTimeoutMs;
  if (t !== undefined && !(Number.isFinite(t) && t > 0)) {
    throw badOption("recordTimeoutMs", naming`${opt("recordTimeoutMs")}: ${t} is not a positive number`);
  }
}

/** The error's name and its causes' names (nats.js wraps a request's failure in a RequestError). */
function errorNames(err: unknown): string[] {
  const names: string[] = [];
  for (let e = err; e instanceof Error && names.length < 5; e = e.cause) names.push(e.name);
  return names;
}

/** A failed record publish in words that say what to do; nothing was sent when this is thrown. */
function recordError(err: unknown, subject: string, timeoutMs: number): ClientError {
  const cause = { cause: err };
  const names = errorNames(err);
  if (names.includes("JetStreamNotEnabled") || names.includes("NoRespondersError")) {
    return new ClientError(
      "no_replies_stream",
      `no stream stores asynchronous request records (${subject}): the ${ASYNC_REPLIES_STREAM} stream is missing; ` +
        "a receiver creates it when it starts, so start a receiver before sending asynchronous requests",
      cause,
    );
  }
  if (names.includes("PermissionViolationError")) {
    return new ClientError(
      "record_denied",
      `the broker refused this client publishing the request record to ${subject}: its NATS credentials ` +
        "do not allow it (credentials issued before asynchronous requests existed must be issued again)",
      cause,
    );
  }
  const why = names.includes("TimeoutError")
    ? `no acknowledgement within ${timeoutMs / 1000}s`
    : err instanceof Error
      ? err.message
      : String(err);
  return new ClientError("record_failed", `the request record was not stored (${subject}): ${why}`, cause);
}

/**
 * Publishes a request record to the replies stream and waits for its acknowledgement;
 * the message id makes a re-sent record a duplicate the stream drops. Throws
 * ClientError no_replies_stream, record_denied or record_failed.
 */
export async function publishAsyncRecord(
  nc: NatsConnection,
  record: AsyncRequestRecord,
  timeoutMs = DEFAULT_RECORD_TIMEOUT_MS,
): Promise<void> {
  const subject = asyncRecordSubject(record.caller, record.request_id);
  try {
    await jetstream(nc, { timeout: timeoutMs }).publish(subject, JSON.stringify(record), {
      msgID: `rec-${record.request_id}`,
      // Stored by some other stream, no receiver would ever see it.
      expect: { streamName: ASYNC_REPLIES_STREAM },
      timeout: timeoutMs,
    });
  } catch (err) {
    throw recordError(err, subject, timeoutMs);
  }
}
