import { performance } from "node:perf_hooks";
import {
  AckPolicy,
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  type ConsumerConfig,
  type ConsumerMessages,
  type JetStreamManager,
  type JsMsg,
  type StreamConfig as JsStreamConfig,
} from "@nats-io/jetstream";
import { headers as natsHeaders, type MsgHdrs, type NatsConnection } from "@nats-io/transport-node";
import { isStreamNotFound, nanos } from "../streams/index.js";
import type { Logger } from "../../core/util/index.js";
import type { StreamConfig } from "./config.js";
import { ReplicatorError } from "./errors.js";
import { AckedPublisher } from "./publisher.js";
import type { ReplicatorMetrics } from "./metrics.js";

/** The header every copy carries: "<stream> <seq> <replicator> <name> <source time ms>". */
export const SOURCE_HEADER = "Choria-SR-Source";
/** The source message's own Nats-Msg-Id, kept under this name (the copy's id is the replicator's). */
export const ORIGINAL_ID_HEADER = "Choria-SR-Original-Msg-Id";

/**
 * What the copier asks of sampling for one message: copy it or not (and the value to
 * record as copied afterwards). Undefined: no sampling, everything is copied.
 */
export interface CopyFilter {
  decide(msg: { subject: string; data: Uint8Array; headers?: MsgHdrs | undefined }): {
    copy: boolean;
    value: string;
  };
  copied(value: string): void;
}

export interface CopierOptions {
  config: StreamConfig;
  replicator: string;
  source: NatsConnection;
  target: NatsConnection;
  metrics: ReplicatorMetrics;
  log: Logger;
  filter?: CopyFilter;
  /** how often the source consumer's health is checked (Choria: 1 min) */
  healthIntervalMs?: number;
  /** ack wait of the source consumer (Choria: 30 s) */
  ackWaitMs?: number;
  /** the reply prefix the target credential may subscribe to (acknowledgements come there) */
  targetInboxPrefix?: string;
}

/** The target subject for a source subject: Choria's prefix, then remove (with ".." collapsed). */
export function targetSubject(subject: string, prefix?: string, remove?: string): string {
  let s = subject;
  if (prefix) s = `${prefix}.${s}`.replaceAll("..", ".");
  if (remove) s = s.replaceAll(remove, "").replaceAll("..", ".");
  return s;
}

/** The parsed Choria-SR-Source header, undefined when absent or not in the format. */
export function parseSourceHeader(
  v: string | undefined,
): { stream: string; seq: number; replicator: string; name: string; timeMs: number } | undefined {
  if (!v) return undefined;
  const p = v.split(" ");
  if (p.length !== 5) return undefined;
  const seq = Number(p[1]);
  const timeMs = Number(p[4]);
  if (!Number.isInteger(seq) || !Number.isFinite(timeMs)) return undefined;
  return { stream: p[0] as string, seq, replicator: p[2] as string, name: p[3] as string, timeMs };
}

/** FNV-1a: spreads keys over lanes the same way in every process. */
function hash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

// JetStream control headers refer to the source stream; on the target they would
// deduplicate, reject or expect the wrong things.
const DROPPED_HEADERS = new Set([
  "nats-msg-id",
  "nats-expected-stream",
  "nats-expected-last-msg-id",
  "nats-expected-last-sequence",
  "nats-expected-last-subject-sequence",
  SOURCE_HEADER.toLowerCase(),
]);

function boundMetrics(x: ReplicatorMetrics, l: { stream: string; replicator: string; worker: string }) {
  return {
    totalMessages: x.totalMessages.labels(l),
    totalBytes: x.totalBytes.labels(l),
    streamSequence: x.streamSequence.labels(l),
    tooOld: x.tooOld.labels(l),
    inFlight: x.inFlight.labels(l),
    skipped: x.skipped.labels(l),
    skippedBytes: x.skippedBytes.labels(l),
    processingTime: x.processingTime.labels(l),
    ackFailed: x.ackFailed.labels(l),
    duplicates: x.duplicates.labels(l),
    copied: x.copied.labels(l),
    copiedBytes: x.copiedBytes.labels(l),
    handlerErrors: x.handlerErrors.labels(l),
    consumerRecreated: x.consumerRecreated.labels(l),
  };
}

