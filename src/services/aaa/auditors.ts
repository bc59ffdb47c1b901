import { createHash } from "node:crypto";
import { chmod, open, readFile, rename, rm, stat, type FileHandle } from "node:fs/promises";
import { jetstream, type JetStreamClient } from "@nats-io/jetstream";
import type { NatsConnection } from "../../core/connector/index.js";

/** io.choria.signer.v1.signature_audit, plus Chorus's `reason` and `claimed_callerid`. */
export interface AuditRecord {
  protocol: "io.choria.signer.v1.signature_audit";
  /** the verified caller after the signer's rewrite, or "unverified" */
  callerid: string;
  action: "allow" | "deny" | "unknown";
  site: string;
  /** unix seconds */
  time: number;
  /** the request as JSON (the rewritten one when the caller verified) */
  request: unknown;
  reason?: string;
  /** the callerid a request with a bad token or signature claimed */
  claimed_callerid?: string;
}

export interface Auditor {
  readonly name: string;
  /** Resolves only once the record is durably stored; the signer signs nothing before that. */
  audit(r: AuditRecord): Promise<void>;
  close(): Promise<void>;
}

type AuditorLog = (
  level: "info" | "warn" | "error" | "debug",
  msg: string,
  fields?: Record<string, unknown>,
) => void;

// ---------------------------------------------------------------------------
// group-committed append-only file

interface Pending {
  data: Buffer;
  resolve: () => void;
  reject: (e: Error) => void;
}

/**
 * Appends lines with one write and one fsync per batch: every waiter that queued while
 * the previous fsync ran shares the next one, so a burst of signs costs a few fsyncs.
 */
class GroupFile {
  private fh: FileHandle | undefined;
  private size = 0;
  private queue: Pending[] = [];
  private running: Promise<void> | undefined;
  private closed = false;

  constructor(
    readonly path: string,
    /** called with the batch size before writing; may rotate the file (returns after reopening) */
    private readonly beforeWrite?: (size: number, adding: number) => Promise<boolean>,
  ) {}

  get bytes(): number {
    return this.size;
  }

  append(data: Buffer): Promise<void> {
    if (this.closed) return Promise.reject(new Error(`${this.path} is closed`));
    return new Promise((resolve, reject) => {
      this.queue.push({ data, resolve, reject });
      this.running ??= this.drain();
    });
  }

  /** Runs `fn` between batches, with the file closed (rotation, compaction). */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.locked(async () => {
      await this.closeHandle();
      return fn();
    });
  }

  // one batch or exclusive job at a time
  private chain: Promise<void> = Promise.resolve();
  private locked<T>(fn: () => Promise<T>): Promise<T> {
    const r = this.chain.then(fn);
    this.chain = r.then(
      () => {},
      () => {},
    );
    return r;
  }

  async close(): Promise<void> {
    this.closed = true;
    while (this.running) await this.running;
    await this.closeHandle();
  }

  private async openHandle(): Promise<FileHandle> {
    if (this.fh) return this.fh;
    const fh = await open(this.path, "a", 0o600);
    try {
      // audit trails name callers and carry request data: never readable by others
      await chmod(this.path, 0o600);
      this.size = (await fh.stat()).size;
    } catch (err) {
      await fh.close();
      throw err;
    }
    this.fh = fh;
    return fh;
  }

  private async closeHandle(): Promise<void> {
    const fh = this.fh;
    this.fh = undefined;
    if (fh) await fh.close().catch(() => {});
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const batch = this.queue;
        this.queue = [];
        const buf = Buffer.concat(batch.map((p) => p.data));
        try {
          await this.locked(async () => {
            await this.openHandle();
            if (this.beforeWrite && (await this.beforeWrite(this.size, buf.length))) {
              await this.closeHandle();
            }
            const fh = await this.openHandle();
            await fh.write(buf);
            await fh.datasync();
            this.size += buf.length;
          });
          for (const p of batch) p.resolve();
        } catch (err) {
          // the handle may be broken (disk full, file removed): reopen on the next batch
          await this.closeHandle();
          const e = err instanceof Error ? err : new Error(String(err));
          for (const p of batch) p.reject(e);
        }
      }
    } finally {
      this.running = undefined;
    }
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------
// file auditor

export interface FileAuditorOptions {
  path: string;
  /** rotate before a write would take the file past this many bytes; 0 never rotates */
  rotateBytes?: number;
  /** rotated files kept as path.1 (newest) .. path.N (default 5) */
  keep?: number;
  onError?: (err: Error) => void;
}

/** JSON lines, one signature_audit record each, in a 0600 file rotated by size. */
export class FileAuditor implements Auditor {
  readonly name = "logfile";
  private readonly file: GroupFile;
  private readonly rotateBytes: number;
  private readonly keep: number;

