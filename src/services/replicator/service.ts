import { pino, type Logger as Pino } from "pino";
import { closeNats, type NatsConnection } from "../../core/connector/index.js";
import { Election } from "../streams/index.js";
import type { Logger } from "../../core/util/index.js";
import { loadReplicatorConfig, type ReplicatorConfig, type StreamConfig } from "./config.js";
import { connectEndpoint, endpointInboxPrefix } from "./connect.js";
import { StreamCopier } from "./copier.js";
import { Heartbeats } from "./heartbeat.js";
import { ReplicatorMetrics } from "./metrics.js";
import type { SampledCopy } from "./sampled.js";

export interface ReplicatorOptions {
  /** default: pino at the config's loglevel to logfile or stderr */
  logger?: Pino;
  /** source consumer health check period, ms (default 60 s) */
  healthIntervalMs?: number;
  /** source consumer ack wait, ms (default 30 s) */
  ackWaitMs?: number;
  /** election TTL, ms (default: the election bucket's) */
  electionTtlMs?: number;
  /** sampling's clock and scrub period, for tests */
  sampling?: { now?: () => number; scrubIntervalMs?: number; gossipIntervalMs?: number };
}

/** What one configured stream is doing, for status and tests. */
export interface StreamState {
  name: string;
  stream: string;
  /** copying now (no election, or this instance leads it) */
  active: boolean;
  copied: number;
}

/** One configured stream: its connections, election, sampling and copier. */
class StreamReplicator {
  private source: NatsConnection | undefined;
  private target: NatsConnection | undefined;
  private copier: StreamCopier | undefined;
  private election: Election | undefined;
  private sampled: SampledCopy | undefined;
  private activeNow = false;
  private switching: Promise<void> = Promise.resolve();
  copied = 0;

  constructor(
    readonly cfg: StreamConfig,
    private readonly r: Replicator,
  ) {}

  get active(): boolean {
    return this.activeNow;
  }

  async start(): Promise<void> {
    const { cfg, r } = this;
    const log = r.log.child({ stream: cfg.name });
    this.source = await connectEndpoint(
      cfg.source,
      `chorus-replicator-${r.config.name}-${cfg.name}-source`,
      log,
    );
    this.target = await connectEndpoint(
      cfg.target,
      `chorus-replicator-${r.config.name}-${cfg.name}-target`,
      log,
    );
    if (cfg.sampling) {
      // sampling code is loaded only by replicators that sample
      const { SampledCopy } = await import("./sampled.js");
      this.sampled = new SampledCopy(cfg, r.config.name, this.source, r.metrics, log, r.opts.sampling ?? {});
      this.sampled.start();
    }
    if (cfg.leader_election_name === undefined) {
      await this.activate();
      return;
    }
    const labels = {
      election: `SR_${r.config.name}_${cfg.name}`,
      identity: cfg.leader_election_name,
      replicator: r.config.name,
    };
    r.metrics.isLeader.set(labels, 0);
    this.election = new Election(this.source, {
      name: labels.election,
      candidate: cfg.leader_election_name,
      ...(r.opts.electionTtlMs !== undefined && { ttlMs: r.opts.electionTtlMs }),
      logger: log,
      onWon: () => {
        r.metrics.isLeader.set(labels, 1);
        this.switching = this.switching.then(() => this.activate());
      },
      onLost: () => {
        r.metrics.isLeader.set(labels, 0);
        this.switching = this.switching.then(() => this.deactivate());
      },
    });
    await this.election.start();
  }

  /** Leader (or no election): copy, advise. */
  private async activate(): Promise<void> {
    if (this.activeNow || !this.source || !this.target) return;
    const { cfg, r } = this;
    this.copier = new StreamCopier({
      config: cfg,
      replicator: r.config.name,
      source: this.source,
      target: this.target,
      metrics: r.metrics,
      log: r.log.child({ stream: cfg.name }),
      ...(this.sampled && { filter: this.sampled }),
      ...(endpointInboxPrefix(cfg.target) !== undefined && {
        targetInboxPrefix: endpointInboxPrefix(cfg.target) as string,
      }),
      ...(r.opts.healthIntervalMs !== undefined && { healthIntervalMs: r.opts.healthIntervalMs }),
      ...(r.opts.ackWaitMs !== undefined && { ackWaitMs: r.opts.ackWaitMs }),
    });
    this.sampled?.resume();
    await this.copier.start();
    this.activeNow = true;
    r.log.info({ stream: cfg.name }, `copying ${cfg.stream} to ${cfg.target_stream}`);
  }