interface Lane {
  queue: JsMsg[];
  running: boolean;
}

/**
 * Copies one configured stream from a source broker to a target broker.
 *
 * Source-initiated (the default): a durable pull consumer `SR_<name>` on the source; a
 * message is acked there only after the target acknowledged the copy, so a crash or an
 * outage loses nothing. Ordered mode copies one message at a time, in stream order
 * (Choria's only mode). Parallel mode spreads messages over lanes by a key (a subject
 * token or a header): each lane copies its messages one at a time, in order, and the lanes
 * run at once. Target-initiated: an ordered consumer that starts after the last copy the
 * target holds.
 *
 * Every copy carries `Choria-SR-Source` and a `Nats-Msg-Id` made from the source stream's
 * creation time and the message's sequence: the same for every attempt, instance and
 * restart, so the target's duplicate window drops a second copy. A message that may have
 * been copied before (a redelivery, or one re-sent after a consumer repair) is also
 * checked against the target's last copy on its subject when per-subject order is kept,
 * which covers outages longer than the duplicate window.
 */
export class StreamCopier {
  private readonly o: CopierOptions;
  private readonly cfg: StreamConfig;
  /** the metrics with this stream's labels bound: no label hashing per message */
  private readonly m: ReturnType<typeof boundMetrics>;
  private pub!: AckedPublisher;
  private sjsm!: JetStreamManager;
  private tjsm!: JetStreamManager;
  private messages: ConsumerMessages | undefined;
  private loop: Promise<void> | undefined;
  private stopping = false;
  private healthTimer: NodeJS.Timeout | undefined;
  private created = 0;
  private lanes: Lane[] = [];
  /** received, not yet acked, by stream sequence */
  private inflight = new Set<number>();
  private acks: JsMsg[] = [];
  private maxSeen = 0;
  /** sequences up to this were delivered by an earlier consumer: they may be on the target */
  private suspectUpTo = 0;
  private repairing: Promise<void> | undefined;
  readonly durable: string;
  copiedCount = 0;

  constructor(o: CopierOptions) {
    this.o = o;
    this.cfg = o.config;
    this.m = boundMetrics(o.metrics, {
      stream: o.config.stream,
      replicator: o.replicator,
      worker: o.config.name,
    });
    this.durable = `SR_${o.config.name}`;
  }

  /** Prepares the target stream and the source consumer and starts copying. */
  async start(): Promise<void> {
    this.stopping = false;
    this.pub = new AckedPublisher(this.o.target, this.o.targetInboxPrefix);
    this.sjsm = await jetstreamManager(this.o.source);
    this.tjsm = await jetstreamManager(this.o.target);
    const si = await this.sjsm.streams.info(this.cfg.stream).catch((err: unknown) => {
      throw new ReplicatorError(
        isStreamNotFound(err) ? "no_source_stream" : "source",
        `source stream ${this.cfg.stream} on ${this.cfg.source.servers.join(",")}: ${(err as Error).message}`,
        { cause: err },
      );
    });
    this.created = Date.parse(si.created) || 0;
    await this.ensureTarget(si.config);
    if (this.cfg.parallel)
      this.lanes = Array.from({ length: this.cfg.parallel.workers }, () => ({ queue: [], running: false }));
    if (this.cfg.target_initiated) {
      await this.startTargetInitiated();
      return;
    }
    await this.ensureConsumer();
    this.consume();
    this.healthTimer = setInterval(() => void this.checkHealth(), this.o.healthIntervalMs ?? 60_000);
    this.healthTimer.unref();
  }

