import {
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  type ConsumerMessages,
  type OrderedConsumerOptions,
} from "@nats-io/jetstream";
import type { NatsConnection } from "../../core/connector/index.js";
import { sleep, type Logger } from "../../core/util/index.js";
import type { AuditDecision, AuditEntry, AuditQuery } from "./api-types.js";

/** The stream `chorus setup dev --aaa` has the AAA service's JetStream auditor write to. */
export const DEFAULT_AUDIT_STREAM = "CHORUS_AAA_AUDIT";
/** Records held in memory for the audit view (the newest; older ones stay in the stream). */
export const DEFAULT_AUDIT_KEEP = 10_000;

const DECISIONS = new Set<AuditDecision>(["allow", "deny", "unknown"]);
const str = (v: unknown): string => (typeof v === "string" ? v : "");

/** The agent's action from a v2 request's base64 body; "" for discovery's "ping" and raw agents. */
function actionOf(message: unknown): string {
  if (typeof message !== "string") return "";
  try {
    const body = JSON.parse(Buffer.from(message, "base64").toString("utf8")) as unknown;
    return body && typeof body === "object" ? str((body as { action?: unknown }).action) : "";
  } catch {
    return "";
  }
}

/** A short text of a request filter: the CLI flags that would make it. */
function filterText(f: unknown): string | undefined {
  if (!f || typeof f !== "object") return undefined;
  const o = f as Record<string, unknown>;
  const parts: string[] = [];
  const list = (k: string): unknown[] => (Array.isArray(o[k]) ? (o[k] as unknown[]) : []);
  for (const v of list("identity")) parts.push(`-I ${String(v)}`);
  for (const v of list("cf_class")) parts.push(`-C ${String(v)}`);
  for (const v of list("agent")) parts.push(`-A ${String(v)}`);
  for (const v of list("fact")) {
    const x = v as { fact?: unknown; operator?: unknown; value?: unknown };
    parts.push(`-F ${String(x.fact)}${String(x.operator)}${String(x.value)}`);
  }
  for (const v of list("compound")) parts.push(`-S ${JSON.stringify(v)}`);
  return parts.length > 0 ? parts.join(" ") : undefined;
}

/**
 * One audit record (io.choria.signer.v1.signature_audit, as the AAA signer writes it) as
 * the audit view shows it; undefined when the bytes are not such a record.
 */
