import { setMaxListeners } from "node:events";
import { existsSync, statSync } from "node:fs";
import { hostname } from "node:os";
import type { JsMsg } from "@nats-io/jetstream";
import { pino, type Logger } from "pino";
import { Client } from "../../client/index.js";
import { choriaProvisionDDL } from "../../server/index.js";
import { CertificateAuthority } from "../../core/ca/index.js";
import { clientSettings, loadConfig, type ClientSettings } from "../../core/config/index.js";
import { closeNats, connectNats, type NatsConnection } from "../../core/connector/index.js";
import { replyPrefix } from "../../core/protocol/index.js";
import { ChoriaSecurity, securityFromSettings, type Issuer } from "../../core/security/index.js";
import { CHORUS_VERSION, backoffDelay, sleep } from "../../core/util/index.js";
import {
  decodeLifecycleEvent,
  encodeLifecycleEvent,
  lifecycleSubject,
  newLifecycleEvent,
} from "../../services/lifecycle/index.js";
import { Election } from "../../services/streams/index.js";
import { loadProvisionerConfig, type ProvisionerConfig } from "./config.js";
import { HelperError, ProvisionError, ProvisionerConfigError } from "./errors.js";
import { runHelper, type HelperInput, type HelperOutput } from "./helper.js";
import { ProvisionerMetrics } from "./metrics.js";
import { loadChainIssuer, natsAccountOf, natsMayPublish } from "./mint.js";
import { WorkQueue, parseWorkItem, type WorkItem } from "./queue.js";
import { provisionNode, type NodeRpc, type ProvisionOutcome, type SequenceDeps } from "./sequence.js";

export const PROVISIONING_COLLECTIVE = "provisioning";
export const ELECTION_KEY = "provisioner";

export interface ProvisionerServiceOptions {
  /** default: pino at the config's loglevel to logfile or stderr */
  logger?: Logger;
  /** election candidate name (default <hostname>:<pid>) */
  candidate?: string;
  /** first retry delay of a failed RPC, ms (default 500; tests lower it) */
  rpcBackoffMs?: number;
  /** leadership TTL (default: the election bucket's max age; tests lower it) */
  electionTtlMs?: number;
  /** how long stop() lets nodes in progress finish before interrupting them, ms (default 30 s) */
  stopGraceMs?: number;
}

function readable(path: string, what: string): string {
  if (!existsSync(path)) throw new ProvisionerConfigError("config", `${what}: ${path} does not exist`);
  return path;
}

/** Acks on a connection that may be closing: a lost ack only means a redelivery. */
function settle(m: JsMsg, how: "nak" | "term" | "working", delayMs?: number): void {
  try {
    if (how === "nak") m.nak(delayMs);
    else if (how === "term") m.term();
    else m.working();
  } catch {
    // connection closed: the item comes back after ack_wait
  }
}

/** RPCs to one node at a time over a Client in the provisioning collective, retried with backoff. */
class ClientNodeRpc implements NodeRpc {
  constructor(
    private readonly client: Client,
    private readonly o: {
      timeoutMs: number;
      backoffMs: number;
      metrics: ProvisionerMetrics;
      signal: AbortSignal;
    },
  ) {}

