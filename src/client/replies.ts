import { availableParallelism } from "node:os";
import { parentPort, Worker, workerData } from "node:worker_threads";
import {
  decodeReply,
  decodeSecureReply,
  decodeTransport,
  jsonDepthExceeds,
  MAX_JSON_DEPTH,
  StatusCode,
} from "../core/protocol/index.js";
import { ChoriaSecurity, SecurityError, verify, verifyToken } from "../core/security/index.js";
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
    secureBytes = decodeTransport(bytes, LIGHT).inner;
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

interface PoolJob {
  /** the raw replies, kept so they can be opened inline if the worker fails */
  items: Uint8Array[];
  thens: ((o: OpenedReply) => void)[];
}

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

function deliver(job: PoolJob, results: WireOpened[]): void {
  for (let i = 0; i < results.length; i++) {
    const r = results[i] as WireOpened;
    const then = job.thens[i] as (o: OpenedReply) => void;
    if (r.ok)
      then({ ...r, message: Buffer.from(r.message.buffer, r.message.byteOffset, r.message.byteLength) });
    else then(r);
  }
}

class VerifierThread {
  readonly jobs: PoolJob[] = [];
  lastProgress = performance.now();
  private readonly worker: Worker;
  private readonly created = performance.now();
  private ready = false;
  private dead = false;

  constructor(
    issuers: readonly string[],
    private readonly onDone: () => void,
    private readonly onFail: (t: VerifierThread, why: string) => void,
  ) {
    // eval'd CommonJS stub: loads this very module (built JS) in the worker
    const code = `require("node:worker_threads"); import(require("node:worker_threads").workerData.url).then((m) => m.runReplyWorker());`;
    this.worker = new Worker(code, {
      eval: true,
      workerData: { url: import.meta.url, issuers: [...issuers] },
    });
    this.worker.on("message", (results: WireOpened[] | "ready") => {
      if (this.dead) return; // its jobs were already opened inline
      if (results === "ready") {
        this.ready = true;
        this.lastProgress = performance.now();
        return;
      }
      const job = this.jobs.shift();
      this.lastProgress = performance.now();
      if (job) deliver(job, results);
      this.onDone();
    });
    this.worker.on("error", (err) => this.fail(`error: ${err.message}`));
    this.worker.on("exit", (code) => this.fail(`exited with code ${code}`));
    // after the listeners: adding one re-refs the port, and an idle pool must not
    // keep a CLI process alive
    this.worker.unref();
  }

  get alive(): boolean {
    return !this.dead;
  }

  send(job: PoolJob): void {
    if (this.jobs.length === 0 && this.ready) this.lastProgress = performance.now();
    this.jobs.push(job);
    let size = 0;
    for (const b of job.items) size += b.byteLength;
    const buf = Buffer.allocUnsafeSlow(size);
    const ends: number[] = [];
    let at = 0;
    for (const b of job.items) {
      at += (Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength)).copy(buf, at);
      ends.push(at);
    }
    this.worker.postMessage({ buf: buf.buffer, ends }, [buf.buffer]);
  }

  stalled(now: number): boolean {
    if (this.jobs.length === 0) return false;
    return this.ready ? now - this.lastProgress > STALL_MS : now - this.created > START_MS;
  }

  fail(why: string): void {
    if (this.dead) return;
    this.dead = true;
    void this.worker.terminate();
    this.onFail(this, why);
  }
}

/**
 * Worker threads that each run openReply with full signature checks (issuer trust,
 * purpose, identity match, reply signature) over batches of raw reply bytes. Each
 * worker keeps its own verified-token and public-key caches. A worker that errors,
 * exits or stalls is dropped and its replies are opened on the calling thread: a
 * broken pool may cost speed, never replies.
 */
class ReplyVerifierPool {
  private readonly threads: VerifierThread[] = [];
  private readonly inline: ReplyTrust;
  private pending = 0;
  private waiters: (() => void)[] = [];
  private watchdog: NodeJS.Timeout;

  constructor(issuers: readonly string[], size: number) {
    this.inline = issuerTrust([...issuers]);
    for (let i = 0; i < size; i++)
      this.threads.push(
        new VerifierThread(
          issuers,
          () => this.done(),
          (t, why) => this.failed(t, why),
        ),
      );
    this.watchdog = setInterval(() => {
      const now = performance.now();
      for (const t of this.threads) if (t.stalled(now)) t.fail("stalled");
    }, 1000);
    this.watchdog.unref();
  }

  get usable(): boolean {
    return this.threads.some((t) => t.alive);
  }

  /** Replies are grouped per worker by affinity, then sent as one job per group. */
  run(items: Uint8Array[], thens: ((o: OpenedReply) => void)[]): void {
    const live = this.threads.filter((t) => t.alive);
    if (live.length === 0) {
      this.openInline({ items, thens });
      return;
    }
    const groups = live.map((): PoolJob => ({ items: [], thens: [] }));
    for (let i = 0; i < items.length; i++) {
      const item = items[i] as Uint8Array;
      const g = groups[affinity(item, live.length)] as PoolJob;
      g.items.push(item);
      g.thens.push(thens[i] as (o: OpenedReply) => void);
    }
    for (let k = 0; k < live.length; k++) {
      const g = groups[k] as PoolJob;
      if (g.items.length === 0) continue;
      this.pending++;
      (live[k] as VerifierThread).send(g);
    }
  }

  /** Makes every thread fail as a crash would (tests). */
  failAll(): void {
    for (const t of this.threads) t.fail("failed on purpose (test)");
  }

  idle(): Promise<void> {
    return this.pending === 0 ? Promise.resolve() : new Promise((r) => this.waiters.push(r));
  }

  private done(): void {
    if (--this.pending === 0) for (const w of this.waiters.splice(0)) w();
  }

  private openInline(job: PoolJob): void {
    for (let i = 0; i < job.items.length; i++)
      (job.thens[i] as (o: OpenedReply) => void)(openReply(job.items[i] as Uint8Array, this.inline));
  }

  private failed(t: VerifierThread, why: string): void {
    poolFailures++;
    // the pool has no logger of its own; a process warning reaches stderr by default
    process.emitWarning(
      `reply verifier thread ${why}; its replies are verified on the main thread instead`,
      "ChorusWarning",
    );
    for (const job of t.jobs.splice(0)) {
      this.openInline(job);
      this.done();
    }
    if (!this.usable) {
      clearInterval(this.watchdog);
      for (const [k, p] of pools) if (p === this) pools.delete(k);
    }
  }
}

const pools = new Map<string, ReplyVerifierPool>();
let poolFailures = 0;

/** How many verifier threads failed (errored, exited or stalled) in this process. */
export function replyPoolFailures(): number {
  return poolFailures;
}

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
  port.postMessage("ready");
}

/** Test hook: makes every live verifier thread of every pool fail as if it had crashed. */
export function failReplyPoolsForTest(): void {
  for (const p of pools.values()) p.failAll();
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
    p.run(batch, thens);
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