  /** Stops pulling; messages being copied finish or stay unacked for the next start. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.healthTimer);
    this.messages?.stop();
    await this.loop?.catch(() => undefined);
    // lanes end at their next step; an unacked message is redelivered to whoever runs next
    const deadline = Date.now() + 5000;
    while (this.lanes.some((l) => l.running) && Date.now() < deadline) await sleep(20);
    this.pub?.close();
  }

  private async ensureTarget(source: JsStreamConfig): Promise<void> {
    if (this.cfg.no_target_create) return;
    try {
      await this.tjsm.streams.info(this.cfg.target_stream);
      return;
    } catch (err) {
      if (!isStreamNotFound(err)) throw err;
    }
    const subjects = (this.cfg.filter_subject ? [this.cfg.filter_subject] : (source.subjects ?? [])).map(
      (s) => targetSubject(s, this.cfg.target_subject_prefix, this.cfg.target_subject_remove),
    );
    // the source's limits and storage, as Choria copies them; undefined ones left out
    const kept = Object.fromEntries(
      (
        [
          "retention",
          "storage",
          "discard",
          "max_age",
          "max_bytes",
          "max_msgs",
          "max_msgs_per_subject",
          "max_msg_size",
          "num_replicas",
        ] as const
      )
        .map((k) => [k, source[k]])
        .filter(([, v]) => v !== undefined),
    ) as Partial<JsStreamConfig>;
    const want = {
      ...kept,
      name: this.cfg.target_stream,
      subjects,
      // copies are deduplicated by id: at least the source's window, and two minutes
      duplicate_window: Math.max(source.duplicate_window ?? 0, nanos(120_000)),
      description: `copy of ${this.cfg.stream} by Chorus replicator ${this.o.replicator}`,
    };
    try {
      await this.tjsm.streams.add(want);
    } catch (err) {
      // a clustered source copied into a single broker: keep one replica
      if ((want.num_replicas ?? 1) > 1) await this.tjsm.streams.add({ ...want, num_replicas: 1 });
      else throw err;
    }
    this.o.log.info(
      { stream: this.cfg.target_stream, subjects },
      `created target stream ${this.cfg.target_stream}`,
    );
  }

  private consumerConfig(start?: number): Partial<ConsumerConfig> {
    const c: Partial<ConsumerConfig> = {
      durable_name: this.durable,
      description: `Chorus replicator ${this.o.replicator}`,
      ack_policy: AckPolicy.Explicit,
      ack_wait: nanos(this.o.ackWaitMs ?? 30_000),
      max_ack_pending: this.cfg.batch,
      ...(this.cfg.filter_subject !== undefined && { filter_subject: this.cfg.filter_subject }),
    };
    if (this.cfg.ephemeral) {
      c.mem_storage = true;
      c.num_replicas = 1;
      c.inactive_threshold = nanos(50_000);
    }
    if (start !== undefined)
      return { ...c, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: start };
    const s = this.cfg.start;
    switch (s.kind) {
      case "sequence":
        return { ...c, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: s.seq };
      case "time":
        return { ...c, deliver_policy: DeliverPolicy.StartTime, opt_start_time: s.time.toISOString() };
      case "delta":
        return {
          ...c,
          deliver_policy: DeliverPolicy.StartTime,
          opt_start_time: new Date(Date.now() - s.ms).toISOString(),
        };
      case "end":
        return { ...c, deliver_policy: DeliverPolicy.New };
      default:
        return { ...c, deliver_policy: DeliverPolicy.All };
    }
  }

  /**
   * A consumer left with unacked messages (by a crashed or stopped instance) is recreated
   * from its ack floor, so those messages come again in order before newer ones, instead
   * of after ack_wait, behind them.
   */
  private async ensureConsumer(): Promise<void> {
    let info;
    try {
      info = await this.sjsm.consumers.info(this.cfg.stream, this.durable);
    } catch (err) {
      if (!/consumer not found/i.test((err as Error).message)) throw err;
      await this.sjsm.consumers.add(this.cfg.stream, this.consumerConfig());
      return;
    }
    const sameFilter = (info.config.filter_subject ?? "") === (this.cfg.filter_subject ?? "");
    const sameShape = info.config.max_ack_pending === this.cfg.batch && sameFilter;
    if (info.num_ack_pending === 0 && sameShape) return;
    const from = info.ack_floor.stream_seq + 1;
    this.suspectUpTo = Math.max(this.suspectUpTo, info.delivered.stream_seq);
    await this.recreate(from, `${info.num_ack_pending} unacked`);
  }

