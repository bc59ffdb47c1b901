import { parentPort, Worker, workerData } from "node:worker_threads";
import {
  decodeReply,
  decodeRequest,
  decodeSecureReply,
  decodeSecureRequest,
  decodeTransport,
} from "../core/protocol/index.js";
import type { AdapterOutput } from "./adapters.js";

/** What converting one ingest message needs: plain data, so a worker thread can get it. */
export interface IngestDecodeOptions {
  /** choria:adapters:<type>:output:1 */
  protocol: string;
  ingestProtocol: "request" | "reply";
  /** `%s` is replaced by the sender */
  streamTopic: string;
}

/** One ingest message ready for its stream: where it goes and the record's JSON bytes. */
export interface IngestItem {
  subject: string;
  record: Buffer;
}

const SUBJECT_TOKEN = /^[^\s*>.]+(\.[^\s*>.]+)*$/;

/** Decodes one ingest message into its stream record; throws on anything unusable. */
export function convertIngest(bytes: Uint8Array, o: IngestDecodeOptions): AdapterOutput {
  // Adapters move data, they do not authorize it: signatures are not checked here
  // (as in go-choria); the broker's ACLs decided who could publish to the subject.
  // Like go-choria (strict mode off), layers that allow it are checked for the fields
  // used rather than against the full schema: it is most of the decode cost.
  const { transport, inner } = decodeTransport(bytes, { strict: false });
  let sender: string;
  let requestid: string;
  let message: Buffer;
  if (o.ingestProtocol === "request") {
    const { requestBytes } = decodeSecureRequest(inner);
    const { request, message: m } = decodeRequest(requestBytes);
    sender = request.sender || transport.headers.sender || "";
    requestid = request.id;
    message = m;
  } else {
    const { replyBytes } = decodeSecureReply(inner, { strict: false });
    const { reply, message: m } = decodeReply(replyBytes, { strict: false });
    sender = reply.sender || transport.headers.sender || "";
    requestid = reply.request;
    message = m;
  }
  // The sender becomes part of a subject: it must be one or more plain tokens.
  if (!SUBJECT_TOKEN.test(sender)) throw new Error(`sender "${sender}" is not usable in a subject`);
  return {
    protocol: o.protocol,
    data: message.toString("utf8"),
    sender,
    time: Math.floor(Date.now() / 1000),
    requestid,
  };
}

/** Inline and worker decoding share this, so both skip exactly the same garbage. */
export function decodeIngest(bytes: Uint8Array, o: IngestDecodeOptions): IngestItem | undefined {
  try {
    const out = convertIngest(bytes, o);
    return { subject: o.streamTopic.replace("%s", out.sender), record: Buffer.from(JSON.stringify(out)) };
  } catch {
    return undefined;
  }
}

/** main → worker: a batch of messages in one transferred buffer, message i ends at ends[i] */
interface BatchMsg {
  seq: number;
  buf: ArrayBuffer;
  ends: number[];
}
/** worker → main: subject per message (null = garbage), records in one transferred buffer */
interface ResultMsg {
  seq: number;
  subjects: (string | null)[];
  buf: ArrayBuffer;
  ends: number[];
}
/** worker → main once its modules are loaded */
interface ReadyMsg {
  ready: true;
}
/** test hook: block the worker thread, as a wedged decoder would */
interface StallMsg {
  stallMs: number;
}

/** Worker-thread side (started by the eval'd stub in IngestPool). */
export function runAdapterIngestWorker(): void {
  const port = parentPort;
  if (!port) return;
  const o = (workerData as { decode: IngestDecodeOptions }).decode;
  port.on("message", (m: BatchMsg | StallMsg) => {
    if ("stallMs" in m) {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, m.stallMs);
      return;
    }
    const all = new Uint8Array(m.buf);
    const subjects: (string | null)[] = [];
    const records: string[] = [];
    let start = 0;
    let size = 0;
    for (const end of m.ends) {
      let json = "";
      let subject: string | null = null;
      try {
        const out = convertIngest(all.subarray(start, end), o);
        json = JSON.stringify(out);
        subject = o.streamTopic.replace("%s", out.sender);
      } catch {
        // garbage: counted as bad on the main thread
      }
      start = end;
      subjects.push(subject);
      records.push(json);
      size += Buffer.byteLength(json);
    }
    // one buffer for the whole batch, transferred rather than cloned
    const buf = Buffer.allocUnsafeSlow(size);
    const ends: number[] = [];
    let at = 0;
    for (const r of records) {
      at += buf.write(r, at, "utf8");
      ends.push(at);
    }
    const ab = buf.buffer as ArrayBuffer;
    port.postMessage({ seq: m.seq, subjects, buf: ab, ends } satisfies ResultMsg, [ab]);
  });
  port.postMessage({ ready: true } satisfies ReadyMsg);
}

