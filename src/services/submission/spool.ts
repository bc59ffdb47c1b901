import { mkdirSync, readdirSync, renameSync, statfsSync, statSync, unlinkSync } from "node:fs";
import { readFile, unlink } from "node:fs/promises";
import { join } from "node:path";
import { headers as natsHeaders, type MsgHdrs, type NatsConnection } from "@nats-io/transport-node";
import { backoffDelay, silentLogger, writeFileAtomicSync, type Logger } from "../../core/util/index.js";
import {
  buildMessage,
  isExpired,
  parseMessage,
  PRIORITIES,
  SubmissionError,
  type Priority,
  type SpooledMessage,
  type SubmitRequest,
} from "./message.js";

/** Signs payloads for messages submitted with `sign` (the node's key and token). */
export interface SpoolSigner {
  token: string;
  sign(data: Uint8Array): Uint8Array;
}

export interface SpoolOptions {
  /** spool root; P0..P4 and corrupt/ are made below it */
  dir: string;
  /** Choria-Identity of published messages */
  identity: string;
  /** main collective: messages go to `<collective>.submission.in.<subject>` */
  collective: string;
  /** messages allowed per priority (plugin.choria.submission.max_spool_size, default 500) */
  maxSpoolSize?: number;
  /** refuse new messages when the spool's filesystem has less free space than this */
  minFreeBytes?: number;
  /** how often the publisher looks for work when idle (default 1 s) */
  pollIntervalMs?: number;
  /** how long a reliable publish waits for its JetStream ack (default 2 s) */
  ackTimeoutMs?: number;
  /** reliable retry backoff: doubles from min to max (default 500 ms .. 5 s) */
  retryMinMs?: number;
  retryMaxMs?: number;
  signer?: SpoolSigner;
  logger?: Pick<Logger, "info" | "warn" | "error">;
  /** skip fsync (tests and benchmarks on throwaway dirs only) */
  unsafeNoSync?: boolean;
}

export const SPOOL_DEFAULTS = {
  maxSpoolSize: 500,
  minFreeBytes: 64 * 1024 * 1024,
  pollIntervalMs: 1000,
  ackTimeoutMs: 2000,
  retryMinMs: 500,
  retryMaxMs: 5000,
} as const;

export interface SpoolStats {
  /** messages on disk per priority (P0..P4) */
  pending: number[];
  published: number;
  /** reliable publishes the stream reported as duplicates (already stored) */
  duplicates: number;
  retries: number;
  expired: number;
  /** reliable messages dropped after max tries */
  exhausted: number;
  corrupt: number;
  /** paths of files moved aside since start */
  corruptFiles: string[];
}

const READ_AHEAD = 8;

// Wall-clock nanoseconds that never go backwards within a process, so file names
// (which start with them) sort in submission order even inside one millisecond.
const hrBase = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();
let lastNs = 0n;
function monotonicNowNs(): bigint {
  let ns = hrBase + process.hrtime.bigint();
  if (ns <= lastNs) ns = lastNs + 1n;
  lastNs = ns;
  return ns;
}

interface Entry {
  priority: Priority;
  file: string;
  path: string;
}

/**
 * The on-node submission spool: a directory per priority of `<unixnano>-<id>.msg`
 * files, each written atomically (temp file, fsync, rename, fsync dir) so a crash
 * leaves either the whole message or nothing. A publisher drains it to
 * `<collective>.submission.in.<subject>`: reliable messages wait for a JetStream ack
 * and are retried with backoff, in order per priority (a failed one holds back the
 * reliable ones behind it); unreliable ones are sent once. Nats-Msg-Id carries the
 * message id so a resend after a lost ack or a crash is dropped by the stream.
 */
export class Spool {
  readonly dir: string;
  readonly identity: string;
  readonly collective: string;
  readonly maxSpoolSize: number;
  readonly minFreeBytes: number;
  private readonly o: SpoolOptions;
  private readonly log: Pick<Logger, "info" | "warn" | "error">;
  private readonly counters = {
    published: 0,
    duplicates: 0,
    retries: 0,
    expired: 0,
    exhausted: 0,
    corrupt: 0,
  };
  private readonly corruptFiles: string[] = [];
  private readonly counts: ({ n: number; at: number } | undefined)[] = [];
  private nc: NatsConnection | undefined;
  private timer: NodeJS.Timeout | undefined;
  private pass: Promise<void> | undefined;
  private again = false;
  private stopped = true;
  private halted = false;
  /** sent messages whose files are still being unlinked, and those unlinks */
  private readonly removing = new Set<string>();
  private readonly unlinks = new Set<Promise<void>>();

