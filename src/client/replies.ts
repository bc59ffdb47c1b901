import { availableParallelism } from "node:os";
import {
  decodeAnyTransport,
  decodeReply,
  decodeReplyV1,
  decodeSecureReply,
  decodeSecureReplyV1,
  jsonDepthExceeds,
  MAX_JSON_DEPTH,
  StatusCode,
} from "../core/protocol/index.js";
import { ChoriaSecurity, SecurityError, verify, verifyToken } from "../core/security/index.js";
import { serveWorkerPool, WorkerPool } from "../core/util/index.js";
import type { DropCounts } from "./types.js";

/**
 * What reply verification needs from a security provider. ChoriaSecurity fits; a
 * worker thread can build one from the issuer keys alone (see issuerTrust).
 */
export interface ReplyTrust {
  verifyServerToken(jwt: string): { identity: string; public_key: string };
  verifySignature(publicHex: string, data: Uint8Array, sig: Uint8Array): boolean;
}

/** A ReplyTrust from issuer keys alone, for places without a ChoriaSecurity (worker threads). */
export function issuerTrust(issuers: string[]): ReplyTrust {
  const trusted = [...issuers];
  return {
    verifyServerToken(jwt) {
      const c = verifyToken(jwt, trusted);
      if (c.purpose !== "choria_server")
        throw new SecurityError("wrong_purpose", `token purpose is ${c.purpose}, need choria_server`);
      return c as { identity: string; public_key: string };
    },
    verifySignature: verify,
  };
}

export type DropReason = keyof DropCounts;

export type OpenedReply =
  | { ok: true; sender: string; requestId: string; agent: string; timeNs: number; message: Buffer }
  | { ok: false; reason: DropReason; detail: string };

export function emptyDropCounts(): DropCounts {
  return { malformed: 0, hash: 0, signature: 0, request: 0, duplicate: 0 };
}

/**
 * Checks a reply signature: the sender JWT must be a server token from a trusted
 * issuer, name the same identity as the reply, and its key must verify the signature
 * over the exact reply bytes. Returns why it failed, or undefined when it is good.
 * Plain data in, plain data out, so it can run in a worker thread unchanged.
 */
export function checkReplySignature(
  trust: ReplyTrust,
  replyBytes: Uint8Array,
  signature: Uint8Array | undefined,
  senderJwt: string | undefined,
  sender: string,
): string | undefined {
  if (!signature || signature.length === 0) return "reply is not signed";
  if (!senderJwt) return "reply carries no sender token";
  let claims: { identity: string; public_key: string };
  try {
    claims = trust.verifyServerToken(senderJwt);
  } catch (err) {
    return `sender token rejected: ${(err as Error).message}`;
  }
  if (claims.identity !== sender) return `sender token is for ${claims.identity}, reply claims ${sender}`;
  if (!trust.verifySignature(claims.public_key, replyBytes, signature)) return "bad reply signature";
  return undefined;
}

// Like go-choria's client (strict validation off by default), replies are not checked
// against the full schemas: only the fields read here are. The hash and signature
// checks are what make a reply trustworthy; the schemas cost ~40% of opening one.
const LIGHT = { strict: false } as const;

/**
 * Unwraps one reply message (transport → secure reply → reply). The hash is always
 * checked; the signature only when `trust` is given. This is the whole per-reply
 * crypto cost, behind a bytes-in/data-out boundary so it can move to workers.
 * The codecs refuse a layer nested deeper than MAX_JSON_DEPTH before parsing it
 * (counted as malformed here); the RPC body inside is checked by parseRpcReplyBody,
 * where the sender is known.
 */
export function openReply(bytes: Uint8Array, trust?: ReplyTrust): OpenedReply {
  let secureBytes: Buffer;
  let secure: ReturnType<typeof decodeSecureReply>;
  let decoded: ReturnType<typeof decodeReply>;
  try {
    const t = decodeAnyTransport(bytes, LIGHT);
    if (t.version === 1) return openReplyV1(t.inner, trust);
    secureBytes = t.inner;
    secure = decodeSecureReply(secureBytes, LIGHT);
    if (!secure.hashOk) return { ok: false, reason: "hash", detail: "reply hash mismatch" };
    decoded = decodeReply(secure.replyBytes, LIGHT);
  } catch (err) {
    return { ok: false, reason: "malformed", detail: (err as Error).message };
  }
  const reply = decoded.reply;
  if (trust) {
    const why = checkReplySignature(
      trust,
      secure.replyBytes,
      secure.signature,
      secure.secure.sender,
      reply.sender,
    );
    if (why !== undefined) return { ok: false, reason: "signature", detail: `${reply.sender}: ${why}` };
  }
  return {
    ok: true,
    sender: reply.sender,
    requestId: reply.request,
    agent: reply.agent,
    timeNs: reply.time,
    message: decoded.message,
  };
}

