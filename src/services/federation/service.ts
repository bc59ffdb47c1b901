import { performance } from "node:perf_hooks";
import { pino, type Logger } from "pino";
import { closeNats, connectNats, type NatsConnection } from "../../core/connector/index.js";
import { replyPrefix } from "../../core/protocol/index.js";
import { securityFromSettings } from "../../core/security/index.js";
import {
  clientSettingsOf,
  loadFederationConfig,
  type FederationConfig,
  type FederationSide,
} from "./config.js";
import { FederationError } from "./errors.js";
import { FederationMetrics, type FederationPath, type Stage } from "./metrics.js";
import {
  FEDERATION_STATS_PROTOCOL,
  federationStatsSubject,
  newInstanceId,
  type FederationStats,
} from "./stats.js";
import {
  BadMessage,
  REPLY_INBOX,
  federationCollectiveSubject,
  federationRequestSubject,
  transformReply,
  transformRequest,
  type Forward,
} from "./transform.js";

export interface FederationBrokerOptions {
  /** default: pino at the config's loglevel to logfile or stderr */
  logger?: Logger;
}

interface Worker {
  fed: NatsConnection;
  col: NatsConnection;
}

/** The server a connection is on now, as go-choria's ConnectedServer names it. */
function connectedServer(nc: NatsConnection): string {
  return `nats://${nc.getServer()}`;
}

/**
 * A Choria federation broker: stateless, any number of instances per cluster. Each
 * worker holds one connection to the federation network, queue-subscribed
 * (`<cluster>_federation`) to `choria.federation.<cluster>.federation`, and one to the
 * collective, queue-subscribed (`<cluster>_collective`) to
 * `choria.federation.<cluster>.collective`. Requests fan out to their targets in the
 * collective; replies go back to the caller's saved reply subject.
 *
 *     const fb = FederationBroker.fromFile("federation.yaml");
 *     await fb.start();
 */
export class FederationBroker {
  readonly config: FederationConfig;
  readonly log: Logger;
  readonly metrics: FederationMetrics;
  /** random per process: tells apart instances with the same identity in stats answers */
  readonly instance = newInstanceId();
  private workers: Worker[] = [];
  private started = false;
  private startedAt = new Date();

  constructor(config: FederationConfig, opts: FederationBrokerOptions = {}) {
    this.config = config;
    this.log =
      opts.logger ??
      pino(
        { level: config.loglevel, base: { component: "federation", cluster: config.cluster } },
        config.logfile ? pino.destination({ dest: config.logfile, mkdir: true }) : pino.destination(2),
      );
    this.metrics = new FederationMetrics(config.cluster, config.identity);
  }

  static fromFile(path: string, opts: FederationBrokerOptions = {}): FederationBroker {
    return new FederationBroker(loadFederationConfig(path), opts);
  }