  constructor(private readonly o: FileAuditorOptions) {
    this.rotateBytes = o.rotateBytes ?? 0;
    this.keep = Math.max(0, Math.floor(o.keep ?? 5));
    this.file = new GroupFile(o.path, (size, adding) => this.maybeRotate(size, adding));
  }

  async audit(r: AuditRecord): Promise<void> {
    try {
      await this.file.append(Buffer.from(JSON.stringify(r) + "\n", "utf8"));
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      this.o.onError?.(e);
      throw e;
    }
  }

  close(): Promise<void> {
    return this.file.close();
  }

  /** Shifts path -> path.1 -> ... -> path.keep, dropping the oldest; true when it rotated. */
  private async maybeRotate(size: number, adding: number): Promise<boolean> {
    if (this.rotateBytes <= 0 || size === 0 || size + adding <= this.rotateBytes) return false;
    const p = this.o.path;
    if (this.keep === 0) {
      await rm(p, { force: true });
      return true;
    }
    await rm(`${p}.${this.keep}`, { force: true });
    for (let i = this.keep - 1; i >= 1; i--) {
      if (await exists(`${p}.${i}`)) await rename(`${p}.${i}`, `${p}.${i + 1}`);
    }
    await rename(p, `${p}.1`);
    return true;
  }
}

// ---------------------------------------------------------------------------
// JetStream auditor

export interface JetStreamAuditorOptions {
  /** a connection that reconnects by itself (connectNats' default) */
  nc: NatsConnection;
  /** subject the stream listens on (Choria's `topic`) */
  subject: string;
  /** when set, publishes expect this stream to store the record */
  stream?: string;
  /** write-ahead spool; records stay here until JetStream acknowledged them */
  spoolFile: string;
  /** most records held in the spool before audits fail (default 10 000) */
  maxSpool?: number;
  ackTimeoutMs?: number;
  retryMs?: number;
  maxInFlight?: number;
  onError?: (err: Error) => void;
  log?: AuditorLog;
}

/** Same record, same id: the dedup key JetStream uses to drop a re-send. */
export function auditMessageId(line: string): string {
  return createHash("sha256").update(line).digest("hex");
}

interface Spooled {
  id: string;
  data: Buffer;
  inFlight: boolean;
}

// Compact the spool once nothing is pending and it has grown past this.
const COMPACT_BYTES = 1 << 20;

/**
 * Publishes audit records to a JetStream stream with acknowledgements. Each record is
 * first appended (fsynced) to a local spool, which is when audit() resolves; an ack
 * marker follows once JetStream stored it. On start the unacknowledged records are
 * sent again with the same Nats-Msg-Id, so a record acked just before a crash is
 * dropped by the stream's duplicate window instead of stored twice.
 */
export class JetStreamAuditor implements Auditor {
  readonly name = "jetstream";
  /** records not yet acknowledged */
  private readonly pending = new Map<string, Spooled>();
  private reserved = 0;
  private readonly js: JetStreamClient;
  private readonly spool: GroupFile;
  private readonly ready: Promise<void>;
  private readonly maxSpool: number;
  private readonly maxInFlight: number;
  private inFlight = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private idleWaiters: (() => void)[] = [];
  private publishing = new Set<Promise<void>>();
  /** failed audits, and failed publish rounds (each retried), for the auditor error metric */
  errors = 0;

  constructor(private readonly o: JetStreamAuditorOptions) {
    this.js = jetstream(o.nc);
    this.spool = new GroupFile(o.spoolFile);
    this.maxSpool = o.maxSpool ?? 10_000;
    this.maxInFlight = o.maxInFlight ?? 64;
    this.ready = this.recover();
    // an unobserved rejection here would crash the process; audit() reports it
    this.ready.catch(() => {});
  }

  /** Creates the auditor and waits until the spool is read back. */
  static async create(o: JetStreamAuditorOptions): Promise<JetStreamAuditor> {
    const a = new JetStreamAuditor(o);
    await a.ready;
    return a;
  }

  /** Records spooled and not yet acknowledged by JetStream. */
  get spooled(): number {
    return this.pending.size;
  }

  async audit(r: AuditRecord): Promise<void> {
    await this.ready;
    if (this.closed) throw this.fail(new Error("jetstream auditor is closed"));
    if (this.pending.size + this.reserved >= this.maxSpool) {
      throw this.fail(new Error(`audit spool is full (${this.maxSpool} records unacknowledged)`));
    }
    const line = JSON.stringify(r);
    const id = auditMessageId(line);
    if (this.pending.has(id)) return;
    this.reserved++;
    try {
      await this.spool.append(Buffer.from(`${JSON.stringify({ id, r })}\n`, "utf8"));
    } catch (err) {
      throw this.fail(err instanceof Error ? err : new Error(String(err)));
    } finally {
      this.reserved--;
    }
    this.pending.set(id, { id, data: Buffer.from(line, "utf8"), inFlight: false });
    this.pump();
  }