export interface IngestPoolOptions {
  size: number;
  decode: IngestDecodeOptions;
  /** a worker with pending batches and no result for this long is given up (default 10 s) */
  stallMs?: number;
  /** after this many worker failures within a minute the pool is disabled (default 3) */
  maxFailures?: number;
  /** called for each failed worker, after its pending messages were decoded inline */
  onFailure?: (why: string, messages: number, disabled: boolean) => void;
}

interface Batch {
  seq: number;
  /** the original bytes, kept to decode inline if the worker fails */
  msgs: Uint8Array[];
}

interface Slot {
  w: Worker;
  pending: Batch[];
  lastProgress: number;
  dead: boolean;
  /** modules loaded: until then a slow start (a loaded machine) is not a stall */
  ready: boolean;
}

// A thread still loading its modules gets this long before it counts as stalled.
const STARTUP_MS = 30_000;

// Messages per postMessage: large enough that its cost is small per message, small
// enough that a batch does not hold the first messages back noticeably.
export const INGEST_BATCH = 128;

/**
 * Decodes ingest messages in worker threads and hands the results back in submission
 * order (one reorder buffer, so the stream sees the order the broker received). A
 * worker that errors, exits or stalls has its pending messages decoded inline and is
 * replaced; too many failures disable the pool and everything is decoded inline.
 */
export class IngestPool {
  private readonly o: IngestPoolOptions;
  private readonly deliver: (items: (IngestItem | undefined)[]) => void;
  private readonly slots: Slot[] = [];
  private batch: Uint8Array[] = [];
  private scheduled = false;
  private seq = 0;
  private nextDeliver = 0;
  private readonly done = new Map<number, (IngestItem | undefined)[]>();
  private inFlight = 0;
  private _workerDecoded = 0;
  private failures: number[] = [];
  private _disabled = false;
  private closed = false;
  private readonly timer: NodeJS.Timeout;
  private waiters: (() => void)[] = [];

  constructor(o: IngestPoolOptions, deliver: (items: (IngestItem | undefined)[]) => void) {
    this.o = o;
    this.deliver = deliver;
    for (let i = 0; i < o.size; i++) this.slots.push(this.spawn());
    const stallMs = o.stallMs ?? 10_000;
    this.timer = setInterval(() => this.watch(stallMs), Math.max(10, Math.min(1000, stallMs / 4)));
    this.timer.unref();
  }

  /** Messages submitted and not yet handed back. */
  get decoding(): number {
    return this.inFlight;
  }

  /** Messages whose decoding a worker thread did (the rest fell back to inline). */
  get workerDecoded(): number {
    return this._workerDecoded;
  }

  get disabled(): boolean {
    return this._disabled;
  }

  /** Live worker threads that have loaded their modules. */
  get ready(): number {
    return this.slots.filter((s) => !s.dead && s.ready).length;
  }

  /** Live worker threads. */
  get size(): number {
    return this.slots.filter((s) => !s.dead).length;
  }

