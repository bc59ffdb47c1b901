import { existsSync } from "node:fs";
import {
  AckPolicy,
  DeliverPolicy,
  RetentionPolicy,
  StorageType,
  jetstream,
  jetstreamManager,
  type ConsumerConfig,
  type ConsumerMessages,
  type JetStreamManager,
  type JsMsg,
} from "@nats-io/jetstream";
import type { FastifyInstance } from "fastify";
import { pino, type Logger } from "pino";
import type { Subscription } from "@nats-io/transport-node";
import { ASYNC_REPLIES_STREAM, ReceiverApi, issuerTrust, type ReplyTrust } from "../../client/index.js";
import { clientSettings, loadConfig } from "../../core/config/index.js";
import { closeNats, connectNats, type NatsConnection } from "../../core/connector/index.js";
import { ASYNC_RECORD_WILDCARD, ASYNC_REPLY_WILDCARD, replyPrefix } from "../../core/protocol/index.js";
import { securityFromSettings } from "../../core/security/index.js";
import { MetricsEndpoint, readTokenFile } from "../../core/util/index.js";
import { ensureStreams, nanos } from "../streams/index.js";
import { Batcher } from "./batcher.js";
import { loadReceiverConfig, type ReceiverConfig } from "./config.js";
import { ReceiverConfigError } from "./errors.js";
import { buildReceiverHttp } from "./http.js";
import { parseMessage } from "./ingest.js";
import { ReceiverMetrics } from "./metrics.js";
import { ReplyStore } from "./store.js";

/** The stream the receiver owns; clients publish request records into it. */
export const REPLIES_STREAM = ASYNC_REPLIES_STREAM;
/** The queue group of direct mode: each message goes to one receiver. */
export const RECEIVER_QUEUE = "chorus-receiver";
const DUPLICATE_WINDOW_MS = 120_000;

export interface ReceiverServiceOptions {
  /** default: pino at the config's loglevel to logfile or stderr */
  logger?: Logger;
  /** how often a watch looks for changes, ms (default 200) */
  watchIntervalMs?: number;
  /** how long a watch of a request not stored yet waits for it before 404, ms (default 5 s) */
  watchWaitMs?: number;
}

/** The CHORUS_REPLIES stream: async replies and request records, kept max_age. */
export function repliesStreamConfig(c: Pick<ReceiverConfig, "streamMaxAgeMs" | "stream_replicas">) {
  return {
    name: REPLIES_STREAM,
    subjects: [ASYNC_REPLY_WILDCARD, ASYNC_RECORD_WILDCARD],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    max_age: nanos(c.streamMaxAgeMs),
    num_replicas: c.stream_replicas,
    // a client that republishes a record (after a lost ack) stores it once
    duplicate_window: nanos(DUPLICATE_WINDOW_MS),
  };
}

/**
 * The reply receiver: takes asynchronous replies and request records from the
 * CHORUS_REPLIES stream (a durable pull consumer every receiver shares; acked after the
 * batch is committed, so a receiver that dies loses nothing) or, in direct mode, from a
 * core NATS queue group, and stores each exactly once in SQLite or PostgreSQL. Serves the
 * HTTP API over the store. Embeddable:
 *
 *     const r = ReceiverService.fromFile("receiver.yaml");
 *     await r.start();
 *     await r.stop();
 */
/** The API token from its file (16+ characters), or a config error naming the key. */
function readApiToken(file: string): string {
  try {
    return readTokenFile(file, 16);
  } catch (err) {
    throw new ReceiverConfigError("config", `http_token_file: ${(err as Error).message}`, { cause: err });
  }
}

export class ReceiverService {
  readonly config: ReceiverConfig;
  readonly log: Logger;
  readonly metrics: ReceiverMetrics;
  private nc: NatsConnection | undefined;
  private storeRef: ReplyStore | undefined;
  private batcher: Batcher | undefined;
  private messages: ConsumerMessages | undefined;
  private subs: Subscription[] = [];
  private http: FastifyInstance | undefined;
  private httpToken: string | undefined;
  private trust: ReplyTrust | undefined;
  private pendingTimer: NodeJS.Timeout | undefined;
  private monitor: MetricsEndpoint | undefined;
  private started = false;