  get monitorPort(): number | undefined {
    return this.metrics.port;
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    try {
      const c = this.config;
      for (let i = 0; i < c.workers; i++) {
        const fed = await this.connect("federation", c.federation, i);
        const col = await this.connect("collective", c.collective, i).catch(async (err: unknown) => {
          await closeNats(fed);
          throw err;
        });
        this.workers.push({ fed, col });
        this.subscribe(i, fed, col);
      }
      const first = this.workers[0];
      if (first) this.serveStats(first.fed);
      this.startedAt = new Date();
      // the subscriptions are registered on the servers before start() returns
      await Promise.all(this.workers.flatMap((w) => [w.fed.flush(), w.col.flush()]));
      // metrics answer once the broker is subscribed: a scrape that works means it is serving
      if (c.monitor_port !== undefined) {
        const port = await this.metrics.listen(c.monitor_port);
        this.log.info({ port }, "serving metrics");
      }
      this.log.info(
        { workers: c.workers, federation: c.federation.servers, collective: c.collective.servers },
        `federation broker for cluster ${c.cluster} started`,
      );
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  private async connect(
    name: "federation" | "collective",
    side: FederationSide,
    i: number,
  ): Promise<NatsConnection> {
    const s = clientSettingsOf(`${name}.choria_config`, side.choria_config);
    const sec = securityFromSettings(s);
    try {
      return await connectNats({
        servers: side.servers,
        name: `chorus-federation-${this.config.cluster}-${name}-${i}`,
        inboxPrefix: replyPrefix(s.mainCollective, sec.callerId),
        seedHex: sec.seedHex,
        ...(sec.natsJwt !== undefined && { natsJwt: sec.natsJwt }),
        ...(sec.caFile !== undefined && { caFile: sec.caFile }),
        ...(sec.certFile !== undefined && { certFile: sec.certFile }),
        ...(sec.keyFile !== undefined && { keyFile: sec.keyFile }),
        logger: {
          info: (m: string) => this.log.info({ network: name }, m),
          warn: (m: string) => this.log.warn({ network: name }, m),
          error: (m: string) => this.log.error({ network: name }, m),
        },
      });
    } catch (err) {
      throw new FederationError(
        "connect",
        `${name}.servers: cannot connect to ${side.servers.join(", ")}: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }

  private subscribe(i: number, fed: NatsConnection, col: NatsConnection): void {
    const cluster = this.config.cluster;
    const m = this.metrics;
    // one worker does ingest, transform and egest in one step: the stage names in the
    // seen-by hop are go-choria's so tools reading hops see the same shape
    const processor = `${this.config.identity} (choria_nats_ingest:${i}, choria_request_transformer:${i}, choria_nats_egest:${i})`;
    const replyProcessor = `${this.config.identity} (choria_nats_ingest:${i}, choria_reply_transformer:${i}, choria_nats_egest:${i})`;
    const reqIn = m.stage("nats_ingest", i, "federation");
    const reqOut = m.stage("nats_egest", i, "collective");
    const repIn = m.stage("nats_ingest", i, "collective");
    const repOut = m.stage("nats_egest", i, "federation");
    fed.subscribe(federationRequestSubject(cluster), {
      queue: `${cluster}_federation`,
      callback: (err, msg) => {
        if (err) return;
        this.handle("request", reqIn, reqOut, col, () =>
          transformRequest(msg.data, cluster, {
            incoming: connectedServer(fed),
            processor,
            outgoing: connectedServer(col),
          }),
        );
      },
    });
    col.subscribe(federationCollectiveSubject(cluster), {
      queue: `${cluster}_collective`,
      callback: (err, msg) => {
        if (err) return;
        this.handle("reply", repIn, repOut, fed, () =>
          transformReply(msg.data, {
            incoming: connectedServer(col),
            processor: replyProcessor,
            outgoing: connectedServer(fed),
          }),
        );
      },
    });
  }

  /** This instance's counts, as answered on the stats subject. */
  stats(): FederationStats {
    const c = this.metrics.counts;
    const copy = (p: "request" | "reply") => ({ ...c[p], bad: { ...c[p].bad } });
    return {
      protocol: FEDERATION_STATS_PROTOCOL,
      cluster: this.config.cluster,
      identity: this.config.identity,
      instance: this.instance,
      started: this.startedAt.toISOString(),
      time: new Date().toISOString(),
      workers: this.config.workers,
      request: copy("request"),
      reply: copy("reply"),
    };
  }

  /**
   * Every instance (no queue group) answers `choria.federation.<cluster>.stats` with its
   * counts, to a reply inbox only: the broker's credential may publish to more.
   */
  private serveStats(fed: NatsConnection): void {
    const cluster = this.config.cluster;
    let warned = false;
    fed.subscribe(federationStatsSubject(cluster), {
      callback: (err, msg) => {
        if (err) {
          if (!warned) this.log.warn(`not answering ${federationStatsSubject(cluster)}: ${err.message}`);
          warned = true;
          return;
        }
        if (!msg.reply || !REPLY_INBOX.test(msg.reply)) {
          this.metrics.bad.inc({ cluster, path: "stats", reason: "bad_reply" });
          this.log.debug({ reply: msg.reply?.slice(0, 200) }, "stats request without a reply inbox");
          return;
        }
        try {
          fed.publish(msg.reply, JSON.stringify(this.stats()));
        } catch (e) {
          this.log.warn(`could not answer a stats request: ${(e as Error).message}`);
        }
      },
    });
  }

  private handle(
    path: FederationPath,
    stageIn: Stage,
    stageOut: Stage,
    out: NatsConnection,
    transform: () => Forward,
  ): void {
    const m = this.metrics;
    const t0 = performance.now();
    const counts = m.counts[path];
    stageIn.received.inc();
    counts.received++;
    let f: Forward;
    try {
      f = transform();
    } catch (err) {
      const reason = err instanceof BadMessage ? err.reason : "malformed";
      m.drop(path, reason, stageIn.labels);
      this.log.warn({ path, reason }, `dropped a ${path}: ${(err as Error).message}`);
      return;
    }
    for (const s of f.subjects) {
      try {
        out.publish(s, f.data);
        stageOut.published.inc();
        counts.published++;
      } catch (err) {
        m.drop(path, "publish", stageOut.labels);
        this.log.warn({ path, subject: s }, `could not publish ${f.requestId}: ${(err as Error).message}`);
      }
    }
    if (this.log.isLevelEnabled("debug"))
      this.log.debug({ path, request: f.requestId, targets: f.subjects.length }, `forwarded a ${path}`);
    stageIn.time.observe((performance.now() - t0) / 1000);
  }

  async stop(): Promise<void> {
    const ws = this.workers;
    this.workers = [];
    await Promise.all(ws.flatMap((w) => [closeNats(w.fed), closeNats(w.col)]));
    await this.metrics.stop();
    this.started = false;
  }
}
