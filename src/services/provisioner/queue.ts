import { createHash } from "node:crypto";
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  RetentionPolicy,
  StorageType,
  jetstream,
  jetstreamManager,
  type Consumer,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type StreamConfig,
} from "@nats-io/jetstream";
import type { NatsConnection } from "../../core/connector/index.js";
import { ChorusError } from "../../core/protocol/errors.js";
import { nanos } from "../../services/streams/index.js";
import type { Logger } from "../../core/util/index.js";

export const PROVISIONING_STREAM = "CHORUS_PROVISIONING";
export const PROVISIONING_SUBJECTS = "chorus.provisioning.queue";
export const PROVISIONING_CONSUMER = "CHORUS_PROVISIONER";

export class QueueError extends ChorusError {}

/** One node to provision, as queued. */
export interface WorkItem {
  identity: string;
  /** how it was found */
  source: "event" | "discovery" | "manual";
  /** when it was queued, ISO 8601 */
  queued: string;
}

export interface WorkQueueOptions {
  /** how long a worker may hold an item without an in-progress ack */
  ackWaitMs: number;
  replicas?: number;
  /**
   * Re-offers of one node within this window are dropped (Nats-Msg-Id): long enough
   * that a node restarting after provisioning is not queued again before it is gone.
   */
  duplicateWindowMs: number;
  log?: Pick<Logger, "info" | "warn">;
}

/**
 * The subject of one node's item. Identities may hold characters a subject token may
 * not, so the token is a hash; the identity is in the body.
 */
export function queueSubject(identity: string): string {
  return `${PROVISIONING_SUBJECTS}.${createHash("sha256").update(identity).digest("hex").slice(0, 32)}`;
}

/** The stream: a work queue holding at most one item per node, waiting or being worked on. */
export function provisioningStreamConfig(o: WorkQueueOptions): Partial<StreamConfig> & { name: string } {
  return {
    name: PROVISIONING_STREAM,
    subjects: [`${PROVISIONING_SUBJECTS}.>`],
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.File,
    num_replicas: o.replicas ?? 1,
    // one item per node: a second offer is refused while the first waits or is in progress
    max_msgs_per_subject: 1,
    discard: DiscardPolicy.New,
    discard_new_per_subject: true,
    duplicate_window: nanos(o.duplicateWindowMs),
  };
}

function isPerSubjectLimit(err: unknown): boolean {
  const e = err as { message?: string; code?: number; apiError?: () => { err_code?: number } };
  const errCode = typeof e.apiError === "function" ? e.apiError().err_code : undefined;
  return errCode === 10077 || /maximum messages per subject/i.test(e.message ?? "");
}

/**
 * The persistent work queue in JetStream: producers offer nodes (deduplicated), N
 * workers in any number of provisioner processes pull them with explicit acks. An
 * item leaves the queue only when acked or terminated; one held by a process that
 * died comes back after ack_wait.
 */
export class WorkQueue {
  private readonly js: JetStreamClient;
  private jsm: JetStreamManager | undefined;
  private consumer: Consumer | undefined;

  constructor(
    private readonly nc: NatsConnection,
    private readonly o: WorkQueueOptions,
  ) {
    this.js = jetstream(nc, { checkAPI: false, timeout: 5000 });
  }

  private async manager(): Promise<JetStreamManager> {
    // no account-info probe: the credential may touch only its own stream
    this.jsm ??= await jetstreamManager(this.nc, { checkAPI: false, timeout: 5000 });
    return this.jsm;
  }