  constructor(opts: SpoolOptions) {
    if (!opts.dir) throw new SubmissionError("config", "a spool directory is required");
    if (!opts.identity) throw new SubmissionError("config", "an identity is required");
    if (!opts.collective) throw new SubmissionError("config", "a collective is required");
    this.o = opts;
    this.dir = opts.dir;
    this.identity = opts.identity;
    this.collective = opts.collective;
    this.maxSpoolSize = opts.maxSpoolSize ?? SPOOL_DEFAULTS.maxSpoolSize;
    this.minFreeBytes = opts.minFreeBytes ?? SPOOL_DEFAULTS.minFreeBytes;
    this.log = opts.logger ?? silentLogger;
    try {
      for (const p of PRIORITIES) mkdirSync(this.priorityDir(p), { recursive: true, mode: 0o750 });
    } catch (err) {
      throw new SubmissionError("config", `cannot create spool ${this.dir}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  /** The subject prefix messages are published under. */
  get prefix(): string {
    return `${this.collective}.submission.in.`;
  }

  priorityDir(p: Priority): string {
    return join(this.dir, `P${p}`);
  }

  /**
   * Validates and stores a message; returns it once it is durably on disk. Refuses
   * with SubmissionError `spool_full` or `disk_full` rather than growing without bound.
   */
  submit(req: SubmitRequest): SpooledMessage {
    const msg = buildMessage(req, this.identity, monotonicNowNs());
    const dir = this.priorityDir(msg.priority);
    const count = this.cachedCount(msg.priority);
    if (count >= this.maxSpoolSize) {
      throw new SubmissionError(
        "spool_full",
        `spool is full: priority ${msg.priority} already holds ${count} messages ` +
          `(plugin.choria.submission.max_spool_size = ${this.maxSpoolSize})`,
      );
    }
    const free = this.freeBytes();
    if (free < this.minFreeBytes) {
      throw new SubmissionError(
        "disk_full",
        `not enough free disk for the spool: ${free} bytes free on ${this.dir}, ` +
          `need at least ${this.minFreeBytes} (plugin.choria.submission.min_free_disk)`,
      );
    }
    this.writeAtomic(dir, `${msg.created.padStart(20, "0")}-${msg.id}.msg`, msg);
    const c = this.counts[msg.priority];
    if (c) c.n++;
    this.wake();
    return msg;
  }

  /** Free bytes on the spool's filesystem, for unprivileged users. */
  freeBytes(): number {
    const s = statfsSync(this.dir);
    return Number(s.bavail) * Number(s.bsize);
  }

  stats(): SpoolStats {
    return {
      pending: PRIORITIES.map((p) => this.count(p)),
      ...this.counters,
      corruptFiles: [...this.corruptFiles],
    };
  }

  /** Starts draining the spool over `nc` (which should reconnect by itself). */
  start(nc: NatsConnection): void {
    this.nc = nc;
    this.stopped = false;
    this.halted = false;
    this.cleanTemp();
    this.wake();
  }

  /** Stops the publisher after the message in flight; the spool stays on disk. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.halted = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.pass;
    await Promise.all(this.unlinks);
    this.nc = undefined;
  }

  /** Runs one publishing pass now (tests, `tool submit --flush`). */
  async drainOnce(nc: NatsConnection | undefined = this.nc): Promise<void> {
    if (!nc) throw new SubmissionError("not_started", "no NATS connection to publish with");
    await this.pass;
    this.halted = false;
    const pass = this.publishPass(nc);
    this.pass = pass.then(() => undefined);
    try {
      await pass;
      await Promise.all(this.unlinks);
    } finally {
      this.pass = undefined;
    }
  }

  private wake(): void {
    if (this.stopped || !this.nc) return;
    if (this.pass) {
      this.again = true;
      return;
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.loop(), 0);
  }

  private loop(): void {
    this.timer = undefined;
    const nc = this.nc;
    if (this.stopped || !nc) return;
    this.again = false;
    this.pass = this.publishPass(nc)
      .catch((err: unknown) => this.log.error(`spool publisher: ${(err as Error).message}`))
      .then((busy) => {
        this.pass = undefined;
        if (this.stopped) return;
        // keep going while there is work; otherwise poll (other processes submit too)
        const delay =
          busy === true || this.again ? 0 : (this.o.pollIntervalMs ?? SPOOL_DEFAULTS.pollIntervalMs);
        this.timer = setTimeout(() => this.loop(), delay);
      });
  }

  /**
   * The count submit() checks the limit against: listing a directory of hundreds of
   * files for every message made bulk submission quadratic, so a recent count (other
   * processes write here too) plus our own submissions is used for up to a second.
   */
  private cachedCount(p: Priority): number {
    const c = this.counts[p];
    if (c && Date.now() - c.at < 1000) return c.n;
    const n = this.count(p);
    this.counts[p] = { n, at: Date.now() };
    return n;
  }

  /** Messages waiting in one priority; cheaper than list() (no sort, no paths). */
  private count(p: Priority): number {
    let n = 0;
    try {
      const dir = this.priorityDir(p);
      for (const f of readdirSync(dir))
        if (f.endsWith(".msg") && !f.startsWith(".") && !this.removing.has(join(dir, f))) n++;
    } catch {
      return 0;
    }
    return n;
  }

  /** Spool files of one priority, oldest first. */
  private list(p: Priority): Entry[] {
    const dir = this.priorityDir(p);
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return [];
    }
    return names
      .filter((n) => n.endsWith(".msg") && !n.startsWith("."))
      .sort()
      .map((file) => ({ priority: p, file, path: join(dir, file) }))
      .filter((e) => !this.removing.has(e.path));
  }

  /** One sweep over P0..P4; true when something was published or dropped. */
  private async publishPass(nc: NatsConnection): Promise<boolean> {
    let busy = false;
    const now = Date.now();
    for (const p of PRIORITIES) {
      let holdReliable = false;
      const entries = this.list(p);
      // Files are read a few ahead so disk reads overlap the wait for acks.
      const reads = new Map<number, Promise<Buffer | Error>>();
      const readAhead = (from: number) => {
        for (let j = from; j < Math.min(entries.length, from + READ_AHEAD); j++) {
          if (!reads.has(j)) reads.set(j, this.load(entries[j] as Entry));
        }
      };
      for (let i = 0; i < entries.length; i++) {
        const e = entries[i] as Entry;
        readAhead(i);
        const loaded = await (reads.get(i) as Promise<Buffer | Error>);
        reads.delete(i);
        // stop() lets the message in flight finish, then ends the pass
        if (this.halted || nc.isClosed()) return busy;
        const msg = this.decode(e, loaded);
        if (!msg) {
          busy = true;
          continue;
        }
        if (isExpired(msg, now)) {
          this.log.info(`discarding expired message ${msg.id} (${msg.subject})`);
          this.counters.expired++;
          this.remove(e);
          busy = true;
          continue;
        }
        if (!msg.reliable) {
          try {
            nc.publish(this.prefix + msg.subject, Buffer.from(msg.payload, "base64"), {
              headers: this.headersFor(msg),
            });
            this.counters.published++;
          } catch (err) {
            this.log.warn(`unreliable message ${msg.id} not sent: ${(err as Error).message}`);
          }
          this.remove(e);
          busy = true;
          continue;
        }
        // A failed reliable message keeps the ones behind it waiting: order matters.
        if (holdReliable) continue;
        if (msg.next_try > now) {
          holdReliable = true;
          continue;
        }
        const ok = await this.publishReliable(nc, msg);
        if (ok) {
          this.remove(e);
          busy = true;
        } else {
          msg.tries++;
          this.counters.retries++;
          if (msg.tries >= msg.max_tries) {
            this.log.warn(`discarding message ${msg.id} after ${msg.tries} tries`);
            this.counters.exhausted++;
            this.remove(e);
          } else {
            msg.next_try = Date.now() + this.backoff(msg.tries);
            this.writeAtomic(this.priorityDir(p), e.file, msg);
          }
          holdReliable = true;
        }
      }
    }
    return busy;
  }

  private async publishReliable(nc: NatsConnection, msg: SpooledMessage): Promise<boolean> {
    const subject = this.prefix + msg.subject;
    try {
      const res = await nc.request(subject, Buffer.from(msg.payload, "base64"), {
        timeout: this.o.ackTimeoutMs ?? SPOOL_DEFAULTS.ackTimeoutMs,
        headers: this.headersFor(msg),
      });
      const ack = JSON.parse(res.string()) as {
        stream?: string;
        seq?: number;
        duplicate?: boolean;
        error?: { description?: string; err_code?: number };
      };
      if (ack.error || typeof ack.seq !== "number") {
        this.log.warn(
          `publishing ${msg.id} to ${subject} failed: ${ack.error?.description ?? "not a JetStream ack"}`,
        );
        return false;
      }
      this.counters.published++;
      if (ack.duplicate) this.counters.duplicates++;
      return true;
    } catch (err) {
      this.log.warn(`publishing ${msg.id} to ${subject} failed: ${(err as Error).message}`);
      return false;
    }
  }

  private headersFor(msg: SpooledMessage): MsgHdrs {
    const h = natsHeaders();
    for (const [k, v] of Object.entries(msg.headers)) h.set(k, v);
    h.set("Nats-Msg-Id", msg.id);
    h.set("Choria-Priority", String(msg.priority));
    h.set("Choria-Created", msg.created);
    h.set("Choria-Sender", msg.sender);
    if (msg.reliable) h.set("Choria-Reliable", "1");
    h.set("Choria-Tries", String(msg.tries));
    h.set("Choria-Identity", msg.identity || this.identity);
    if (msg.sign) {
      if (this.o.signer) {
        const sig = this.o.signer.sign(Buffer.from(msg.payload, "base64"));
        h.set("Choria-Signature", Buffer.from(sig).toString("hex"));
        h.set("Choria-Token", this.o.signer.token);
      } else {
        this.log.warn(`message ${msg.id} asked to be signed but this spool has no signer`);
      }
    }
    return h;
  }

  private backoff(tries: number): number {
    return backoffDelay(tries, {
      initialMs: this.o.retryMinMs ?? SPOOL_DEFAULTS.retryMinMs,
      maxMs: this.o.retryMaxMs ?? SPOOL_DEFAULTS.retryMaxMs,
      // so many nodes recovering from one broker outage do not retry in step
      jitter: 0.2,
    });
  }

  /** Reads a spool file; corrupt ones are moved aside (and counted) instead of retried. */
  private load(e: Entry): Promise<Buffer | Error> {
    return readFile(e.path).catch((err: unknown) => err as Error);
  }

  private decode(e: Entry, bytes: Buffer | Error): SpooledMessage | undefined {
    if (bytes instanceof Error) {
      // gone already (another pass, or removed by hand)
      if ((bytes as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      this.moveAside(e, `unreadable: ${bytes.message}`);
      return undefined;
    }
    try {
      return parseMessage(bytes);
    } catch (err) {
      this.moveAside(e, (err as Error).message);
      return undefined;
    }
  }

  private moveAside(e: Entry, why: string): void {
    const dir = join(this.dir, "corrupt");
    const to = join(dir, `P${e.priority}-${e.file}`);
    try {
      mkdirSync(dir, { recursive: true });
      renameSync(e.path, to);
      this.corruptFiles.push(to);
      this.log.error(`corrupt spool file ${e.path} (${why}): moved to ${to}`);
    } catch (err) {
      // cannot move it: delete it so it does not block the spool forever
      this.log.error(
        `corrupt spool file ${e.path} (${why}) could not be moved aside, removing it: ${(err as Error).message}`,
      );
      try {
        unlinkSync(e.path);
      } catch {
        // already gone
      }
    }
    this.counters.corrupt++;
  }

  /**
   * Deletes a sent (or discarded) message's file without waiting: an unlink took ~0.5 ms
   * on the test machine's filesystem, as long as a JetStream ack, so it now overlaps the
   * next publish. Until it is gone list() skips it; a crash in between only re-sends a
   * message that Nats-Msg-Id de-duplication absorbs.
   */
  private remove(e: Entry): void {
    const c = this.counts[e.priority];
    if (c && c.n > 0) c.n--;
    this.removing.add(e.path);
    const done: Promise<void> = unlink(e.path)
      .catch((err: unknown) => {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT")
          this.log.error(`cannot remove spool file ${e.path}: ${(err as Error).message}`);
      })
      .finally(() => {
        this.removing.delete(e.path);
        this.unlinks.delete(done);
      });
    this.unlinks.add(done);
  }

  private writeAtomic(dir: string, file: string, msg: SpooledMessage): void {
    try {
      // the .tmp- prefix is what cleanTemp() removes after a crash mid-write
      writeFileAtomicSync(join(dir, file), JSON.stringify(msg), {
        mode: 0o640,
        sync: !this.o.unsafeNoSync,
        tmpName: `.tmp-${file}-${process.pid}-${Math.random().toString(36).slice(2)}`,
      });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new SubmissionError(
        code === "ENOSPC" ? "disk_full" : "write_failed",
        `cannot write to the spool ${dir}: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }

  /** Temp files older than a minute are leftovers of a crash mid-write. */
  private cleanTemp(): void {
    const cutoff = Date.now() - 60_000;
    for (const p of PRIORITIES) {
      const dir = this.priorityDir(p);
      for (const n of readdirSync(dir)) {
        if (!n.startsWith(".tmp-")) continue;
        const path = join(dir, n);
        try {
          if (statSync(path).mtimeMs < cutoff) unlinkSync(path);
        } catch {
          // raced with its writer
        }
      }
    }
  }

  /** Age of the oldest pending message in ms (0 when empty), for monitoring. */
  oldestAgeMs(): number {
    let oldest = 0;
    for (const p of PRIORITIES) {
      const first = this.list(p)[0];
      if (!first) continue;
      const ns = BigInt(first.file.split("-")[0] ?? "0");
      const ms = Number(ns / 1_000_000n);
      if (oldest === 0 || ms < oldest) oldest = ms;
    }
    return oldest === 0 ? 0 : Date.now() - oldest;
  }
}