  constructor(
    config: ReceiverConfig,
    private readonly opts: ReceiverServiceOptions = {},
  ) {
    this.config = config;
    this.log =
      opts.logger ??
      pino(
        { name: "chorus-receiver", level: config.loglevel },
        config.logfile ? pino.destination({ dest: config.logfile, mkdir: true }) : pino.destination(2),
      );
    this.metrics = new ReceiverMetrics();
  }

  static fromFile(path: string, opts: ReceiverServiceOptions = {}): ReceiverService {
    return new ReceiverService(loadReceiverConfig(path), opts);
  }

  /** The open store (while started). */
  get store(): ReplyStore | undefined {
    return this.storeRef;
  }

  get monitorPort(): number | undefined {
    return this.monitor?.port;
  }

  /** Where the HTTP API listens (while started and on). */
  get httpAddress(): { host: string; port: number } | undefined {
    const a = this.http?.server.address();
    return a && typeof a === "object" ? { host: a.address, port: a.port } : undefined;
  }

  /** A client of this receiver's HTTP API, with its token; undefined while it serves none. */
  apiClient(): ReceiverApi | undefined {
    const a = this.httpAddress;
    if (!a) return undefined;
    const host = a.host.includes(":") ? `[${a.host}]` : a.host;
    return new ReceiverApi({ url: `http://${host}:${a.port}`, token: this.httpToken });
  }

  /** Opens the store, serves metrics and the API, then takes messages; undone when a step fails. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    await this.startParts().catch(async (err: unknown) => {
      await this.stop();
      throw err;
    });
  }

  private async startParts(): Promise<void> {
    const c = this.config;
    const log = this.log;
    if (!existsSync(c.choria_config))
      throw new ReceiverConfigError("config", `choria_config: ${c.choria_config} does not exist`);
    const choria = clientSettings(loadConfig(c.choria_config));
    const sec = securityFromSettings(choria);
    if (c.verify_signatures) this.trust = issuerTrust([...sec.issuers]);

    this.storeRef = await ReplyStore.open(c.store);
    this.batcher = new Batcher({
      store: this.storeRef,
      metrics: this.metrics,
      log,
      batch: c.batch,
      flushIntervalMs: c.flushIntervalMs,
    });

    if (c.monitor_port !== undefined) {
      this.monitor = new MetricsEndpoint({ port: c.monitor_port, registry: this.metrics.registry });
      await this.monitor.start();
      log.info({ port: this.monitor.port }, "serving metrics");
    }
    if (c.http_listen) {
      this.httpToken = c.http_token_file !== undefined ? readApiToken(c.http_token_file) : undefined;
      this.http = buildReceiverHttp({
        store: this.storeRef,
        log: log.child({ component: "http" }),
        ...(this.opts.watchIntervalMs !== undefined && { watchIntervalMs: this.opts.watchIntervalMs }),
        ...(this.opts.watchWaitMs !== undefined && { watchWaitMs: this.opts.watchWaitMs }),
        ...(this.httpToken !== undefined && { token: this.httpToken }),
        onUnauthorized: () => this.metrics.httpUnauthorized.inc(),
      });
      await this.http.listen({ host: c.http_listen.host, port: c.http_listen.port });
      log.info({ address: this.httpAddress }, "serving the HTTP API");
    }

    this.nc = await connectNats({
      servers: choria.middlewareHosts,
      name: `chorus-receiver`,
      // JetStream API answers come to an inbox this credential may subscribe to
      inboxPrefix: replyPrefix(choria.mainCollective, sec.callerId),
      seedHex: sec.seedHex,
      ...(sec.natsJwt && { natsJwt: sec.natsJwt }),
      ...(sec.caFile && { caFile: sec.caFile }),
      ...(sec.certFile && { certFile: sec.certFile }),
      ...(sec.keyFile && { keyFile: sec.keyFile }),
      waitOnFirstConnect: true,
      logger: log.child({ component: "nats" }),
    });
    if (c.mode === "stream") await this.consumeStream(this.nc);
    else this.subscribeDirect(this.nc);
    log.info(
      {
        mode: c.mode,
        store: c.store.kind,
        batch: c.batch,
        consumer: c.mode === "stream" ? c.consumer : undefined,
      },
      "receiver started",
    );
  }

  /** One message from either subject: parsed, counted, handed to the batcher (or dropped). */
  private onMessage(subject: string, data: Uint8Array, m: JsMsg | undefined): void {
    const p = parseMessage(subject, data, Date.now(), this.trust);
    const batcher = this.batcher as Batcher;
    if (p.kind === "drop") {
      this.metrics.counts[subject.startsWith("chorus.") ? "record" : "reply"]++;
      this.metrics.drop(p.reason);
      this.log.debug({ subject, reason: p.reason, detail: p.detail }, "dropped a message");
      // never redelivered: it would fail the same way every time
      try {
        m?.ack();
      } catch {
        // the connection is closing: it comes back and is dropped again
      }
      return;
    }
    this.metrics.counts[p.kind]++;
    if (p.kind === "reply") batcher.reply(p.row, m);
    else batcher.record(p.row, m);
  }