/**
 * A v1 reply: hashed, never signed (go-choria's v1). When signatures are demanded it is
 * refused, so nobody can slip an unsigned v1 reply past a client that checks them.
 */
function openReplyV1(inner: Buffer, trust: ReplyTrust | undefined): OpenedReply {
  let decoded: ReturnType<typeof decodeReplyV1>;
  try {
    const secure = decodeSecureReplyV1(inner, LIGHT);
    if (!secure.hashOk) return { ok: false, reason: "hash", detail: "v1 reply hash mismatch" };
    decoded = decodeReplyV1(secure.replyBytes, LIGHT);
  } catch (err) {
    return { ok: false, reason: "malformed", detail: (err as Error).message };
  }
  const r = decoded.reply;
  if (trust)
    return {
      ok: false,
      reason: "signature",
      detail: `${r.sender}: a protocol v1 reply carries no signature to verify`,
    };
  return {
    ok: true,
    sender: r.sender,
    requestId: r.request,
    agent: r.agent,
    timeNs: r.time,
    message: decoded.message,
  };
}

export interface RpcReplyFields {
  statuscode: number;
  statusmsg: string;
  data: Record<string, unknown>;
  /** set when the body was refused unparsed for nesting deeper than MAX_JSON_DEPTH */
  tooDeep?: true;
}

/** The statusmsg of a reply whose body nests deeper than MAX_JSON_DEPTH. */
export const TOO_DEEP_STATUSMSG = `reply data is nested more than ${MAX_JSON_DEPTH} levels deep: not processed`;

/**
 * Parses an mcorpc reply body with Choria's defaults (0, "OK", {}). Only cheap type
 * checks: a body that is not an object counts as an unknown error rather than a drop,
 * so the operator sees that the node answered. So does a body nested deeper than
 * MAX_JSON_DEPTH, checked before parsing: nothing downstream (rendering, JSON output,
 * aggregates, reply filters) then ever sees data deep enough to overflow the stack.
 */
export function parseRpcReplyBody(message: Buffer): RpcReplyFields {
  if (jsonDepthExceeds(message, MAX_JSON_DEPTH)) {
    return { statuscode: StatusCode.UnknownError, statusmsg: TOO_DEEP_STATUSMSG, data: {}, tooDeep: true };
  }
  let doc: unknown;
  try {
    doc = JSON.parse(message.toString("utf8"));
  } catch {
    return { statuscode: StatusCode.UnknownError, statusmsg: "reply body is not JSON", data: {} };
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) {
    return { statuscode: StatusCode.UnknownError, statusmsg: "reply body is not a JSON object", data: {} };
  }
  const b = doc as { statuscode?: unknown; statusmsg?: unknown; data?: unknown };
  const statuscode =
    b.statuscode === undefined ? 0 : Number.isInteger(b.statuscode) ? (b.statuscode as number) : 5;
  const statusmsg = typeof b.statusmsg === "string" ? b.statusmsg : statuscode === 0 ? "OK" : "";
  const data =
    b.data !== null && typeof b.data === "object" && !Array.isArray(b.data)
      ? (b.data as Record<string, unknown>)
      : {};
  return { statuscode, statusmsg, data };
}

/** Opens replies off the calling thread; `then` runs on the calling thread, in any order. */
export interface ReplyOpener {
  open(bytes: Uint8Array, then: (o: OpenedReply) => void): void;
  /** Resolves once every reply handed to open() has been delivered. */
  drain(): Promise<void>;
}

type WireOpened =
  | { ok: true; sender: string; requestId: string; agent: string; timeNs: number; message: Uint8Array }
  | { ok: false; reason: DropReason; detail: string };

// Replies per message to a worker: large enough that postMessage costs little per reply,
// small enough that the first replies are not held back long.
const POOL_BATCH = 128;
// A worker with work queued that has answered nothing for this long is presumed stuck;
// a new one gets longer to load its modules on a busy machine.
const STALL_MS = 10_000;
const START_MS = 60_000;

