import { hash } from "node:crypto";
import { ASYNC_RECORD_PROTOCOL, openReply, parseRpcReplyBody, type ReplyTrust } from "../../client/index.js";
import type { ReplyRow, RequestRow } from "./store.js";

/** Why a message was not stored (the `reason` label of the dropped counter). */
export type DropReason =
  /** not JSON, not the expected shape, a layer that does not decode */
  | "malformed"
  /** the reply's hash does not match its body */
  | "hash"
  /** verify_signatures: the reply's signature or sender token does not check out */
  | "signature"
  /** a request id that is not 1 to 64 letters and digits */
  | "bad_id"
  /** a record whose subject does not name its caller and id, a reply whose id is not its subject's */
  | "forged"
  /** a subject of neither kind */
  | "subject";

export const DROP_REASONS: readonly DropReason[] = [
  "malformed",
  "hash",
  "signature",
  "bad_id",
  "forged",
  "subject",
];

/** Request ids: KSUIDs from Chorus, any 1-64 alphanumerics from other clients. */
export const REQUEST_ID_PATTERN = "^[0-9A-Za-z]{1,64}$";
const REQUEST_ID = new RegExp(REQUEST_ID_PATTERN);

export const RECORD_PROTOCOL = ASYNC_RECORD_PROTOCOL;
const RECORD_PREFIX = "chorus.async.request.";
const ASYNC_TOKEN = ".async.";

export type Parsed =
  | { kind: "reply"; row: ReplyRow }
  | { kind: "record"; row: RequestRow }
  | { kind: "drop"; reason: DropReason; detail: string };

const drop = (reason: DropReason, detail: string): Parsed => ({ kind: "drop", reason, detail });

/**
 * A reply published to `<collective>.reply.<md5(caller)>.async.<requestid>`: the reply
 * layers opened by the client's decoder (hash always checked, signature with `trust`),
 * its request id must be the subject's.
 */
export function parseReply(subject: string, data: Uint8Array, storedMs: number, trust?: ReplyTrust): Parsed {
  const dot = subject.lastIndexOf(".");
  const at = dot - ASYNC_TOKEN.length + 1;
  if (dot < 0 || at < 0 || !subject.startsWith(ASYNC_TOKEN, at))
    return drop("subject", `${subject} is not an async reply subject`);
  const id = subject.slice(dot + 1);
  if (!REQUEST_ID.test(id))
    return drop("bad_id", `request id ${JSON.stringify(id)} is not 1-64 letters and digits`);
  const o = openReply(data, trust);
  if (!o.ok) {
    const reason: DropReason = o.reason === "hash" || o.reason === "signature" ? o.reason : "malformed";
    return drop(reason, o.detail);
  }
  if (o.requestId !== id) return drop("forged", `reply to ${o.requestId} published for ${id}`);
  if (o.sender === "" || o.sender.length > 255) return drop("malformed", "reply has no usable sender");
  const body = parseRpcReplyBody(o.message);
  return {
    kind: "reply",
    row: {
      request_id: id,
      sender: o.sender,
      statuscode: body.statuscode,
      statusmsg: body.statusmsg,
      data: JSON.stringify(body.data),
      reply_ms: Math.floor(o.timeNs / 1e6),
      stored_ms: storedMs,
    },
  };
}

const str = (v: unknown, max = 1024): v is string => typeof v === "string" && v.length <= max;

/**
 * A request record published to `chorus.async.request.<md5(caller)>.<requestid>`: the
 * subject must carry the md5 of the record's caller and its request id, so a client can
 * only write records for its own requests (its NATS permissions cover its own md5 only).
 */
export function parseRecord(subject: string, data: Uint8Array, storedMs: number): Parsed {
  if (!subject.startsWith(RECORD_PREFIX))
    return drop("subject", `${subject} is not a request record subject`);
  const rest = subject.slice(RECORD_PREFIX.length);
  const dot = rest.indexOf(".");
  const token = rest.slice(0, dot);
  const id = rest.slice(dot + 1);
  if (dot < 0 || !REQUEST_ID.test(id))
    return drop("bad_id", `record subject ${subject} does not end in a request id`);
  let doc: Record<string, unknown>;
  try {
    const v = JSON.parse(
      Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("utf8"),
    ) as unknown;
    if (typeof v !== "object" || v === null || Array.isArray(v))
      return drop("malformed", "record is not a JSON object");
    doc = v as Record<string, unknown>;
  } catch (err) {
    return drop("malformed", `record is not JSON: ${(err as Error).message}`);
  }
  if (doc.protocol !== RECORD_PROTOCOL) return drop("malformed", `record protocol is not ${RECORD_PROTOCOL}`);
  const { request_id, agent, action, caller, collective, reply_to, nodes, discovered, time } = doc;
  if (
    !str(request_id, 64) ||
    !str(agent) ||
    !str(action) ||
    !str(caller) ||
    !str(collective) ||
    !str(reply_to)
  )
    return drop(
      "malformed",
      "record lacks a string request_id, agent, action, caller, collective or reply_to",
    );
  if (!Array.isArray(nodes) || !nodes.every((n) => str(n, 255)))
    return drop("malformed", "record nodes is not a list of identities");
  if (typeof discovered !== "number" || !Number.isInteger(discovered) || discovered < 0)
    return drop("malformed", "record discovered is not a count");
  const created = typeof time === "string" ? Date.parse(time) : NaN;
  if (!Number.isFinite(created)) return drop("malformed", "record time is not an ISO time");
  if (request_id !== id) return drop("forged", `record for ${request_id} published for ${id}`);
  if (hash("md5", caller, "hex") !== token)
    return drop("forged", `record of ${caller} published under another caller's subject`);
  return {
    kind: "record",
    row: {
      request_id: id,
      agent,
      action,
      caller,
      collective,
      reply_to,
      discovered,
      nodes: JSON.stringify(nodes),
      created_ms: created,
      stored_ms: storedMs,
    },
  };
}

/** A message from either subject. */
export function parseMessage(
  subject: string,
  data: Uint8Array,
  storedMs: number,
  trust?: ReplyTrust,
): Parsed {
  return subject.startsWith(RECORD_PREFIX)
    ? parseRecord(subject, data, storedMs)
    : parseReply(subject, data, storedMs, trust);
}