  private async consumeStream(nc: NatsConnection): Promise<void> {
    const c = this.config;
    const jsm = await jetstreamManager(nc, { timeout: 10_000 });
    await ensureStreams(jsm, [repliesStreamConfig(c)]);
    await this.ensureConsumer(jsm);
    const consumer = await jetstream(nc).consumers.get(REPLIES_STREAM, c.consumer);
    // a few batches buffered per receiver; the server caps what all of them hold unacked
    this.messages = await consumer.consume({
      max_messages: Math.min(c.max_ack_pending, c.batch * 4),
      callback: (m) => this.onMessage(m.subject, m.data, m),
    });
    this.pendingTimer = setInterval(() => {
      void jsm.consumers
        .info(REPLIES_STREAM, c.consumer)
        .then((ci) => this.metrics.pending.set(ci.num_pending + ci.num_ack_pending))
        .catch(() => {});
    }, 5000);
    this.pendingTimer.unref();
  }

  private async ensureConsumer(jsm: JetStreamManager): Promise<void> {
    const c = this.config;
    const want: Partial<ConsumerConfig> = {
      durable_name: c.consumer,
      ack_policy: AckPolicy.Explicit,
      ack_wait: nanos(c.ackWaitMs),
      deliver_policy: DeliverPolicy.All,
      // a batch the store refused is nakked and tried again until it succeeds
      max_deliver: -1,
      max_ack_pending: c.max_ack_pending,
    };
    const have = await jsm.consumers.info(REPLIES_STREAM, c.consumer).catch(() => undefined);
    if (!have) {
      try {
        await jsm.consumers.add(REPLIES_STREAM, want);
        return;
      } catch (err) {
        // another receiver created it at the same moment
        if (!(await jsm.consumers.info(REPLIES_STREAM, c.consumer).catch(() => undefined))) throw err;
      }
    } else if (
      have.config.ack_wait !== want.ack_wait ||
      have.config.max_ack_pending !== want.max_ack_pending
    ) {
      await jsm.consumers.update(REPLIES_STREAM, c.consumer, {
        ack_wait: want.ack_wait as number,
        max_ack_pending: want.max_ack_pending as number,
      });
    }
  }

  private subscribeDirect(nc: NatsConnection): void {
    for (const subject of [ASYNC_REPLY_WILDCARD, ASYNC_RECORD_WILDCARD]) {
      this.subs.push(
        nc.subscribe(subject, {
          queue: RECEIVER_QUEUE,
          callback: (err, msg) => {
            if (!err) this.onMessage(msg.subject, msg.data, undefined);
          },
        }),
      );
    }
  }

  /** Commits everything received so far (tests; stop() does it too). */
  async flush(): Promise<void> {
    await this.batcher?.flush();
  }

  /**
   * Stops taking messages, commits and acks what was received, closes the connection,
   * the HTTP API and the store.
   */
  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    clearInterval(this.pendingTimer);
    this.pendingTimer = undefined;
    const messages = this.messages;
    this.messages = undefined;
    await messages?.close().catch(() => {});
    for (const s of this.subs.splice(0)) s.unsubscribe();
    await this.batcher?.close().catch(() => {});
    this.batcher = undefined;
    const nc = this.nc;
    this.nc = undefined;
    if (nc) await closeNats(nc);
    const http = this.http;
    this.http = undefined;
    await http?.close().catch(() => {});
    const store = this.storeRef;
    this.storeRef = undefined;
    await store?.close().catch(() => {});
    await this.monitor?.stop();
    this.monitor = undefined;
    this.log.info("receiver stopped");
  }
}
