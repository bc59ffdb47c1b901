import { parentPort, Worker } from "node:worker_threads";

/** Byte strings packed into one ArrayBuffer of its own (so it can be transferred): part i ends at ends[i]. */
export interface PackedBuffers {
  buf: ArrayBuffer;
  ends: number[];
}

/** Packs `parts` (strings as UTF-8) into one transferable buffer: one postMessage, no copies on the way. */
export function packBuffers(parts: readonly (Uint8Array | string)[]): PackedBuffers {
  let size = 0;
  for (const p of parts) size += typeof p === "string" ? Buffer.byteLength(p) : p.byteLength;
  // allocUnsafeSlow: an ArrayBuffer of its own (not the shared pool), so it can be transferred
  const buf = Buffer.allocUnsafeSlow(size);
  const ends: number[] = new Array<number>(parts.length);
  let at = 0;
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i] as Uint8Array | string;
    if (typeof p === "string") at += buf.write(p, at, "utf8");
    else {
      buf.set(p, at);
      at += p.byteLength;
    }
    ends[i] = at;
  }
  return { buf: buf.buffer as ArrayBuffer, ends };
}

/** The parts of a packed buffer, as views into it (no copies). */
export function unpackBuffers(p: PackedBuffers): Buffer[] {
  const out: Buffer[] = new Array<Buffer>(p.ends.length);
  let start = 0;
  for (let i = 0; i < p.ends.length; i++) {
    const end = p.ends[i] as number;
    out[i] = Buffer.from(p.buf, start, end - start);
    start = end;
  }
  return out;
}

/** A worker's answer to one batch: anything structured-clonable, and the buffers in it to transfer. */
export interface BatchAnswer {
  answer: unknown;
  transfer?: ArrayBuffer[];
}

/** main → worker: one batch, packed */
interface BatchMsg extends PackedBuffers {
  seq: number;
}
/** worker → main */
type WorkerMsg = { seq: number; answer: unknown } | { ready: true };

/**
 * The worker-thread side of a WorkerPool: the pool's `entry` export calls this with its
 * batch handler. Says "ready" once here, i.e. once the worker's modules are loaded.
 */
export function serveWorkerPool(handle: (items: Buffer[]) => BatchAnswer): void {
  const port = parentPort;
  if (!port) throw new Error("serveWorkerPool runs in a worker thread");
  port.on("message", (m: BatchMsg) => {
    const { answer, transfer } = handle(unpackBuffers(m));
    port.postMessage({ seq: m.seq, answer } satisfies WorkerMsg, transfer ?? []);
  });
  port.postMessage({ ready: true } satisfies WorkerMsg);
}

export interface WorkerPoolOptions<R> {
  /**
   * The module the worker threads import, as built JS (worker threads cannot load the
   * TypeScript sources): usually the caller's import.meta.url.
   */
  url: string;
  /** Its export the workers call with `workerData`; it calls serveWorkerPool. */
  entry: string;
  /** Plain (structured-clonable) data for `entry`. */
  workerData?: unknown;
  /** Worker threads. */
  size: number;
  /**
   * Items per message to a worker: large enough that postMessage costs little per item,
   * small enough that the first items are not held back long (default 128).
   */
  batch?: number;
  /**
   * Which worker takes an item, from 0 to workers−1 (e.g. by sender, so a worker's caches
   * stay warm); a batch is split by it. Default: the whole batch to the least busy worker.
   */
  route?: (item: Uint8Array, workers: number) => number;
  /** Hand results back in submission order (a reorder buffer); not with `route`. Default: as they come. */
  ordered?: boolean;
  /** Does one item on the calling thread: while no worker can, and for a failed worker's items. */
  inline: (item: Uint8Array) => R;
  /** Turns a worker's answer to a batch of n items into their n results (calling thread). */
  results: (answer: unknown, n: number) => R[];
  /** A ready worker holding work that has answered nothing for this long is given up (default 10 s). */
  stallMs?: number | undefined;
  /** A worker still loading its modules gets this long (default 30 s: a loaded machine is slow). */
  startupMs?: number;
  /** After this many failed workers within a minute the pool stops using threads (default 3). */
  maxFailures?: number | undefined;
  /** Each failed worker: why, how many of its items were done inline instead, whether the pool gave up. */
  onFailure?: ((why: string, items: number, disabled: boolean) => void) | undefined;
}