/**
 * Which worker opens a reply. A transport message ends with its headers, whose last
 * string is normally the sender (`..."sender":"node1"}}`), so the same node's replies
 * go to the same worker and hit that worker's token and key caches on every later
 * request. Only a routing hint: the worker checks everything.
 */
function affinity(bytes: Uint8Array, n: number): number {
  let end = bytes.length - 1;
  while (end >= 0 && bytes[end] !== 34) end--; // closing quote of the last string
  let start = end - 1;
  while (start >= 0 && bytes[start] !== 34 && end - start < 256) start--;
  let h = 0x811c9dc5;
  for (let i = Math.max(0, start); i < end; i++) h = Math.imul(h ^ (bytes[i] as number), 0x01000193);
  return (h >>> 0) % n;
}

function fromWire(r: WireOpened): OpenedReply {
  return r.ok
    ? { ...r, message: Buffer.from(r.message.buffer, r.message.byteOffset, r.message.byteLength) }
    : r;
}

const pools = new Map<string, WorkerPool<OpenedReply>>();
let poolFailures = 0;

/** How many verifier threads failed (errored, exited or stalled) in this process. */
export function replyPoolFailures(): number {
  return poolFailures;
}

/** Worker-thread side of the pool: its entry, called with the issuer keys. */
export function runReplyWorker(issuers: string[]): void {
  const trust = issuerTrust(issuers);
  serveWorkerPool((items) => ({ answer: items.map((b) => openReply(b, trust)) satisfies WireOpened[] }));
}

export interface ReplyPoolOptions {
  /** verifier threads (default: one per CPU) */
  threads?: number;
  /** a thread holding replies that has answered nothing for this long is replaced (default 10 s) */
  stallMs?: number;
}

/**
 * Worker threads (core/util's WorkerPool) that each run openReply with full signature
 * checks (issuer trust, purpose, identity match, reply signature); each keeps its own
 * verified-token and public-key caches, and the same sender's replies go to the same
 * thread. A failed thread's replies are opened on the calling thread: a broken pool may
 * cost speed, never replies. One pool per issuer set (and options), shared by every opener.
 */
function verifierPool(issuers: readonly string[], o: ReplyPoolOptions): WorkerPool<OpenedReply> {
  const threads = o.threads ?? Math.max(1, availableParallelism());
  const stallMs = o.stallMs ?? STALL_MS;
  const key = `${issuers.join(",")}/${threads}/${stallMs}`;
  const have = pools.get(key);
  if (have) return have;
  const inline = issuerTrust([...issuers]);
  const pool: WorkerPool<OpenedReply> = new WorkerPool<OpenedReply>({
    url: import.meta.url,
    entry: "runReplyWorker",
    workerData: [...issuers],
    size: threads,
    batch: POOL_BATCH,
    route: affinity,
    inline: (b) => openReply(b, inline),
    results: (answer) => (answer as WireOpened[]).map(fromWire),
    stallMs,
    startupMs: START_MS,
    onFailure: (why, _replies, disabled) => {
      poolFailures++;
      // the pool has no logger of its own; a process warning reaches stderr by default
      process.emitWarning(
        `reply verifier thread failed (${why}); its replies are verified on the main thread instead`,
        "ChorusWarning",
      );
      // a new opener then starts a fresh pool
      if (disabled && pools.get(key) === pool) pools.delete(key);
    },
  });
  pools.set(key, pool);
  return pool;
}

/**
 * A pooled opener when replies are to be signature-checked with a plain ChoriaSecurity
 * (whose checks issuerTrust reproduces) and the code runs as built JS (worker threads
 * cannot load the TypeScript sources); otherwise undefined and callers open replies inline.
 */
export function replyOpener(
  trust: ReplyTrust | undefined,
  o: ReplyPoolOptions = {},
): ReplyOpener | undefined {
  if (!(trust instanceof ChoriaSecurity) || Object.getPrototypeOf(trust) !== ChoriaSecurity.prototype)
    return undefined;
  if (!import.meta.url.endsWith(".js")) return undefined;
  const pool = verifierPool(trust.issuers, o);
  return {
    open: (bytes, then) => pool.submit(bytes, then),
    drain: () => pool.idle(),
  };
}