  private async recreate(from: number, why: string): Promise<void> {
    await this.sjsm.consumers.delete(this.cfg.stream, this.durable).catch(() => undefined);
    await this.sjsm.consumers.add(this.cfg.stream, this.consumerConfig(from));
    this.m.consumerRecreated.inc();
    this.o.log.warn(
      { consumer: this.durable, from },
      `recreated the source consumer at sequence ${from} (${why})`,
    );
  }

  private consume(): void {
    this.loop = (async () => {
      const c = await jetstream(this.o.source).consumers.get(this.cfg.stream, this.durable);
      const messages = await c.consume({ max_messages: this.cfg.batch });
      this.messages = messages;
      for await (const m of messages) {
        if (this.stopping) break;
        await this.handle(m);
      }
    })().catch((err: unknown) => {
      if (!this.stopping) {
        this.o.log.error({ err: (err as Error).message }, "the source consumer stopped: repairing");
        void this.repair("consume ended");
      }
    });
  }

  /** Consumer repair: the consumer is gone (a source broker lost it) or the loop ended. */
  private async checkHealth(): Promise<void> {
    if (this.stopping || this.repairing) return;
    try {
      await this.sjsm.consumers.info(this.cfg.stream, this.durable);
    } catch (err) {
      if (/consumer not found/i.test((err as Error).message)) await this.repair("consumer not found");
    }
  }

  private repair(why: string): Promise<void> {
    this.repairing ??= (async () => {
      try {
        this.messages?.stop();
        await this.loop?.catch(() => undefined);
        // resume at the oldest message not yet copied: what was copied after it comes
        // again and is recognised as a duplicate
        const from = this.inflight.size > 0 ? Math.min(...this.inflight) : this.maxSeen + 1;
        this.suspectUpTo = Math.max(this.suspectUpTo, this.maxSeen);
        this.inflight.clear();
        for (const l of this.lanes) l.queue.length = 0;
        await this.recreate(from, why);
        if (!this.stopping) this.consume();
      } catch (err) {
        this.o.log.warn(
          { err: (err as Error).message },
          "consumer repair failed; trying again at the next check",
        );
      } finally {
        this.repairing = undefined;
      }
    })();
    return this.repairing;
  }

  private async handle(m: JsMsg): Promise<void> {
    const seq = m.seq;
    if (this.inflight.has(seq)) return; // a redelivery of a message a lane still holds
    this.m.totalMessages.inc();
    this.m.totalBytes.inc(m.data.length);
    this.m.streamSequence.set(seq);
    if (seq > this.maxSeen) this.maxSeen = seq;
    if (this.cfg.maxAgeMs !== undefined && Date.now() - m.info.timestampNanos / 1e6 > this.cfg.maxAgeMs) {
      this.m.tooOld.inc();
      m.ack();
      return;
    }
    this.inflight.add(seq);
    this.m.inFlight.set(this.inflight.size);
    if (!this.cfg.parallel) {
      await this.copyAndAck(m);
      return;
    }
    const p = this.cfg.parallel;
    const key =
      p.header !== undefined
        ? (m.headers?.get(p.header) ?? "")
        : p.subjectToken === -1
          ? m.subject
          : (m.subject.split(".")[(p.subjectToken as number) - 1] ?? "");
    const lane = this.lanes[hash(key) % this.lanes.length] as Lane;
    lane.queue.push(m);
    if (!lane.running) void this.runLane(lane);
  }