  /** Resolves once every spooled record is acknowledged (or rejects after timeoutMs). */
  async flushed(timeoutMs = 30_000): Promise<void> {
    await this.ready;
    if (this.pending.size === 0) return;
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(
        () => reject(new Error(`${this.pending.size} audit records still unacknowledged`)),
        timeoutMs,
      );
      this.idleWaiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  /** Stops publishing; unacknowledged records stay in the spool for the next start. */
  async close(): Promise<void> {
    await this.ready.catch(() => {});
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    await Promise.allSettled([...this.publishing]);
    await this.spool.close();
  }

  private fail(e: Error): Error {
    this.errors++;
    this.o.onError?.(e);
    return e;
  }

  /** Reads the spool back: records without an ack marker are sent again. */
  private async recover(): Promise<void> {
    let text = "";
    try {
      text = await readFile(this.o.spoolFile, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
    const acked = new Set<string>();
    const found: { id: string; line: string }[] = [];
    for (const raw of text.split("\n")) {
      if (raw === "") continue;
      let doc: { id?: unknown; r?: unknown; a?: unknown };
      try {
        doc = JSON.parse(raw) as typeof doc;
      } catch {
        // a line torn by a crash mid-write was never acknowledged to the signer
        continue;
      }
      if (typeof doc.a === "string") acked.add(doc.a);
      else if (typeof doc.id === "string" && doc.r !== undefined) {
        found.push({ id: doc.id, line: JSON.stringify(doc.r) });
      }
    }
    for (const f of found) {
      if (!acked.has(f.id)) this.pending.set(f.id, { id: f.id, data: Buffer.from(f.line), inFlight: false });
    }
    // start a fresh spool holding just the unacknowledged records
    await this.rewrite();
    if (this.pending.size > 0) {
      this.o.log?.("info", "re-sending spooled audit records", { count: this.pending.size });
      this.pump();
    }
  }

  private async rewrite(): Promise<void> {
    const tmp = `${this.o.spoolFile}.tmp`;
    const fh = await open(tmp, "w", 0o600);
    try {
      const lines = [...this.pending.values()].map(
        (p) => `${JSON.stringify({ id: p.id, r: JSON.parse(p.data.toString("utf8")) as unknown })}\n`,
      );
      await fh.write(lines.join(""));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, this.o.spoolFile);
  }

  private pump(): void {
    if (this.closed) return;
    for (const p of this.pending.values()) {
      if (this.inFlight >= this.maxInFlight) return;
      if (p.inFlight) continue;
      p.inFlight = true;
      this.inFlight++;
      const done = this.publish(p).finally(() => {
        this.publishing.delete(done);
      });
      this.publishing.add(done);
    }
  }

  private async publish(p: Spooled): Promise<void> {
    try {
      await this.js.publish(this.o.subject, p.data, {
        msgID: p.id,
        timeout: this.o.ackTimeoutMs ?? 5000,
        ...(this.o.stream !== undefined && { expect: { streamName: this.o.stream } }),
      });
    } catch (err) {
      p.inFlight = false;
      this.inFlight--;
      // one error per retry round, not one per record in flight when the broker went away
      if (!this.retryTimer) this.fail(err instanceof Error ? err : new Error(String(err)));
      this.scheduleRetry();
      return;
    }
    this.inFlight--;
    this.pending.delete(p.id);
    // the marker need not wait for its fsync: losing it only means one deduplicated re-send
    this.spool.append(Buffer.from(`${JSON.stringify({ a: p.id })}\n`)).catch(() => {});
    if (this.pending.size === 0) {
      this.compactIfIdle();
      const w = this.idleWaiters;
      this.idleWaiters = [];
      for (const f of w) f();
    }
    this.pump();
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.closed) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.pump();
    }, this.o.retryMs ?? 1000);
    this.retryTimer.unref();
  }

  private compactIfIdle(): void {
    if (this.spool.bytes < COMPACT_BYTES) return;
    void this.spool
      .exclusive(async () => {
        // appends wait for this job, so a map empty now has nothing unwritten behind it
        if (this.pending.size === 0 && this.reserved === 0) await this.rewrite();
      })
      .catch((err: unknown) =>
        this.o.log?.("warn", "could not compact the audit spool", { error: String(err) }),
      );
  }
}