export function auditEntryOf(seq: number, data: Uint8Array): AuditEntry | undefined {
  let r: Record<string, unknown>;
  try {
    const v = JSON.parse(Buffer.from(data).toString("utf8")) as unknown;
    if (!v || typeof v !== "object" || Array.isArray(v)) return undefined;
    r = v as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (r.protocol !== "io.choria.signer.v1.signature_audit") return undefined;
  const req = (r.request && typeof r.request === "object" ? r.request : {}) as Record<string, unknown>;
  const decision = DECISIONS.has(r.action as AuditDecision) ? (r.action as AuditDecision) : "unknown";
  const time = typeof r.time === "number" && Number.isFinite(r.time) ? r.time : 0;
  const filter = filterText(req.filter);
  return {
    seq,
    time: new Date(time * 1000).toISOString(),
    caller: str(r.callerid),
    ...(typeof r.claimed_callerid === "string" && { claimedCaller: r.claimed_callerid }),
    agent: str(req.agent),
    action: actionOf(req.message),
    decision,
    reason: str(r.reason),
    site: str(r.site),
    requestid: str(req.id),
    collective: str(req.collective),
    sender: str(req.sender),
    ...(filter && { filter }),
  };
}

export interface AuditPage {
  records: AuditEntry[];
  /** records in memory that match the filter (all pages) */
  matched: number;
}

/** The newest audit records, in stream order, bounded; queried newest first. */
export class AuditLog {
  private entries: AuditEntry[] = [];

  constructor(private readonly keep = DEFAULT_AUDIT_KEEP) {}

  get size(): number {
    return this.entries.length;
  }

  add(e: AuditEntry): void {
    this.entries.push(e);
    // trim in chunks: one splice per tenth of `keep`, not one per record
    if (this.entries.length > this.keep + Math.ceil(this.keep / 10))
      this.entries = this.entries.slice(-this.keep);
  }

  /**
   * Matching records newest first: `caller` is a case-insensitive part of the verified or
   * claimed caller, `agent` and `decision` match exactly; `before` pages back by sequence.
   */
  query(q: AuditQuery): AuditPage {
    const caller = q.caller?.trim().toLowerCase() ?? "";
    const agent = q.agent?.trim() ?? "";
    const limit = q.limit ?? 200;
    const records: AuditEntry[] = [];
    let matched = 0;
    for (let i = this.entries.length - 1; i >= 0; i--) {
      const e = this.entries[i] as AuditEntry;
      if (q.decision !== undefined && e.decision !== q.decision) continue;
      if (agent !== "" && e.agent !== agent) continue;
      if (
        caller !== "" &&
        !e.caller.toLowerCase().includes(caller) &&
        !(e.claimedCaller ?? "").toLowerCase().includes(caller)
      )
        continue;
      matched++;
      if (q.before !== undefined && e.seq >= q.before) continue;
      if (records.length < limit) records.push(e);
    }
    return { records, matched };
  }
}

export interface AuditReaderOptions {
  /** a connection whose credential may read the stream (JetStream consumer rights) */
  nc: NatsConnection;
  stream?: string;
  log: Logger;
  keep?: number;
  /** wait this long before trying again when the stream is missing or reading failed (default 5 s) */
  retryMs?: number;
}

/**
 * Follows the AAA audit stream with an ordered consumer: the newest `keep` records at
 * start, then each new one as it is stored, into an AuditLog. A missing stream (the AAA
 * service not started yet) or a refused read is retried, and said in `note`.
 */
export class AuditReader {
  readonly log: AuditLog;
  readonly stream: string;
  private messages: ConsumerMessages | undefined;
  private stopped = false;
  private readonly stopping = new AbortController();
  private loop: Promise<void> | undefined;
  private problem: string | undefined = "connecting to the audit stream";
  private lastSeq = 0;

  constructor(private readonly o: AuditReaderOptions) {
    this.stream = o.stream ?? DEFAULT_AUDIT_STREAM;
    this.log = new AuditLog(o.keep ?? DEFAULT_AUDIT_KEEP);
  }

  /** Why the view may be empty or behind; undefined while reading. */
  get note(): string | undefined {
    return this.problem;
  }

  start(): void {
    this.loop ??= this.run();
  }

  private async run(): Promise<void> {
    const retry = this.o.retryMs ?? 5_000;
    let reported: string | undefined;
    while (!this.stopped) {
      try {
        await this.follow();
      } catch (err) {
        if (this.stopped) break;
        const msg = (err as Error).message;
        const missing = /not found/i.test(msg);
        this.problem = missing
          ? `no audit stream ${this.stream} yet (the AAA service creates it when its jetstream auditor starts); trying again every ${Math.round(retry / 1000)} s`
          : `cannot read the audit stream ${this.stream}: ${msg}`;
        // one log line per distinct problem, not one per retry; a stream not made yet is
        // the normal order of starting things, a refused read is not
        if (reported !== this.problem) {
          reported = this.problem;
          if (missing) this.o.log.info(`audit view: ${this.problem}`);
          else this.o.log.warn(`audit view: ${this.problem}`);
        }
      }
      if (!this.stopped) await sleep(retry, this.stopping.signal);
    }
  }

  /** One ordered consumer from where the log left off; returns when it ends. */
  private async follow(): Promise<void> {
    const jsm = await jetstreamManager(this.o.nc, { checkAPI: false, timeout: 5_000 });
    const info = await jsm.streams.info(this.stream);
    const keep = this.o.keep ?? DEFAULT_AUDIT_KEEP;
    const from =
      this.lastSeq > 0 ? this.lastSeq + 1 : Math.max(info.state.first_seq, info.state.last_seq - keep + 1);
    const opts: Partial<OrderedConsumerOptions> =
      from > 0 && info.state.last_seq > 0
        ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: from }
        : { deliver_policy: DeliverPolicy.All };
    const consumer = await jetstream(this.o.nc, { timeout: 5_000 }).consumers.get(this.stream, opts);
    const messages = await consumer.consume({ max_messages: 512 });
    this.messages = messages;
    this.problem = undefined;
    if (this.stopped) {
      await messages.close();
      return;
    }
    for await (const m of messages) {
      this.lastSeq = m.seq;
      const e = auditEntryOf(m.seq, m.data);
      if (e) this.log.add(e);
    }
    if (!this.stopped) throw new Error("the audit consumer stopped");
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopping.abort();
    await this.messages?.close();
    await this.loop;
  }
}
