import { mkdirSync } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { dirname } from "node:path";

/** One audit line, Choria's (and Ruby MCollective's) field names and order. */
export interface AuditEntry {
  timestamp: string;
  request_id: string;
  request_time: string;
  caller: string;
  sender: string;
  agent: string;
  action: string;
  data: Record<string, unknown>;
  /** Chorus adds these after Choria's fields: what the node decided, and why. */
  decision?: "allow" | "deny";
  reason?: string;
}

/** Takes audit records on the request path; must not block it. */
export interface Auditor {
  record(entry: AuditEntry): void;
}

export interface AuditLogOptions {
  file: string;
  /** File mode for a new file and enforced on open (default 0600, Choria's default). */
  mode?: number;
  onError?(err: Error): void;
}

const pad = (n: number, w = 2): string => String(n).padStart(w, "0");

/** go-choria's audit time layout, `2006-01-02T15:04:05.000000-0700`, in UTC. */
export function auditTime(ms: number, micros = 0): string {
  const d = new Date(ms);
  const us = d.getUTCMilliseconds() * 1000 + micros;
  return (
    `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}` +
    `T${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${pad(us, 6)}+0000`
  );
}

/**
 * Appends audit lines to a file. `record()` only queues the line; a single writer
 * drains the queue with async appends, so a slow disk delays the log, never a request.
 * `close()` (called from Server.stop) waits until every queued line is written.
 */
export class AuditLog implements Auditor {
  readonly file: string;
  private readonly mode: number;
  private readonly onError: (err: Error) => void;
  private queue: string[] = [];
  private fh: Promise<FileHandle> | undefined;
  private writing: Promise<void> | undefined;
  /** Lines written so far (tests and status). */
  written = 0;

  constructor(opts: AuditLogOptions) {
    this.file = opts.file;
    this.mode = opts.mode ?? 0o600;
    this.onError = opts.onError ?? (() => undefined);
  }

  record(entry: AuditEntry): void {
    this.queue.push(`${JSON.stringify(entry)}\n`);
    this.writing ??= this.drain();
  }

  /** Resolves when everything recorded so far is on disk (or failed and was reported). */
  async flush(): Promise<void> {
    while (this.writing) await this.writing;
  }

  async close(): Promise<void> {
    await this.flush();
    // A later record() (server started again) reopens the file.
    const fh = this.fh;
    this.fh = undefined;
    if (fh) await fh.then((h) => h.close()).catch(() => undefined);
  }

  private handle(): Promise<FileHandle> {
    this.fh ??= (async () => {
      // private: an audit trail names callers and carries request data
      mkdirSync(dirname(this.file), { recursive: true, mode: 0o700 });
      const h = await open(this.file, "a", this.mode);
      // The mode given to open() only applies to new files; an existing log is tightened too.
      await h.chmod(this.mode);
      return h;
    })();
    return this.fh;
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.join("");
        const n = this.queue.length;
        this.queue = [];
        try {
          const h = await this.handle();
          await h.appendFile(batch);
          this.written += n;
        } catch (err) {
          // Reopen next time: the file may have been removed or the disk was full.
          this.fh = undefined;
          this.onError(err as Error);
        }
      }
    } finally {
      this.writing = undefined;
    }
  }
}