  async call(
    identity: string,
    agent: string,
    action: string,
    data: Record<string, unknown>,
    { tries }: { tries: number },
  ): Promise<Record<string, unknown>> {
    const { metrics, signal } = this.o;
    const labels = { site: metrics.site, rpc: action };
    const ddl = agent === "choria_provision" ? choriaProvisionDDL() : undefined;
    let last: ProvisionError | undefined;
    for (let attempt = 1; attempt <= tries; attempt++) {
      if (attempt > 1)
        await sleep(
          backoffDelay(attempt - 1, { initialMs: this.o.backoffMs, maxMs: 5000, jitter: 0.2 }),
          signal,
        );
      if (signal.aborted) throw new ProvisionError("stopped", "the provisioner is stopping");
      const end = metrics.rpcTime.startTimer(labels);
      let replies;
      try {
        const res = await this.client.request(agent, action, data, {
          nodes: [identity],
          timeoutMs: this.o.timeoutMs,
          signal,
          ...(ddl && { ddl }),
        });
        replies = res.replies;
      } catch (err) {
        if (signal.aborted) throw new ProvisionError("stopped", "the provisioner is stopping");
        // our own request was refused before sending (inputs, options): retrying cannot help
        metrics.rpcErrors.inc(labels);
        throw new ProvisionError(
          "rpc_failed",
          `${agent}#${action} to ${identity}: ${(err as Error).message}`,
          {
            cause: err,
          },
        );
      } finally {
        end();
      }
      const reply = replies.find((r) => r.sender === identity);
      // cut short by stop(): not the node's fault
      if (!reply && signal.aborted) throw new ProvisionError("stopped", "the provisioner is stopping");
      if (!reply) {
        metrics.rpcErrors.inc(labels);
        last = new ProvisionError("no_reply", `${identity} did not answer ${agent}#${action}`);
        continue;
      }
      if (reply.statuscode !== 0) {
        metrics.rpcErrors.inc(labels);
        last = new ProvisionError("rpc_failed", `${identity} refused ${agent}#${action}: ${reply.statusmsg}`);
        continue;
      }
      return reply.data;
    }
    throw last ?? new ProvisionError("no_reply", `${identity} did not answer ${agent}#${action}`);
  }
}

/**
 * The provisioner: finds nodes in provisioning mode (their startup events and periodic
 * discovery in the provisioning collective), queues them in a JetStream work queue, and
 * N workers take each through Choria's provisioning sequence. With leader_election only
 * the leader finds and provisions nodes; the queue survives failover. Embeddable:
 *
 *     const p = ProvisionerService.fromFile("provisioner.yaml");
 *     await p.start();
 *     await p.stop();
 */
export class ProvisionerService {
  readonly config: ProvisionerConfig;
  readonly log: Logger;
  readonly metrics: ProvisionerMetrics;
  readonly candidate: string;
  private client: Client | undefined;
  private provNc: NatsConnection | undefined;
  private choriaNc: NatsConnection | undefined;
  private queue: WorkQueue | undefined;
  private election: Election | undefined;
  private choria: ClientSettings | undefined;
  private choriaAccount: string | undefined;
  /** interrupts RPCs and helpers: kill, or stop() after its grace period */
  private abort = new AbortController();
  /** ends a discovery round in progress */
  private findAbort = new AbortController();
  private stopping = false;
  private workers: Promise<void>[] = [];
  private discoveryTimer: NodeJS.Timeout | undefined;
  private discovering: Promise<number> | undefined;
  private active = false;
  private started = false;
  private wake: (() => void) | undefined;
  private busy = 0;

  constructor(
    config: ProvisionerConfig,
    private readonly opts: ProvisionerServiceOptions = {},
  ) {
    this.config = config;
    this.log =
      opts.logger ??
      pino(
        { name: "chorus-provisioner", level: config.loglevel },
        config.logfile ? pino.destination({ dest: config.logfile, mkdir: true }) : pino.destination(2),
      );
    this.metrics = new ProvisionerMetrics(config.site);
    this.candidate = opts.candidate ?? `${hostname()}:${process.pid}`;
  }

  static fromFile(path: string, opts: ProvisionerServiceOptions = {}): ProvisionerService {
    return new ProvisionerService(loadProvisionerConfig(path), opts);
  }

  /** Finding and provisioning nodes now: true without leader_election, else while leader. */
  get isActive(): boolean {
    return this.active;
  }

  get monitorPort(): number | undefined {
    return this.metrics.port;
  }

