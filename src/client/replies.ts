import { availableParallelism } from "node:os";
import { parentPort, Worker, workerData } from "node:worker_threads";
import { decodeReply, decodeSecureReply, decodeTransport, StatusCode } from "../protocol/index.js";
import { ChoriaSecurity, SecurityError, verify, verifyToken } from "../security/index.js";
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

/**
 * Unwraps one reply message (transport → secure reply → reply). The hash is always
 * checked; the signature only when `trust` is given. This is the whole per-reply
 * crypto cost, behind a bytes-in/data-out boundary so it can move to workers.
 */
export function openReply(bytes: Uint8Array, trust?: ReplyTrust): OpenedReply {
  let secureBytes: Buffer;
  let secure: ReturnType<typeof decodeSecureReply>;
  let decoded: ReturnType<typeof decodeReply>;
  try {
    secureBytes = decodeTransport(bytes).inner;
    secure = decodeSecureReply(secureBytes);
    if (!secure.hashOk) return { ok: false, reason: "hash", detail: "reply hash mismatch" };
    decoded = decodeReply(secure.replyBytes);
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

export interface RpcReplyFields {
  statuscode: number;
  statusmsg: string;
  data: Record<string, unknown>;
}

/**
 * Parses an mcorpc reply body with Choria's defaults (0, "OK", {}). Only cheap type
 * checks: a body that is not an object counts as an unknown error rather than a drop,
 * so the operator sees that the node answered.
 */
export function parseRpcReplyBody(message: Buffer): RpcReplyFields {
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

interface PoolJob {
  buf: ArrayBuffer;
  ends: number[];
  thens: ((o: OpenedReply) => void)[];
}

type WireOpened =
  | { ok: true; sender: string; requestId: string; agent: string; timeNs: number; message: Uint8Array }
  | { ok: false; reason: DropReason; detail: string };

// Replies per message to a worker: large enough that postMessage costs little per reply,
// small enough that the first replies are not held back long.
const POOL_BATCH = 128;

/**
 * Worker threads that each run openReply with full signature checks (issuer trust,
 * purpose, identity match, reply signature) over batches of raw reply bytes. Each
 * worker keeps its own verified-token and public-key caches.
 */
class ReplyVerifierPool {
  private readonly workers: Worker[] = [];
  private readonly queues: ((results: WireOpened[]) => void)[][] = [];
  private next = 0;
  private pending = 0;
  private waiters: (() => void)[] = [];

  constructor(issuers: readonly string[], size: number) {
    // eval'd CommonJS stub: loads this very module (built JS) in the worker
    const code = `require("node:worker_threads"); import(require("node:worker_threads").workerData.url).then((m) => m.runReplyWorker());`;
    for (let i = 0; i < size; i++) {
      const w = new Worker(code, { eval: true, workerData: { url: import.meta.url, issuers: [...issuers] } });
      const queue: ((results: WireOpened[]) => void)[] = [];
      w.on("message", (results: WireOpened[]) => queue.shift()?.(results));
      // after the listener: adding one re-refs the port, and an idle pool must not
      // keep a CLI process alive
      w.unref();
      this.workers.push(w);
      this.queues.push(queue);
    }
  }

  run(job: PoolJob): void {
    const k = this.next++ % this.workers.length;
    this.pending++;
    (this.queues[k] as ((r: WireOpened[]) => void)[]).push((results) => {
      for (let i = 0; i < results.length; i++) {
        const r = results[i] as WireOpened;
        const then = job.thens[i] as (o: OpenedReply) => void;
        if (r.ok)
          then({ ...r, message: Buffer.from(r.message.buffer, r.message.byteOffset, r.message.byteLength) });
        else then(r);
      }
      if (--this.pending === 0) for (const w of this.waiters.splice(0)) w();
    });
    (this.workers[k] as Worker).postMessage({ buf: job.buf, ends: job.ends }, [job.buf]);
  }

  idle(): Promise<void> {
    return this.pending === 0 ? Promise.resolve() : new Promise((r) => this.waiters.push(r));
  }
}

const pools = new Map<string, ReplyVerifierPool>();

/** Worker-thread side of the pool (started by the eval'd stub above). */
export function runReplyWorker(): void {
  const port = parentPort;
  if (!port) return;
  const data = workerData as { issuers: string[] };
  const trust = issuerTrust(data.issuers);
  port.on("message", (m: { buf: ArrayBuffer; ends: number[] }) => {
    const all = new Uint8Array(m.buf);
    const out: WireOpened[] = [];
    let start = 0;
    for (const end of m.ends) {
      out.push(openReply(all.subarray(start, end), trust));
      start = end;
    }
    port.postMessage(out);
  });
}

/**
 * A pooled opener when replies are to be signature-checked with a plain ChoriaSecurity
 * (whose checks issuerTrust reproduces) and the code runs as built JS (worker threads
 * cannot load the TypeScript sources); otherwise undefined and callers open replies inline.
 */
export function replyOpener(trust: ReplyTrust | undefined): ReplyOpener | undefined {
  if (!(trust instanceof ChoriaSecurity) || Object.getPrototypeOf(trust) !== ChoriaSecurity.prototype)
    return undefined;
  if (!import.meta.url.endsWith(".js")) return undefined;
  const key = trust.issuers.join(",");
  let pool = pools.get(key);
  if (!pool) {
    pool = new ReplyVerifierPool(trust.issuers, Math.max(1, availableParallelism()));
    pools.set(key, pool);
  }
  const p = pool;
  let batch: Uint8Array[] = [];
  let thens: ((o: OpenedReply) => void)[] = [];
  let scheduled = false;
  const flush = (): void => {
    scheduled = false;
    if (batch.length === 0) return;
    const size = batch.reduce((n, b) => n + b.byteLength, 0);
    const buf = new Uint8Array(size);
    const ends: number[] = [];
    let at = 0;
    for (const b of batch) {
      buf.set(b, at);
      at += b.byteLength;
      ends.push(at);
    }
    p.run({ buf: buf.buffer, ends, thens });
    batch = [];
    thens = [];
  };
  return {
    open(bytes, then) {
      batch.push(bytes);
      thens.push(then);
      if (batch.length >= POOL_BATCH) flush();
      else if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    },
    async drain() {
      flush();
      await p.idle();
    },
  };
}