  /** Creates (or updates) the stream and the shared durable consumer. */
  async ensure(): Promise<void> {
    const jsm = await this.manager();
    const want = provisioningStreamConfig(this.o);
    try {
      const info = await jsm.streams.info(PROVISIONING_STREAM).catch((err: unknown) => {
        if ((err as { name?: string }).name === "StreamNotFoundError" || /not found/i.test(String(err)))
          return undefined;
        throw err;
      });
      if (!info) {
        await jsm.streams.add(want);
        this.o.log?.info(`created the ${PROVISIONING_STREAM} work queue stream`);
      } else {
        if (info.config.retention !== RetentionPolicy.Workqueue)
          throw new QueueError(
            "stream",
            `stream ${PROVISIONING_STREAM} exists but is not a work queue (retention ${info.config.retention}); remove it`,
          );
        const c = info.config;
        if (
          c.duplicate_window !== want.duplicate_window ||
          c.max_msgs_per_subject !== 1 ||
          c.discard_new_per_subject !== true ||
          c.discard !== DiscardPolicy.New
        )
          await jsm.streams.update(PROVISIONING_STREAM, { ...c, ...want });
      }
      const consumer = {
        durable_name: PROVISIONING_CONSUMER,
        ack_policy: AckPolicy.Explicit,
        ack_wait: nanos(this.o.ackWaitMs),
        deliver_policy: DeliverPolicy.All,
        filter_subject: `${PROVISIONING_SUBJECTS}.>`,
        // attempts are counted by the worker, which terminates an item after the last
        max_deliver: -1,
        max_ack_pending: 10_000,
      };
      const ci = await jsm.consumers.info(PROVISIONING_STREAM, PROVISIONING_CONSUMER).catch(() => undefined);
      if (!ci) await jsm.consumers.add(PROVISIONING_STREAM, consumer);
      else if (ci.config.ack_wait !== consumer.ack_wait)
        await jsm.consumers.update(PROVISIONING_STREAM, PROVISIONING_CONSUMER, {
          ack_wait: consumer.ack_wait,
        });
      this.consumer = await this.js.consumers.get(PROVISIONING_STREAM, PROVISIONING_CONSUMER);
    } catch (err) {
      if (err instanceof QueueError) throw err;
      throw new QueueError(
        "stream",
        `cannot set up the ${PROVISIONING_STREAM} work queue: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }

  /**
   * Offers a node. "duplicate" when it is already queued or in progress, or was offered
   * within the duplicate window.
   */
  async enqueue(identity: string, source: WorkItem["source"]): Promise<"queued" | "duplicate"> {
    const item: WorkItem = { identity, source, queued: new Date().toISOString() };
    try {
      const ack = await this.js.publish(queueSubject(identity), JSON.stringify(item), { msgID: identity });
      return ack.duplicate ? "duplicate" : "queued";
    } catch (err) {
      if (isPerSubjectLimit(err)) return "duplicate";
      throw new QueueError("enqueue", `cannot queue ${identity}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** The next item, or undefined when none came within `expiresMs`. */
  async next(expiresMs: number): Promise<JsMsg | undefined> {
    if (!this.consumer) throw new QueueError("stream", "the work queue is not set up (call ensure first)");
    return (await this.consumer.next({ expires: Math.max(1000, expiresMs) })) ?? undefined;
  }

  /** Items waiting for a worker, and items a worker holds now. */
  async depth(): Promise<{ waiting: number; inProgress: number }> {
    const jsm = await this.manager();
    const ci = await jsm.consumers.info(PROVISIONING_STREAM, PROVISIONING_CONSUMER);
    return { waiting: ci.num_pending + ci.num_redelivered, inProgress: ci.num_ack_pending };
  }
}

/** Parses an item's body; undefined for anything that is not one. */
export function parseWorkItem(m: Pick<JsMsg, "data">): WorkItem | undefined {
  try {
    const v = JSON.parse(Buffer.from(m.data).toString("utf8")) as Partial<WorkItem>;
    if (typeof v.identity !== "string" || v.identity === "") return undefined;
    return {
      identity: v.identity,
      source: v.source === "event" || v.source === "discovery" ? v.source : "manual",
      queued: typeof v.queued === "string" ? v.queued : "",
    };
  } catch {
    return undefined;
  }
}
