import type { KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "../../core/util/index.js";
import { StreamsError } from "./errors.js";
import { openBucket } from "./kv.js";
import { LEADER_ELECTION_BUCKET } from "./managed.js";

export const ELECTION_TTL_MIN_MS = 1000;
export const ELECTION_TTL_MAX_MS = 3_600_000;

export interface ElectionOptions {
  /** what is being elected, a KV key (e.g. "scheduler") */
  name: string;
  /** this candidate's name, stored as the key's value while it leads */
  candidate: string;
  /** default CHORIA_LEADER_ELECTION */
  bucket?: string;
  /**
   * Leadership TTL. Defaults to the bucket's max age, which is what actually
   * expires a leader that stops refreshing; must be 1 s .. 1 h.
   */
  ttlMs?: number;
  onWon?: () => void;
  onLost?: () => void;
  logger?: Pick<Logger, "info" | "warn">;
}

export type ElectionState = "candidate" | "leader" | "stopped";

const KEY_RE = /^[-/_=.a-zA-Z0-9]+$/;

/**
 * Leader election on a KV bucket whose max age is the TTL: a candidate wins by
 * creating the key (only possible once the previous leader's value expired or was
 * deleted), and the leader keeps it by updating it with its last revision every
 * 0.75 × TTL. A failed refresh means someone else may lead, so it steps down at once.
 */
export class Election {
  readonly name: string;
  readonly candidate: string;
  private readonly o: ElectionOptions;
  private readonly nc: NatsConnection;
  private kv: KV | undefined;
  private ttlMs = 0;
  private revision = 0;
  private st: ElectionState = "stopped";
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(nc: NatsConnection, o: ElectionOptions) {
    if (!KEY_RE.test(o.name) || o.name.startsWith(".") || o.name.endsWith(".")) {
      throw new StreamsError("bad_election", `invalid election name "${o.name}"`);
    }
    if (!o.candidate) throw new StreamsError("bad_election", "a candidate name is required");
    this.nc = nc;
    this.o = o;
    this.name = o.name;
    this.candidate = o.candidate;
  }

  get state(): ElectionState {
    return this.st;
  }

  get isLeader(): boolean {
    return this.st === "leader";
  }

  /** The TTL in use (known after start). */
  get ttl(): number {
    return this.ttlMs;
  }

  /** Opens the bucket, checks the TTL and starts campaigning. */
  async start(): Promise<void> {
    if (this.st !== "stopped") return;
    const bucket = this.o.bucket ?? LEADER_ELECTION_BUCKET;
    const kv = await openBucket(this.nc, bucket);
    const maxAgeMs = (await kv.status()).ttl;
    const ttl = this.o.ttlMs ?? maxAgeMs;
    if (!(ttl >= ELECTION_TTL_MIN_MS && ttl <= ELECTION_TTL_MAX_MS)) {
      throw new StreamsError(
        "bad_election",
        `election TTL must be between 1s and 1h, got ${ttl}ms` +
          (this.o.ttlMs === undefined ? ` (max age of bucket ${bucket})` : ""),
      );
    }
    this.kv = kv;
    this.ttlMs = ttl;
    this.st = "candidate";
    this.schedule(0);
  }

  /**
   * Stops campaigning. A leader deletes its key (only if still at its revision) so
   * another candidate can take over without waiting for the TTL.
   */
  async stop(): Promise<void> {
    if (this.st === "stopped") return;
    const wasLeader = this.st === "leader";
    this.st = "stopped";
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
    if (wasLeader && this.kv) {
      try {
        await this.kv.delete(this.name, { previousSeq: this.revision });
      } catch {
        // someone else already leads, or we are offline: the TTL takes care of it
      }
      this.o.onLost?.();
    }
  }

  // a method, not an inline comparison: the state changes across awaits
  private isStopped(): boolean {
    return this.st === "stopped";
  }

  private schedule(ms: number): void {
    if (this.st === "stopped") return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.running = this.tick().finally(() => (this.running = undefined));
    }, ms);
  }

  private async tick(): Promise<void> {
    const kv = this.kv;
    if (!kv || this.st === "stopped") return;
    const interval = Math.round(this.ttlMs * 0.75);
    if (this.st === "leader") {
      try {
        this.revision = await kv.update(this.name, this.candidate, this.revision);
      } catch (err) {
        if (this.isStopped()) return;
        this.st = "candidate";
        this.o.logger?.warn(`lost leadership of ${this.name}: ${(err as Error).message}`);
        this.o.onLost?.();
      }
      // retry as a candidate after a random part of the interval, not in lockstep
      this.schedule(this.st === "leader" ? interval : Math.round(interval * Math.random()));
      return;
    }
    try {
      this.revision = await kv.create(this.name, this.candidate);
      if (this.st !== "candidate") {
        // stopped while the create was in flight: give the key back
        await kv.delete(this.name, { previousSeq: this.revision }).catch(() => {});
        return;
      }
      this.st = "leader";
      this.o.logger?.info(`${this.candidate} became leader of ${this.name}`);
      this.o.onWon?.();
      this.schedule(interval);
    } catch {
      // the key exists: someone leads; try again within the interval (with jitter)
      if (!this.isStopped()) this.schedule(Math.round(interval * (0.5 + Math.random() * 0.5)));
    }
  }
}

/** The current leader's candidate name, or undefined when there is none. */
export async function electionLeader(
  nc: NatsConnection,
  name: string,
  bucket = LEADER_ELECTION_BUCKET,
): Promise<string | undefined> {
  const kv = await openBucket(nc, bucket);
  const e = await kv.get(name);
  return e && e.operation === "PUT" ? e.string() : undefined;
}
