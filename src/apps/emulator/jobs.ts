import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstream, type JetStreamClient } from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/transport-node";
import type { Logger } from "pino";
import type { NatsConnection } from "../../core/connector/index.js";
import {
  Jobs,
  encodeJobEvent,
  jobEventSubject,
  type EventSink,
  type JobEvent,
} from "../../services/jobs/index.js";
import { localInvoker, type NodeRuntime } from "../../server/index.js";

/** Event publishing figures of the emulated job agent. */
export interface EmulatedJobsStats {
  /** nodes that ran a workflow (the only ones holding job state) */
  nodes: number;
  published: number;
  /** events given up after their retries (the broker or the stream was away) */
  lost: number;
}

const TRIES = 5;
/** per-step log cap of an emulated node: the logs of many nodes live in memory */
const MAX_OUTPUT = 64 * 1024;

/**
 * Where emulated executions live: tmpfs when there is one. The engine fsyncs every
 * status change, which is right for a real node and pointless here; on disk, 50 nodes'
 * fsyncs held the emulator's event loop (and its replies) for seconds.
 */
function scratchRoot(): string {
  return mkdtempSync(join(existsSync("/dev/shm") ? "/dev/shm" : tmpdir(), "chorus-emulator-jobs-"));
}
const ACK_TIMEOUT_MS = 2000;

/**
 * The job agent's executions for emulated nodes: each runs its workflows inside this
 * process (no manager per node) and publishes their events straight to the broker
 * with a JetStream publish, as a real node's spool would send them. A node gets an
 * executions directory (under one temporary root) only when a workflow runs on it.
 */
export class EmulatedJobs {
  private readonly hosts = new Map<string, Jobs>();
  /** each node's publish queue, so stop() can wait for events still on their way */
  private readonly queues = new Map<string, Promise<void>>();
  private root: string | undefined;
  private js: JetStreamClient | undefined;
  private published = 0;
  private lost = 0;
  /** stopping: queued events get one try each; after one fails the rest are given up */
  private closing: "no" | "trying" | "given_up" = "no";

  constructor(
    private readonly o: {
      collective: string;
      /** the connection events leave on (its inbox must be one the broker lets it read) */
      connection: () => NatsConnection | undefined;
      log: Logger;
    },
  ) {}

  /** The node's executions; made only when `create` (run_workflow) asks. */
  host(node: NodeRuntime, create: boolean): Jobs | undefined {
    let jobs = this.hosts.get(node.identity);
    if (jobs || !create) return jobs;
    this.root ??= scratchRoot();
    jobs = new Jobs({
      dir: join(this.root, node.identity),
      identity: node.identity,
      collective: this.o.collective,
      maxOutputBytes: MAX_OUTPUT,
      inline: { sink: this.sink(node.identity), invoker: localInvoker(node, `job=${node.identity}`) },
    });
    this.hosts.set(node.identity, jobs);
    return jobs;
  }

  stats(): EmulatedJobsStats {
    return { nodes: this.hosts.size, published: this.published, lost: this.lost };
  }

  /** Events of one node, published in the order the engine emitted them. */
  private sink(identity: string): EventSink {
    return {
      emit: (e) => {
        const queue = this.queues.get(identity) ?? Promise.resolve();
        this.queues.set(
          identity,
          queue.then(() => this.publish(identity, e)),
        );
      },
    };
  }

  private async publish(identity: string, e: JobEvent): Promise<void> {
    const doc = encodeJobEvent(e, identity);
    // the CloudEvent id doubles as Nats-Msg-Id: a retry after a lost ack is stored once
    const id = (JSON.parse(doc) as { id: string }).id;
    const subject = `${this.o.collective}.submission.in.${jobEventSubject(e)}`;
    const h = natsHeaders();
    h.set("Choria-Identity", identity);
    h.set("Choria-Sender", "chorus-jobs");
    h.set("Choria-Reliable", "1");
    let why = "no broker connection";
    const tries = this.closing === "no" ? TRIES : this.closing === "trying" ? 1 : 0;
    for (let attempt = 0; attempt < tries; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, 250 * 2 ** attempt));
      const nc = this.o.connection();
      if (!nc) continue;
      try {
        this.js ??= jetstream(nc);
        await this.js.publish(subject, doc, { msgID: id, headers: h, timeout: ACK_TIMEOUT_MS });
        this.published++;
        return;
      } catch (err) {
        why = (err as Error).message;
        // no retry can fix a refused subject
        if (/permissions violation/i.test(why)) break;
      }
    }
    this.lost++;
    if (this.closing === "trying") this.closing = "given_up";
    // a credential without the submission right loses every event: say so, not 1000 times
    if ((this.lost & (this.lost - 1)) === 0)
      this.o.log.warn(
        { identity, event: e.event, execution: e.execution_id, err: why, lost: this.lost },
        "job event not published (does the emulator's credential have the submission permission?)",
      );
  }

  /** Stops what still runs (emulated executions end with the emulator) and removes their files. */
  async stop(): Promise<void> {
    const running = [...this.hosts.values()].flatMap((j) =>
      j.running().map((s) => ({ j, id: s.execution_id })),
    );
    await Promise.allSettled(running.map(({ j, id }) => j.stop(id)));
    this.closing = "trying";
    await Promise.allSettled(this.queues.values());
    this.queues.clear();
    this.hosts.clear();
    if (this.root) rmSync(this.root, { recursive: true, force: true });
    this.root = undefined;
    this.closing = "no";
  }
}