interface Job<R> {
  seq: number;
  /** the original items, kept to do them inline if the worker fails */
  items: Uint8Array[];
  dones: ((r: R) => void)[];
}

interface Thread<R> {
  w: Worker;
  jobs: Job<R>[];
  created: number;
  lastProgress: number;
  /** modules loaded: until then a slow start is not a stall */
  ready: boolean;
  dead: boolean;
}

// Worker threads cannot load TypeScript: this CommonJS stub imports the pool's module as built JS.
const STUB = `const { workerData: d } = require("node:worker_threads"); import(d.url).then((m) => m[d.entry](d.data));`;

/**
 * Worker threads that process byte strings in batches (one transferred buffer per batch)
 * and hand each result to the callback it was submitted with. A worker that errors,
 * exits or stalls is replaced and its items are done inline, so a broken pool may cost
 * speed, never results; after `maxFailures` failures in a minute everything is done
 * inline. Idle workers do not keep the process alive.
 */
export class WorkerPool<R> {
  private readonly o: WorkerPoolOptions<R>;
  private readonly threads: Thread<R>[] = [];
  private batch: Uint8Array[] = [];
  private dones: ((r: R) => void)[] = [];
  private scheduled = false;
  private seq = 0;
  private nextDeliver = 0;
  private readonly finished = new Map<number, { job: Job<R>; results: R[] }>();
  private _inFlight = 0;
  private _byWorkers = 0;
  private failures: number[] = [];
  private _disabled = false;
  private closed = false;
  private readonly timer: NodeJS.Timeout;
  private waiters: (() => void)[] = [];

  constructor(o: WorkerPoolOptions<R>) {
    if (o.ordered && o.route) throw new Error("a WorkerPool is either ordered or routed");
    this.o = o;
    for (let i = 0; i < o.size; i++) this.threads.push(this.spawn());
    const stallMs = o.stallMs ?? 10_000;
    this.timer = setInterval(() => this.watch(stallMs), Math.max(10, Math.min(1000, stallMs / 4)));
    this.timer.unref();
  }

  /** Items submitted and not yet handed back. */
  get inFlight(): number {
    return this._inFlight;
  }

  /** Items a worker thread did (the rest were done inline). */
  get byWorkers(): number {
    return this._byWorkers;
  }

  /** True once the pool gave up on threads (too many failures). */
  get disabled(): boolean {
    return this._disabled;
  }

  /** Live workers that have loaded their modules. */
  get ready(): number {
    return this.threads.filter((t) => !t.dead && t.ready).length;
  }

  /** Live workers. */
  get size(): number {
    return this.threads.filter((t) => !t.dead).length;
  }