  private async runLane(lane: Lane): Promise<void> {
    lane.running = true;
    try {
      while (lane.queue.length > 0 && !this.stopping) {
        await this.copyAndAck(lane.queue[0] as JsMsg);
        lane.queue.shift();
      }
    } finally {
      lane.running = false;
    }
  }

  /** Copies one message (retrying until it is stored or the copier stops), then acks it. */
  private async copyAndAck(m: JsMsg): Promise<void> {
    const t0 = performance.now();
    let value: string | undefined;
    if (this.o.filter) {
      const d = this.o.filter.decide({ subject: m.subject, data: m.data, headers: m.headers });
      if (!d.copy) {
        this.m.skipped.inc();
        this.m.skippedBytes.inc(m.data.length);
        this.done(m);
        return;
      }
      value = d.value;
    }
    const stored = await this.copy(m, m.seq);
    if (!stored) return; // stopping: left unacked for the next leader or start
    if (value !== undefined) this.o.filter?.copied(value);
    this.done(m);
    this.m.processingTime.observe((performance.now() - t0) / 1000);
  }

  private done(m: JsMsg): void {
    this.acks.push(m);
    if (this.acks.length === 1) setImmediate(() => this.flushAcks());
    this.inflight.delete(m.seq);
    this.m.inFlight.set(this.inflight.size);
  }

  // Acks decided while handling one round of socket reads go out in one write.
  private flushAcks(): void {
    const acks = this.acks;
    this.acks = [];
    for (const m of acks) {
      try {
        m.ack();
      } catch {
        this.m.ackFailed.inc();
      }
    }
  }

  /** The copy's headers: the source's (less JetStream control headers), the source marker and the id. */
  private copyHeaders(m: { headers?: MsgHdrs | undefined }, seq: number, timeMs: number): MsgHdrs {
    const h = natsHeaders();
    const src = m.headers;
    if (src) {
      for (const k of src.keys()) {
        const lower = k.toLowerCase();
        if (lower === "nats-msg-id") {
          h.set(ORIGINAL_ID_HEADER, src.get(k));
          continue;
        }
        if (DROPPED_HEADERS.has(lower)) continue;
        for (const v of src.values(k)) h.append(k, v);
      }
    }
    h.set(
      SOURCE_HEADER,
      `${this.cfg.stream} ${seq} ${this.o.replicator} ${this.cfg.name} ${Math.round(timeMs)}`,
    );
    h.set("Nats-Msg-Id", this.msgId(seq));
    return h;
  }

  /** The copy's deterministic Nats-Msg-Id: one source message, one id, whoever copies it. */
  private msgId(seq: number): string {
    // the replicator's name too: two cells' streams of one name, created in the same
    // millisecond, copied into one central stream must not share ids
    return `sr:${this.o.replicator}:${this.cfg.stream}:${this.created}:${seq}`;
  }

  /**
   * Publishes one copy, retrying with backoff (and telling the source we are still
   * working on it) until the target stores it; false when stopping first.
   */
  private async copy(m: JsMsg, seq: number): Promise<boolean> {
    const subject = targetSubject(m.subject, this.cfg.target_subject_prefix, this.cfg.target_subject_remove);
    const timeMs = m.info.timestampNanos / 1e6;
    if ((m.redelivered || seq <= this.suspectUpTo) && (await this.alreadyCopied(subject, seq))) {
      this.m.duplicates.inc();
      return true;
    }
    const headers = this.copyHeaders(m, seq, timeMs);
    let delay = 100;
    let lastWorking = Date.now();
    for (;;) {
      try {
        const ack = await this.pub.publish(subject, m.data, headers);
        if (ack.duplicate) this.m.duplicates.inc();
        else {
          this.m.copied.inc();
          this.m.copiedBytes.inc(m.data.length);
        }
        this.copiedCount++;
        return true;
      } catch (err) {
        this.m.handlerErrors.inc();
        if (this.stopping) return false;
        if (delay >= 3200)
          this.o.log.warn({ seq, subject, err: (err as Error).message }, "cannot copy to the target yet");
        await sleep(delay);
        delay = Math.min(delay * 2, 10_000);
        // keep the source from redelivering it while we retry
        if (Date.now() - lastWorking > 10_000 && !this.cfg.target_initiated) {
          m.working();
          lastWorking = Date.now();
        }
        if (this.stopping) return false;
      }
    }
  }

