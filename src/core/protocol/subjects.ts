import { createHash } from "node:crypto";

function md5hex(s: string): string {
  return createHash("md5").update(s, "utf8").digest("hex");
}

/** `<collective>.reply.<md5hex(callerid)>`: the client inbox prefix go-choria uses. */
export function replyPrefix(collective: string, callerId: string): string {
  return `${collective}.reply.${md5hex(callerId)}`;
}

/** `<collective>.reply.<md5hex(callerid)>.<requestid>` */
export function replySubject(collective: string, callerId: string, requestId: string): string {
  return `${replyPrefix(collective, callerId)}.${requestId}`;
}

/**
 * `<collective>.reply.<md5hex(callerid)>.async.<requestid>`: where nodes answer an
 * asynchronous request. It stays under the caller's inbox (nodes answer nowhere else),
 * and the extra `async` token lets a stream capture these replies and only these.
 */
export function asyncReplySubject(collective: string, callerId: string, requestId: string): string {
  return `${replyPrefix(collective, callerId)}.async.${requestId}`;
}

/** What the replies stream captures: every caller's async replies, in every collective. */
export const ASYNC_REPLY_WILDCARD = "*.reply.*.async.>";

/**
 * `chorus.async.request.<md5hex(callerid)>.<requestid>`: the client's record of an
 * asynchronous request (what it asked, which nodes), stored before the request is sent.
 * Nodes may not publish here, so a node cannot forge another request's record.
 */
export function asyncRecordSubject(callerId: string, requestId: string): string {
  return `chorus.async.request.${md5hex(callerId)}.${requestId}`;
}

export const ASYNC_RECORD_WILDCARD = "chorus.async.request.>";

/** `<collective>.broadcast.agent.<agent>` */
export function broadcastSubject(collective: string, agent: string): string {
  return `${collective}.broadcast.agent.${agent}`;
}

/** `<collective>.broadcast.service.<agent>` (subscribed with queue group = agent name) */
export function serviceSubject(collective: string, agent: string): string {
  return `${collective}.broadcast.service.${agent}`;
}

/** `<collective>.node.<identity>` */
export function directSubject(collective: string, identity: string): string {
  return `${collective}.node.${identity}`;
}

const sha256hex = (s: string): string => createHash("sha256").update(s, "utf8").digest("hex");

/**
 * Whether `subject` is under the private inbox of `callerId`:
 * `<collective>.reply.<md5hex|sha256hex(callerid)>.<more>`. Only that caller may
 * subscribe there, so a node answering a request only to such a subject cannot be
 * made to answer someone else, or to publish into lifecycle, submission or
 * registration subjects, whatever the unsigned transport header says.
 */
export function isCallerReplySubject(subject: string, callerId: string): boolean {
  const first = subject.indexOf(".");
  if (first <= 0 || !subject.startsWith(".reply.", first)) return false;
  const hashStart = first + 7;
  const hashEnd = subject.indexOf(".", hashStart);
  if (hashEnd < 0 || hashEnd === subject.length - 1) return false;
  for (let i = 0; i < subject.length; i++) {
    const c = subject.charCodeAt(i);
    // wildcards, whitespace and control characters are never a publishable subject
    if (c === 42 || c === 62 || c <= 32 || c === 127) return false;
    if (c === 46 && i > 0 && subject.charCodeAt(i - 1) === 46) return false;
  }
  const h = subject.slice(hashStart, hashEnd);
  return h.length === 32 ? h === md5hex(callerId) : h.length === 64 && h === sha256hex(callerId);
}

/** `choria.federation.<network>.collective`: where federation brokers collect replies. */
export function isFederationReplySubject(subject: string): boolean {
  const parts = subject.split(".");
  return (
    parts.length === 4 &&
    parts[0] === "choria" &&
    parts[1] === "federation" &&
    parts[3] === "collective" &&
    /^[A-Za-z0-9_-]+$/.test(parts[2] as string)
  );
}