  /** Workers provisioning a node right now. */
  get busyWorkers(): number {
    return this.busy;
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.abort = new AbortController();
    this.findAbort = new AbortController();
    // every worker waits on the same signal: that is many listeners by design, not a leak
    setMaxListeners(this.config.workers * 4 + 16, this.abort.signal, this.findAbort.signal);
    this.stopping = false;
    try {
      await this.startParts();
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  private async startParts(): Promise<void> {
    const c = this.config;
    const log = this.log;
    const choria = clientSettings(loadConfig(readable(c.choria_config, "choria_config")));
    this.choria = choria;
    const choriaSec = securityFromSettings(choria);
    if (!choriaSec.natsJwt)
      throw new ProvisionerConfigError(
        "config",
        `choria_config: ${c.choria_config} names no NATS user JWT (${choriaSec.natsJwtFile} is missing)`,
      );
    if (c.features.ed25519) {
      this.choriaAccount = natsAccountOf(choriaSec.natsJwt);
      // fail at start, not on the first node, when the signing files are wrong
      loadChainIssuer(c.jwt_signing_key as string, c.jwt_signing_token as string);
    }
    const pc = c.provisioning_credentials;
    const provSec = new ChoriaSecurity({
      seedFile: readable(pc.seed ?? choria.seedFile, "provisioning_credentials.seed"),
      tokenFile: readable(pc.token ?? choria.tokenFile, "provisioning_credentials.token"),
      natsJwtFile: readable(pc.nats, "provisioning_credentials.nats"),
      issuers: c.jwtVerifyKeys,
      ...((pc.ca ?? choria.caFile) !== undefined && { caFile: pc.ca ?? choria.caFile }),
    });

    if (c.monitor_port !== undefined) {
      const port = await this.metrics.listen(c.monitor_port);
      log.info({ port }, "serving metrics");
    }

    this.choriaNc = await connectNats({
      servers: choria.middlewareHosts,
      name: `chorus-provisioner-${c.site}`,
      // JetStream API answers come to an inbox this credential may subscribe to
      inboxPrefix: replyPrefix(choria.mainCollective, choriaSec.callerId),
      seedHex: choriaSec.seedHex,
      natsJwt: choriaSec.natsJwt,
      ...(choriaSec.caFile && { caFile: choriaSec.caFile }),
      ...(choriaSec.certFile && { certFile: choriaSec.certFile }),
      ...(choriaSec.keyFile && { keyFile: choriaSec.keyFile }),
      waitOnFirstConnect: true,
      logger: log.child({ component: "choria-nats" }),
    });
    this.queue = new WorkQueue(this.choriaNc, {
      ackWaitMs: c.queueAckWaitMs,
      replicas: c.queue_replicas,
      // a node restarting after provisioning must not be queued again before it is gone
      duplicateWindowMs: Math.max(2 * c.intervalMs, 120_000),
      log: log.child({ component: "queue" }),
    });
    await this.queue.ensure();

    this.client = new Client({
      security: provSec,
      servers: c.broker_urls,
      collective: PROVISIONING_COLLECTIVE,
      identity: hostname(),
      discoveryTimeoutMs: c.discoveryTimeoutMs,
      verifyReplySignatures: false,
      logger: log.child({ component: "provisioning-nats" }),
    });
    this.client.registerDDL(choriaProvisionDDL());
    this.provNc = await this.client.connect();
    const subject = `choria.lifecycle.event.startup.${c.lifecycle_component}`;
    this.provNc.subscribe(subject, {
      callback: (err, msg) => {
        if (!err) this.onStartupEvent(msg.data);
      },
    });

    this.announce(choriaSec.natsJwt);
    for (let i = 0; i < c.workers; i++) this.workers.push(this.worker(i));
    if (c.leader_election) {
      this.metrics.paused.set({ site: c.site }, 1);
      this.election = new Election(this.choriaNc, {
        name: ELECTION_KEY,
        candidate: this.candidate,
        ...(this.opts.electionTtlMs !== undefined && { ttlMs: this.opts.electionTtlMs }),
        onWon: () => this.setActive(true),
        onLost: () => this.setActive(false),
        logger: log.child({ component: "election" }),
      });
      await this.election.start();
    } else this.setActive(true);
    this.discoveryTimer = setInterval(() => void this.discoverOnce(), c.intervalMs);
    log.info(
      { site: c.site, workers: c.workers, leader_election: c.leader_election, candidate: this.candidate },
      "provisioner started",
    );
  }

  /**
   * Choria's provisioner announces itself with a startup event (component provisioner),
   * when its credential may publish it: a refused publish would only log an error.
   */
  private announce(natsJwt: string): void {
    try {
      const ev = newLifecycleEvent("startup", {
        identity: hostname().replace(/[\s*>]/g, "_") || "provisioner",
        component: "provisioner",
        version: CHORUS_VERSION,
      });
      const subject = lifecycleSubject(ev);
      if (!natsMayPublish(natsJwt, subject)) {
        this.log.debug({ subject }, "the CHORIA credential may not publish the startup event; not sent");
        return;
      }
      this.choriaNc?.publish(subject, encodeLifecycleEvent(ev));
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, "cannot publish the startup event");
    }
  }

  private setActive(on: boolean): void {
    if (this.active === on) return;
    this.active = on;
    this.metrics.paused.set({ site: this.config.site }, on ? 0 : 1);
    if (on) {
      this.log.info("active: finding and provisioning nodes");
      this.wake?.();
      void this.discoverOnce();
    } else this.log.info("paused: another provisioner leads");
  }

  private onStartupEvent(data: Uint8Array): void {
    if (!this.active) return;
    let identity: string;
    try {
      identity = decodeLifecycleEvent(data).identity;
    } catch (err) {
      this.metrics.badEvents.inc({ site: this.config.site });
      this.log.debug({ err: (err as Error).message }, "ignored a malformed startup event");
      return;
    }
    this.metrics.eventDiscovered.inc({ site: this.config.site });
    void this.enqueue(identity, "event").catch(() => {});
  }

  /** Offers a node to the work queue (deduplicated). */
  async enqueue(identity: string, source: WorkItem["source"]): Promise<"queued" | "duplicate"> {
    const q = this.queue;
    if (!q) throw new ProvisionError("stopped", "the provisioner is not running");
    const site = this.config.site;
    try {
      const r = await q.enqueue(identity, source);
      this.metrics.enqueued.inc({ site, result: r });
      if (r === "queued") this.log.info({ identity, source }, "queued node");
      return r;
    } catch (err) {
      this.metrics.enqueued.inc({ site, result: "error" });
      this.log.warn({ identity, err: (err as Error).message }, "cannot queue node");
      throw err;
    }
  }

  /**
   * One discovery round in the provisioning collective (skipped while paused);
   * resolves with the number of nodes found. Overlapping calls share one round.
   */
  discoverOnce(): Promise<number> {
    if (!this.active || !this.client) return Promise.resolve(0);
    this.discovering ??= this.discover().finally(() => (this.discovering = undefined));
    return this.discovering;
  }

  private async discover(): Promise<number> {
    const site = this.config.site;
    const client = this.client;
    if (!client) return 0;
    this.metrics.discoverCycles.inc({ site });
    let found: string[];
    try {
      found = await client.discover({
        filter: { agent: ["choria_provision"] },
        timeoutMs: this.config.discoveryTimeoutMs,
        windowed: true,
        signal: this.findAbort.signal,
      });
    } catch (err) {
      this.metrics.discoveryErrors.inc({ site });
      this.log.warn({ err: (err as Error).message }, "discovery failed");
      return 0;
    }
    this.metrics.discovered.inc({ site }, found.length);
    // a few publishes in flight at a time: a large fleet is queued quickly without a burst
    for (let i = 0; i < found.length && this.active; i += 64) {
      await Promise.all(found.slice(i, i + 64).map((id) => this.enqueue(id, "discovery").catch(() => {})));
    }
    await this.updateDepth();
    if (found.length > 0) this.log.debug({ found: found.length }, "discovered nodes in provisioning mode");
    return found.length;
  }

  private async updateDepth(): Promise<void> {
    try {
      const d = await this.queue?.depth();
      if (!d) return;
      const site = this.config.site;
      this.metrics.waitingNodes.set({ site }, d.waiting);
      this.metrics.workQueueEntries.set({ site }, d.waiting + d.inProgress);
    } catch {
      // gauges only: the next round tries again
    }
  }

  private waitActive(): Promise<void> {
    return new Promise((resolve) => {
      const prev = this.wake;
      this.wake = () => {
        prev?.();
        resolve();
      };
    });
  }

  private async worker(n: number): Promise<void> {
    const log = this.log.child({ worker: n });
    while (!this.stopping) {
      if (!this.active) {
        await this.waitActive();
        this.wake = undefined;
        continue;
      }
      let m: JsMsg | undefined;
      try {
        m = await this.queue?.next(1000);
      } catch (err) {
        if (this.stopping) break;
        log.warn({ err: (err as Error).message }, "cannot pull from the work queue");
        await sleep(1000, this.findAbort.signal);
        continue;
      }
      if (!m) continue;
      // pulled just as we paused or stopped: give it straight back
      if (this.stopping || !this.active) {
        settle(m, "nak");
        continue;
      }
      await this.handle(m, log);
    }
  }

  private sequenceDeps(m: JsMsg, log: Logger, progress: { configureSent: boolean }): SequenceDeps {
    const c = this.config;
    const site = c.site;
    const choria = this.choria as ClientSettings;
    const deps: SequenceDeps = {
      config: c,
      rpc: new ClientNodeRpc(this.client as Client, {
        timeoutMs: c.rpcTimeoutMs,
        backoffMs: this.opts.rpcBackoffMs ?? 500,
        metrics: this.metrics,
        signal: this.abort.signal,
      }),
      nodeDefaults: { "plugin.choria.middleware_hosts": choria.middlewareHosts.join(",") },
      issuers: c.jwtVerifyKeys,
      log,
      working: () => settle(m, "working"),
      signal: this.abort.signal,
      onShutdownRequest: () => this.metrics.helperShutdownRequests.inc({ site }),
      progress,
    };
    if (c.helper) deps.helper = (input) => this.runHelper(input);
    if (c.features.ed25519) {
      const seedFile = c.jwt_signing_key as string;
      const tokenFile = c.jwt_signing_token as string;
      // read once per change of either file, not once per node: rotated files still apply
      let cached: { stamp: string; issuer: Issuer } | undefined;
      deps.chainIssuer = () => {
        const stamp = `${statSync(seedFile).mtimeMs}:${statSync(tokenFile).mtimeMs}`;
        if (cached?.stamp !== stamp) cached = { stamp, issuer: loadChainIssuer(seedFile, tokenFile) };
        return cached.issuer;
      };
      if (this.choriaAccount) deps.choriaAccountPublic = this.choriaAccount;
    }
    if (c.ca) {
      const dir = c.ca;
      deps.ca = () => CertificateAuthority.open(dir);
    }
    return deps;
  }

  /** Runs the helper, timed and with failures counted. */
  async runHelper(input: HelperInput): Promise<HelperOutput> {
    const c = this.config;
    const site = c.site;
    const end = this.metrics.helperTime.startTimer({ site });
    try {
      return await runHelper(c.helper as string[], input, {
        timeoutMs: c.helperTimeoutMs,
        signal: this.abort.signal,
      });
    } catch (err) {
      this.metrics.helperErrors.inc({ site });
      if (err instanceof HelperError)
        this.log.warn(
          { identity: input.identity, helper_error: err.code, err: err.message },
          "helper failed",
        );
      throw err;
    } finally {
      end();
    }
  }

  private async handle(m: JsMsg, wlog: Logger): Promise<void> {
    const site = this.config.site;
    const item = parseWorkItem(m);
    if (!item) {
      settle(m, "term");
      this.metrics.outcomes.inc({ site, outcome: "malformed" });
      this.log.warn({ subject: m.subject }, "dropped a work item that is not one");
      return;
    }
    const identity = item.identity;
    const log = wlog.child({ identity });
    const deliveries = m.info.deliveryCount;
    this.busy++;
    this.metrics.busyWorkers.set({ site }, this.busy);
    // in-progress acks: the item stays ours while we work on it
    const keep = setInterval(
      () => settle(m, "working"),
      Math.max(500, Math.floor(this.config.queueAckWaitMs / 3)),
    );
    const outcome = (o: string) => this.metrics.outcomes.inc({ site, outcome: o });
    const progress = { configureSent: false };
    try {
      log.info({ delivery: deliveries, source: item.source }, "provisioning node");
      const r: ProvisionOutcome = await provisionNode(this.sequenceDeps(m, wlog, progress), identity, {
        redelivered: deliveries > 1,
      });
      switch (r.outcome) {
        case "provisioned":
        case "already_done":
          this.metrics.provisioned.inc({ site });
          await this.ackAck(m, log);
          log.info({ outcome: r.outcome, detail: r.message }, "node provisioned");
          break;
        case "deferred":
          // found again by discovery or its next startup, after the duplicate window
          settle(m, "term");
          log.info({ detail: r.message }, "helper deferred the node");
          break;
        case "shutdown":
          await this.ackAck(m, log);
          log.warn({ detail: r.message }, "helper asked for the node to shut down; it was told to");
          break;
      }
      outcome(r.outcome);
    } catch (err) {
      const e = err as Error;
      if (this.abort.signal.aborted || (err instanceof ProvisionError && err.code === "stopped")) {
        outcome("interrupted");
        if (progress.configureSent) {
          // the node may still be writing its config: the item comes back after ack_wait,
          // and whoever takes it then finds it configured and only restarts it
          log.warn(
            { err: e.message },
            "interrupted after configure; the node returns to the queue after ack_wait",
          );
        } else {
          // nothing it cannot redo: another provisioner (or our next start) takes it at once
          settle(m, "nak");
          log.info({ err: e.message }, "interrupted; the node goes back to the queue");
        }
        return;
      }
      this.metrics.provisionErrors.inc({ site });
      const code = (err as { code?: string }).code ?? "error";
      const final =
        (err instanceof ProvisionError && ["state", "denied", "untrusted"].includes(err.code)) ||
        deliveries >= this.config.queue_max_attempts;
      if (final) {
        settle(m, "term");
        outcome("dropped");
        log.error(
          { code, err: e.message, delivery: deliveries },
          "provisioning failed; dropped until found again",
        );
      } else {
        const delay = backoffDelay(deliveries, {
          initialMs: 5000,
          maxMs: this.config.intervalMs,
          jitter: 0.2,
        });
        settle(m, "nak", delay);
        outcome("retry");
        log.warn(
          { code, err: e.message, delivery: deliveries, retry_in_ms: delay },
          "provisioning failed; will retry",
        );
      }
    } finally {
      clearInterval(keep);
      this.busy--;
      this.metrics.busyWorkers.set({ site }, this.busy);
    }
  }

  private async ackAck(m: JsMsg, log: Logger): Promise<void> {
    try {
      await m.ackAck({ timeout: 5000 });
    } catch (err) {
      // a lost ack means a redelivery, which finds the node restarted and drops the item
      log.warn({ err: (err as Error).message }, "ack of the finished work item was not confirmed");
    }
  }

  /**
   * Stops finding and taking nodes, lets the nodes in progress finish (for stopGraceMs;
   * then interrupts them, and what is interrupted goes back to the queue), steps down
   * as leader, closes the connections.
   */
  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    this.stopping = true;
    this.active = false;
    this.findAbort.abort();
    this.wake?.();
    clearInterval(this.discoveryTimer);
    this.discoveryTimer = undefined;
    const workers = Promise.allSettled(this.workers);
    const grace = this.opts.stopGraceMs ?? 30_000;
    let timer: NodeJS.Timeout | undefined;
    const late = await Promise.race([
      workers.then(() => false),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(true), grace))),
    ]);
    clearTimeout(timer);
    if (late) {
      this.log.warn({ busy: this.busy, grace_ms: grace }, "interrupting nodes still in progress");
      this.abort.abort();
      await workers;
    }
    this.abort.abort();
    this.workers = [];
    await this.discovering?.catch(() => 0);
    const election = this.election;
    this.election = undefined;
    await election?.stop().catch(() => {});
    const client = this.client;
    this.client = undefined;
    this.provNc = undefined;
    await client?.close().catch(() => {});
    const nc = this.choriaNc;
    this.choriaNc = undefined;
    this.queue = undefined;
    if (nc) await closeNats(nc);
    await this.metrics.stop();
    this.log.info("provisioner stopped");
  }

  /**
   * Stops at once without giving anything back, like a killed process: what workers
   * hold returns to the queue only after ack_wait. For tests of failover.
   */
  async kill(): Promise<void> {
    this.started = false;
    this.stopping = true;
    this.active = false;
    this.findAbort.abort();
    this.wake?.();
    clearInterval(this.discoveryTimer);
    const conns = [this.choriaNc, this.provNc];
    this.choriaNc = undefined;
    this.provNc = undefined;
    this.queue = undefined;
    for (const nc of conns) await nc?.close().catch(() => {});
    this.abort.abort();
    const election = this.election;
    this.election = undefined;
    await election?.stop().catch(() => {});
    await Promise.allSettled(this.workers);
    this.workers = [];
    await this.client?.close().catch(() => {});
    this.client = undefined;
    await this.metrics.stop();
  }
}