  /** Lost the election: stop copying and advising; the new leader takes over. */
  private async deactivate(): Promise<void> {
    if (!this.activeNow) return;
    this.activeNow = false;
    this.sampled?.pause();
    await this.copier?.stop();
    this.copied += this.copier?.copiedCount ?? 0;
    this.copier = undefined;
    this.r.log.info({ stream: this.cfg.name }, "not the leader: stopped copying");
  }

  state(): StreamState {
    return {
      name: this.cfg.name,
      stream: this.cfg.stream,
      active: this.activeNow,
      copied: this.copied + (this.copier?.copiedCount ?? 0),
    };
  }

  async stop(): Promise<void> {
    await this.election?.stop();
    await this.switching;
    await this.deactivate();
    await this.sampled?.stop();
    await Promise.all([this.source, this.target].map((nc) => (nc ? closeNats(nc) : undefined)));
  }
}

/**
 * The stream replicator: copies JetStream streams from one broker to another, each
 * configured stream on its own connections, election and copier.
 *
 *     const r = Replicator.fromFile("replicator.yaml");
 *     await r.start();
 */
export class Replicator {
  readonly config: ReplicatorConfig;
  readonly log: Pino;
  readonly metrics = new ReplicatorMetrics();
  readonly opts: ReplicatorOptions;
  private streams: StreamReplicator[] = [];
  private heartbeats: Heartbeats | undefined;
  private hbConn: NatsConnection | undefined;
  private hbElection: Election | undefined;

  constructor(config: ReplicatorConfig, opts: ReplicatorOptions = {}) {
    this.config = config;
    this.opts = opts;
    this.log =
      opts.logger ??
      pino(
        { level: config.loglevel, base: { component: "replicator", replicator: config.name } },
        config.logfile ? pino.destination({ dest: config.logfile, mkdir: true }) : pino.destination(2),
      );
  }

  static fromFile(path: string, opts: ReplicatorOptions = {}): Replicator {
    return new Replicator(loadReplicatorConfig(path), opts);
  }

  get monitorPort(): number | undefined {
    return this.metrics.port;
  }

  async start(): Promise<void> {
    try {
      for (const s of this.config.streams) {
        const sr = new StreamReplicator(s, this);
        this.streams.push(sr);
        await sr.start();
      }
      await this.startHeartbeats();
      if (this.config.monitor_port !== undefined) {
        const port = await this.metrics.listen(this.config.monitor_port);
        this.log.info({ port }, "serving metrics");
      }
      this.log.info(
        { streams: this.config.streams.map((s) => s.name) },
        `replicator ${this.config.name} started`,
      );
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  private async startHeartbeats(): Promise<void> {
    const hb = this.config.heartbeats;
    if (!hb) return;
    this.hbConn = await connectEndpoint(
      hb.target,
      `chorus-replicator-${this.config.name}-heartbeats`,
      this.log as Logger,
    );
    if (hb.leader_election) {
      this.hbElection = new Election(this.hbConn, {
        name: `SR_${this.config.name}_HB`,
        candidate: `${this.config.name}-${process.pid}`,
        ...(this.opts.electionTtlMs !== undefined && { ttlMs: this.opts.electionTtlMs }),
      });
      await this.hbElection.start();
    }
    const election = this.hbElection;
    this.heartbeats = new Heartbeats(hb, this.hbConn, this.config.name, this.metrics, this.log, () =>
      election ? election.isLeader : true,
    );
    this.heartbeats.start();
  }

  /** Each configured stream: copying or standing by, and how many it copied. */
  status(): StreamState[] {
    return this.streams.map((s) => s.state());
  }

  async stop(): Promise<void> {
    this.heartbeats?.stop();
    await this.hbElection?.stop();
    if (this.hbConn) await closeNats(this.hbConn);
    await Promise.all(this.streams.map((s) => s.stop().catch(() => undefined)));
    this.streams = [];
    await this.metrics.stop();
  }
}