  /**
   * Whether the target's last copy on this subject came from this source at this
   * sequence or later. Only sound while per-subject order is kept (ordered mode, or
   * parallel keyed by subject): then a later copy on the subject means this one is there.
   */
  private async alreadyCopied(subject: string, seq: number): Promise<boolean> {
    if (this.cfg.parallel?.header !== undefined) return false;
    try {
      const last = await this.tjsm.streams.getMessage(this.cfg.target_stream, { last_by_subj: subject });
      const src = parseSourceHeader(last?.header.get(SOURCE_HEADER));
      return src !== undefined && src.stream === this.cfg.stream && src.seq >= seq;
    } catch {
      return false;
    }
  }

  /** Target-initiated: an ordered consumer from just after the last copy the target holds. */
  private async startTargetInitiated(): Promise<void> {
    const filter = this.cfg.filter_subject as string;
    const resume = await this.resumeFromTarget(filter);
    const start =
      resume !== undefined
        ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: resume }
        : this.orderedStart();
    const c = await jetstream(this.o.source).consumers.get(this.cfg.stream, {
      filter_subjects: filter,
      ...start,
    });
    this.o.log.info(
      { resume },
      resume !== undefined ? `resuming after the target's last copy, at ${resume}` : "starting",
    );
    this.loop = (async () => {
      const messages = await c.consume({ max_messages: this.cfg.batch });
      this.messages = messages;
      for await (const m of messages) {
        if (this.stopping) break;
        this.m.totalMessages.inc();
        this.m.totalBytes.inc(m.data.length);
        this.m.streamSequence.set(m.seq);
        const t0 = performance.now();
        if (!(await this.copy(m, m.seq))) break;
        this.m.processingTime.observe((performance.now() - t0) / 1000);
      }
    })().catch((err: unknown) => {
      if (!this.stopping) this.o.log.error({ err: (err as Error).message }, "the ordered consumer stopped");
    });
  }

  private orderedStart(): Partial<{
    deliver_policy: DeliverPolicy;
    opt_start_seq: number;
    opt_start_time: string;
  }> {
    const s = this.cfg.start;
    if (s.kind === "sequence") return { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: s.seq };
    if (s.kind === "time")
      return { deliver_policy: DeliverPolicy.StartTime, opt_start_time: s.time.toISOString() };
    if (s.kind === "delta")
      return {
        deliver_policy: DeliverPolicy.StartTime,
        opt_start_time: new Date(Date.now() - s.ms).toISOString(),
      };
    if (s.kind === "end") return { deliver_policy: DeliverPolicy.New };
    return { deliver_policy: DeliverPolicy.All };
  }

  /** The source sequence after the target's last copy on the mapped filter subject. */
  private async resumeFromTarget(filter: string): Promise<number | undefined> {
    const mapped = targetSubject(filter, this.cfg.target_subject_prefix, this.cfg.target_subject_remove);
    try {
      const last = await this.tjsm.streams.getMessage(this.cfg.target_stream, { last_by_subj: mapped });
      const src = parseSourceHeader(last?.header.get(SOURCE_HEADER));
      if (src && src.stream === this.cfg.stream) return src.seq + 1;
    } catch (err) {
      this.o.log.debug({ err: (err as Error).message }, "no copy on the target yet");
    }
    return undefined;
  }
}
