import { randomUUID } from "node:crypto";
import { ChorusError } from "../../core/protocol/errors.js";

/** Problems submitting to or publishing from the spool; `code` is stable. */
export class SubmissionError extends ChorusError {}

export const PRIORITIES = [0, 1, 2, 3, 4] as const;
export type Priority = (typeof PRIORITIES)[number];

/** Library defaults (go-choria submission package). */
export const MESSAGE_DEFAULTS = {
  ttlMs: 7 * 24 * 3_600_000,
  maxTtlMs: 31 * 24 * 3_600_000,
  maxTries: 500,
  priority: 4 as Priority,
} as const;

/** NATS' default max_payload: anything larger the broker would refuse anyway. */
export const MAX_PAYLOAD_BYTES = 1024 * 1024;

/** What a caller hands to Spool.submit. */
export interface SubmitRequest {
  /** relative subject; published as `<collective>.submission.in.<subject>` */
  subject: string;
  payload: Uint8Array | string;
  sender: string;
  reliable?: boolean;
  priority?: number;
  ttlMs?: number;
  maxTries?: number;
  /** sign the payload with the node's key (Choria-Signature, Choria-Token) */
  sign?: boolean;
  /** extra headers; may not start with choria or nats */
  headers?: Record<string, string>;
}

/** A spooled message as stored on disk (one JSON file each). */
export interface SpooledMessage {
  id: string;
  subject: string;
  /** base64 */
  payload: string;
  reliable: boolean;
  priority: Priority;
  /** unix nanoseconds as a decimal string (too big for a JSON number) */
  created: string;
  /** seconds, as go-choria stores it */
  ttl: number;
  max_tries: number;
  tries: number;
  /** unix ms; 0 = now */
  next_try: number;
  sender: string;
  identity: string;
  sign: boolean;
  headers: Record<string, string>;
}

const SUBJECT_TOKEN = /^[^\s.*>]+$/;

function validSubject(s: string): boolean {
  return s.length > 0 && s.length <= 255 && s.split(".").every((t) => SUBJECT_TOKEN.test(t));
}

/** Checks a request and builds the stored form; throws SubmissionError{code:"invalid"}. */
export function buildMessage(req: SubmitRequest, identity: string, createdNs: bigint): SpooledMessage {
  const bad = (m: string) => new SubmissionError("invalid", m);
  if (typeof req.subject !== "string" || !validSubject(req.subject)) {
    throw bad(`invalid subject "${String(req.subject)}": dot-separated tokens without spaces or wildcards`);
  }
  const payload = typeof req.payload === "string" ? Buffer.from(req.payload) : Buffer.from(req.payload ?? []);
  if (payload.length === 0) throw bad("payload is required");
  if (payload.length > MAX_PAYLOAD_BYTES) {
    throw bad(`payload is ${payload.length} bytes, the limit is ${MAX_PAYLOAD_BYTES}`);
  }
  if (!req.sender || /\s/.test(req.sender)) throw bad("sender is required and may not contain spaces");
  const priority = req.priority ?? MESSAGE_DEFAULTS.priority;
  if (!PRIORITIES.includes(priority as Priority)) throw bad(`priority must be 0..4, got ${priority}`);
  const ttlMs = req.ttlMs ?? MESSAGE_DEFAULTS.ttlMs;
  if (!Number.isFinite(ttlMs) || ttlMs <= 0) throw bad("ttl must be positive");
  if (ttlMs > MESSAGE_DEFAULTS.maxTtlMs) throw bad("ttl exceeds the maximum of 31 days");
  const maxTries = req.maxTries ?? MESSAGE_DEFAULTS.maxTries;
  if (!Number.isInteger(maxTries) || maxTries < 1) throw bad("max tries must be a positive integer");
  const headers = req.headers ?? {};
  for (const [k, v] of Object.entries(headers)) {
    if (/^(choria|nats)/i.test(k)) throw bad(`header ${k}: names starting with choria or nats are reserved`);
    if (!/^[!-9;-~]+$/.test(k) || /[\r\n]/.test(v)) throw bad(`header ${k}: invalid name or value`);
  }
  return {
    id: randomUUID(),
    subject: req.subject,
    payload: payload.toString("base64"),
    reliable: req.reliable === true,
    priority: priority as Priority,
    created: createdNs.toString(),
    ttl: ttlMs / 1000,
    max_tries: maxTries,
    tries: 0,
    next_try: 0,
    sender: req.sender,
    identity,
    sign: req.sign === true,
    headers: { ...headers },
  };
}

/**
 * Parses a spool file; anything that is not a complete message throws, so the
 * caller can move it aside instead of retrying it forever.
 */
export function parseMessage(bytes: Buffer): SpooledMessage {
  let m: Partial<SpooledMessage>;
  try {
    m = JSON.parse(bytes.toString("utf8")) as Partial<SpooledMessage>;
  } catch (err) {
    throw new SubmissionError("corrupt", `not JSON: ${(err as Error).message}`);
  }
  const fail = (what: string) => new SubmissionError("corrupt", what);
  if (m === null || typeof m !== "object") throw fail("not an object");
  if (typeof m.id !== "string" || m.id === "") throw fail("no id");
  if (typeof m.subject !== "string" || !validSubject(m.subject)) throw fail("bad subject");
  if (typeof m.payload !== "string" || m.payload === "") throw fail("no payload");
  if (!PRIORITIES.includes(m.priority as Priority)) throw fail("bad priority");
  if (typeof m.created !== "string" || !/^\d+$/.test(m.created)) throw fail("bad created time");
  if (typeof m.ttl !== "number" || !(m.ttl > 0)) throw fail("bad ttl");
  if (typeof m.max_tries !== "number" || typeof m.tries !== "number") throw fail("bad tries");
  if (typeof m.sender !== "string" || m.sender === "") throw fail("no sender");
  return {
    id: m.id,
    subject: m.subject,
    payload: m.payload,
    reliable: m.reliable === true,
    priority: m.priority as Priority,
    created: m.created,
    ttl: m.ttl,
    max_tries: m.max_tries,
    tries: m.tries,
    next_try: typeof m.next_try === "number" ? m.next_try : 0,
    sender: m.sender,
    identity: typeof m.identity === "string" ? m.identity : "",
    sign: m.sign === true,
    headers: m.headers && typeof m.headers === "object" ? m.headers : {},
  };
}

export function createdMs(m: SpooledMessage): number {
  return Number(BigInt(m.created) / 1_000_000n);
}

export function isExpired(m: SpooledMessage, now = Date.now()): boolean {
  return now - createdMs(m) > m.ttl * 1000;
}