  submit(bytes: Uint8Array): void {
    this.inFlight++;
    this.batch.push(bytes);
    if (this.batch.length >= INGEST_BATCH) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Resolves once everything submitted so far has been handed back. */
  async idle(): Promise<void> {
    this.flush();
    if (this.inFlight === 0) return;
    await new Promise<void>((r) => this.waiters.push(r));
  }

  /** Stops the workers; what they still held is decoded inline and handed back first. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.flush();
    clearInterval(this.timer);
    const slots = this.slots.splice(0);
    for (const s of slots) {
      s.dead = true;
      for (const b of s.pending.splice(0)) this.inline(b);
    }
    this.closed = true;
    await Promise.allSettled(slots.map((s) => s.w.terminate()));
  }

  /** Test hook: ends worker `i` abruptly, as a crash would. */
  terminateWorker(i: number): Promise<number> {
    const s = this.slots[i];
    if (!s) throw new Error(`no ingest worker ${i}`);
    return s.w.terminate();
  }

  /** Test hook: blocks worker `i` for `ms`, as a wedged decoder would. */
  stallWorker(i: number, ms: number): void {
    const s = this.slots[i];
    if (!s) throw new Error(`no ingest worker ${i}`);
    s.w.postMessage({ stallMs: ms } satisfies StallMsg);
  }

  private spawn(): Slot {
    // Worker threads cannot load the TypeScript sources: this stub import()s this very
    // module as built JS (the caller only builds a pool when running from dist/).
    const code = `import(require("node:worker_threads").workerData.url).then((m) => m.runAdapterIngestWorker());`;
    const w = new Worker(code, { eval: true, workerData: { url: import.meta.url, decode: this.o.decode } });
    const slot: Slot = { w, pending: [], lastProgress: Date.now(), dead: false, ready: false };
    w.on("message", (r: ResultMsg | ReadyMsg) => {
      if ("ready" in r) {
        slot.ready = true;
        slot.lastProgress = Date.now();
      } else this.result(slot, r);
    });
    w.on("error", (err) => this.fail(slot, `worker error: ${err.message}`));
    w.on("exit", (code) => this.fail(slot, `worker exited (code ${code})`));
    // after the listeners (adding one re-refs the port): an idle pool must not keep the process up
    w.unref();
    return slot;
  }

  private flush(): void {
    this.scheduled = false;
    if (this.batch.length === 0) return;
    const b: Batch = { seq: this.seq++, msgs: this.batch };
    this.batch = [];
    const slot = this.pick();
    if (!slot) {
      this.inline(b);
      return;
    }
    let size = 0;
    for (const m of b.msgs) size += m.byteLength;
    // allocUnsafeSlow: an ArrayBuffer of its own (not the shared pool), so it can be transferred
    const buf = Buffer.allocUnsafeSlow(size);
    const ends: number[] = [];
    let at = 0;
    for (const m of b.msgs) {
      at += Buffer.from(m.buffer, m.byteOffset, m.byteLength).copy(buf, at);
      ends.push(at);
    }
    if (slot.pending.length === 0) slot.lastProgress = Date.now();
    slot.pending.push(b);
    const ab = buf.buffer as ArrayBuffer;
    slot.w.postMessage({ seq: b.seq, buf: ab, ends } satisfies BatchMsg, [ab]);
  }

  /** The live worker with the least work (a slow one gets less). */
  private pick(): Slot | undefined {
    if (this._disabled || this.closed) return undefined;
    let best: Slot | undefined;
    for (const s of this.slots) if (!s.dead && (!best || s.pending.length < best.pending.length)) best = s;
    return best;
  }

  private result(slot: Slot, r: ResultMsg): void {
    if (slot.dead) return; // already decoded inline
    const at = slot.pending.findIndex((b) => b.seq === r.seq);
    if (at < 0) return;
    slot.pending.splice(at, 1);
    slot.lastProgress = Date.now();
    this._workerDecoded += r.subjects.length;
    const items: (IngestItem | undefined)[] = new Array(r.subjects.length);
    let start = 0;
    for (let i = 0; i < r.subjects.length; i++) {
      const end = r.ends[i] as number;
      const subject = r.subjects[i];
      items[i] = subject == null ? undefined : { subject, record: Buffer.from(r.buf, start, end - start) };
      start = end;
    }
    this.complete(r.seq, items);
  }

  private inline(b: Batch): void {
    this.complete(
      b.seq,
      b.msgs.map((m) => decodeIngest(m, this.o.decode)),
    );
  }

  private complete(seq: number, items: (IngestItem | undefined)[]): void {
    this.done.set(seq, items);
    for (let ready = this.done.get(this.nextDeliver); ready; ready = this.done.get(this.nextDeliver)) {
      this.done.delete(this.nextDeliver++);
      this.inFlight -= ready.length;
      this.deliver(ready);
    }
    if (this.inFlight === 0 && this.batch.length === 0) for (const w of this.waiters.splice(0)) w();
  }

  private watch(stallMs: number): void {
    const now = Date.now();
    for (const s of [...this.slots]) {
      if (!s.dead && s.pending.length > 0 && now - s.lastProgress > (s.ready ? stallMs : STARTUP_MS))
        this.fail(s, `no progress for ${Math.round((now - s.lastProgress) / 1000)} s`);
    }
  }

  private fail(slot: Slot, why: string): void {
    if (slot.dead) return;
    slot.dead = true;
    void slot.w.terminate();
    const lost = slot.pending.splice(0);
    let messages = 0;
    for (const b of lost) {
      messages += b.msgs.length;
      this.inline(b);
    }
    const now = Date.now();
    this.failures = [...this.failures.filter((t) => now - t < 60_000), now];
    const i = this.slots.indexOf(slot);
    if (this.failures.length >= (this.o.maxFailures ?? 3)) {
      // A pool that keeps failing (e.g. its module cannot load) is not worth respawning.
      this._disabled = true;
      for (const s of this.slots.splice(0)) {
        if (s === slot) continue;
        s.dead = true;
        void s.w.terminate();
        for (const b of s.pending.splice(0)) {
          messages += b.msgs.length;
          this.inline(b);
        }
      }
    } else if (i >= 0 && !this.closed) {
      this.slots[i] = this.spawn();
    }
    this.o.onFailure?.(why, messages, this._disabled);
  }
}