  /** Queues `item`; `done` gets its result, from a worker or inline. */
  submit(item: Uint8Array, done: (r: R) => void): void {
    this._inFlight++;
    this.batch.push(item);
    this.dones.push(done);
    if (this.batch.length >= (this.o.batch ?? 128)) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Resolves once everything submitted so far has been handed back. */
  async idle(): Promise<void> {
    this.flush();
    if (this._inFlight === 0) return;
    await new Promise<void>((r) => this.waiters.push(r));
  }

  /** Stops the workers; what they still held is done inline and handed back first. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.flush();
    clearInterval(this.timer);
    this.closed = true;
    const threads = this.threads.splice(0);
    for (const t of threads) {
      t.dead = true;
      for (const j of t.jobs.splice(0)) this.runInline(j);
    }
    await Promise.allSettled(threads.map((t) => t.w.terminate()));
  }

  private spawn(): Thread<R> {
    const now = Date.now();
    const w = new Worker(STUB, {
      eval: true,
      workerData: { url: this.o.url, entry: this.o.entry, data: this.o.workerData },
    });
    const t: Thread<R> = { w, jobs: [], created: now, lastProgress: now, ready: false, dead: false };
    w.on("message", (m: WorkerMsg) => {
      if (t.dead) return; // its jobs were already done inline
      t.lastProgress = Date.now();
      if ("ready" in m) t.ready = true;
      else this.answered(t, m.seq, m.answer);
    });
    w.on("error", (err) => this.fail(t, `worker error: ${err.message}`));
    w.on("exit", (code) => this.fail(t, `worker exited (code ${code})`));
    // after the listeners (adding one re-refs the port): an idle pool must not keep the process up
    w.unref();
    return t;
  }

  private flush(): void {
    this.scheduled = false;
    if (this.batch.length === 0) return;
    const items = this.batch;
    const dones = this.dones;
    this.batch = [];
    this.dones = [];
    const live = this._disabled || this.closed ? [] : this.threads.filter((t) => !t.dead);
    if (live.length === 0) {
      this.runInline({ seq: this.seq++, items, dones });
      return;
    }
    const route = this.o.route;
    if (!route) {
      // the live worker with the least work (a slow one gets less)
      let best = live[0] as Thread<R>;
      for (const t of live) if (t.jobs.length < best.jobs.length) best = t;
      this.send(best, { seq: this.seq++, items, dones });
      return;
    }
    const groups = live.map((): Job<R> => ({ seq: 0, items: [], dones: [] }));
    for (let i = 0; i < items.length; i++) {
      const item = items[i] as Uint8Array;
      const g = groups[route(item, live.length)] as Job<R>;
      g.items.push(item);
      g.dones.push(dones[i] as (r: R) => void);
    }
    for (let k = 0; k < live.length; k++) {
      const g = groups[k] as Job<R>;
      if (g.items.length === 0) continue;
      g.seq = this.seq++;
      this.send(live[k] as Thread<R>, g);
    }
  }

  private send(t: Thread<R>, job: Job<R>): void {
    if (t.jobs.length === 0) t.lastProgress = Date.now();
    t.jobs.push(job);
    const packed = packBuffers(job.items);
    t.w.postMessage({ seq: job.seq, ...packed } satisfies BatchMsg, [packed.buf]);
  }

  private answered(t: Thread<R>, seq: number, answer: unknown): void {
    const at = t.jobs.findIndex((j) => j.seq === seq);
    if (at < 0) return;
    const job = t.jobs.splice(at, 1)[0] as Job<R>;
    this._byWorkers += job.items.length;
    this.complete(job, this.o.results(answer, job.items.length));
  }

  private runInline(job: Job<R>): void {
    this.complete(
      job,
      job.items.map((m) => this.o.inline(m)),
    );
  }

  private complete(job: Job<R>, results: R[]): void {
    if (!this.o.ordered) this.deliver(job, results);
    else {
      this.finished.set(job.seq, { job, results });
      for (let f = this.finished.get(this.nextDeliver); f; f = this.finished.get(this.nextDeliver)) {
        this.finished.delete(this.nextDeliver++);
        this.deliver(f.job, f.results);
      }
    }
    if (this._inFlight === 0 && this.batch.length === 0) for (const w of this.waiters.splice(0)) w();
  }

  private deliver(job: Job<R>, results: R[]): void {
    this._inFlight -= job.items.length;
    for (let i = 0; i < job.dones.length; i++) (job.dones[i] as (r: R) => void)(results[i] as R);
  }

  private watch(stallMs: number): void {
    const now = Date.now();
    for (const t of [...this.threads]) {
      if (t.dead || t.jobs.length === 0) continue;
      if (t.ready ? now - t.lastProgress > stallMs : now - t.created > (this.o.startupMs ?? 30_000))
        this.fail(
          t,
          `no progress for ${((now - (t.ready ? t.lastProgress : t.created)) / 1000).toFixed(1)} s`,
        );
    }
  }

  private fail(t: Thread<R>, why: string): void {
    if (t.dead) return;
    t.dead = true;
    void t.w.terminate();
    let items = 0;
    for (const j of t.jobs.splice(0)) {
      items += j.items.length;
      this.runInline(j);
    }
    const now = Date.now();
    this.failures = [...this.failures.filter((at) => now - at < 60_000), now];
    const i = this.threads.indexOf(t);
    if (this.failures.length >= (this.o.maxFailures ?? 3)) {
      // a pool that keeps failing (e.g. its module cannot load) is not worth respawning
      this._disabled = true;
      clearInterval(this.timer);
      for (const s of this.threads.splice(0)) {
        if (s === t || s.dead) continue;
        s.dead = true;
        void s.w.terminate();
        for (const j of s.jobs.splice(0)) {
          items += j.items.length;
          this.runInline(j);
        }
      }
    } else if (i >= 0 && !this.closed) {
      this.threads[i] = this.spawn();
    }
    this.o.onFailure?.(why, items, this._disabled);
  }
}
