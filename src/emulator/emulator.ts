import { sign as edSign, type KeyObject } from "node:crypto";
import { pino, type Logger } from "pino";
import { registerBuiltinAgents } from "../agents/index.js";
import { loadConfig, serverSettings } from "../config/index.js";
import { connectNats, type NatsConnection } from "../connector/index.js";
import { ChorusError } from "../protocol/errors.js";
import { broadcastSubject } from "../protocol/index.js";
import {
  ChoriaSecurity,
  createServerToken,
  generateKeyPair,
  loadSeedFile,
  orgIssuer,
  privateKeyObject,
  type Issuer,
} from "../security/index.js";
import {
  AgentRegistry,
  NodeRuntime,
  RequestDecoder,
  CHORUS_VERSION,
  type DecodeResult,
  type HostInfo,
  type NodeReply,
  type ServerStats,
} from "../server/index.js";
import { emulatedFacts, emulatedIdentity } from "./facts.js";

export class EmulatorError extends ChorusError {}

export interface EmulatorOptions {
  /** How many virtual nodes. */
  nodes: number;
  collective: string;
  servers: string[];
  caFile?: string;
  /** The emulator's own credential: its NATS user may subscribe to every node subject. */
  security: ChoriaSecurity;
  /** Mints each virtual node's own server token, so every node signs with its own key. */
  issuer: Issuer;
  /** Connections to spread replies over (default: 1 per 5 000 nodes, 1..10). */
  connections?: number;
  /** Identity of node i (default node-00001.emulated.chorus). */
  identity?: (i: number) => string;
  /** Facts of node i (default: varied os, role, location, sizes). */
  facts?: (i: number) => Record<string, unknown>;
  signReplies?: boolean;
  tokenValidityS?: number;
  logger?: Logger;
  /** Called while nodes are created (long for big fleets). */
  onProgress?: (done: number, total: number) => void;
}

interface Shard {
  nc: NatsConnection;
}

/**
 * A virtual fleet: N real NodeRuntimes (the same pipeline `chorus server run`
 * uses, each with its own identity, facts, key and token) answering over a few
 * shared connections. One RequestDecoder for the process means a request's bytes
 * are parsed and its signature verified once, however many nodes receive it.
 */
export class Emulator {
  readonly nodes: NodeRuntime[] = [];
  readonly registry = new AgentRegistry();
  readonly decoder: RequestDecoder;
  readonly log: Logger;
  private readonly byIdentity = new Map<string, NodeRuntime>();
  private readonly shards: Shard[] = [];
  private readonly opts: EmulatorOptions;
  private readonly inflight = new Set<Promise<void>>();
  private next = 0;

  constructor(opts: EmulatorOptions) {
    if (!Number.isInteger(opts.nodes) || opts.nodes < 1) {
      throw new EmulatorError("usage", `--nodes must be a positive integer, got ${opts.nodes}`);
    }
    this.opts = opts;
    this.log = opts.logger ?? pino({ name: "chorus-emulator", level: "info" }, pino.destination(2));
    this.decoder = new RequestDecoder({ security: opts.security, cacheSize: 1_000 });
    registerBuiltinAgents(this.registry);
  }

  /** Builds an emulator from an emulator config written by `chorus setup dev`. */
  static fromConfigFile(path: string, overrides: Partial<EmulatorOptions> & { nodes: number }): Emulator {
    const cfg = loadConfig(path);
    const s = serverSettings(cfg);
    const issuerSeed = cfg.get("plugin.chorus.emulator.issuer_seed_file");
    if (!issuerSeed) {
      throw cfg.error(
        "plugin.chorus.emulator.issuer_seed_file",
        "plugin.chorus.emulator.issuer_seed_file is required: the emulator mints a token per virtual node",
      );
    }
    const issuerPath = new URL(issuerSeed, `file://${s.configDir}/`).pathname;
    const security = new ChoriaSecurity({
      seedFile: s.seedFile,
      tokenFile: s.tokenFile,
      issuers: s.issuers,
      natsJwtFile: s.natsJwtFile,
      ...(s.caFile && { caFile: s.caFile }),
    });
    return new Emulator({
      collective: s.mainCollective,
      servers: s.middlewareHosts,
      ...(s.caFile && { caFile: s.caFile }),
      security,
      issuer: orgIssuer(loadSeedFile(issuerPath)),
      ...overrides,
    });
  }

  get size(): number {
    return this.nodes.length;
  }

  /** Sums every node's counters. */
  get stats(): ServerStats {
    const total = this.nodes[0]?.counters.snapshot();
    if (!total) throw new EmulatorError("empty", "no nodes");
    for (const n of this.nodes.slice(1)) {
      const s = n.counters.snapshot() as unknown as Record<string, unknown>;
      for (const [k, v] of Object.entries(s)) {
        const t = total as unknown as Record<string, unknown>;
        if (typeof v === "number" && typeof t[k] === "number") t[k] = (t[k] as number) + v;
      }
    }
    return total;
  }

  private createNodes(host: HostInfo): void {
    const o = this.opts;
    const validity = o.tokenValidityS ?? 86_400;
    const identityOf = o.identity ?? emulatedIdentity;
    const factsOf = o.facts ?? emulatedFacts;
    for (let i = 1; i <= o.nodes; i++) {
      const identity = identityOf(i);
      if (this.byIdentity.has(identity)) throw new EmulatorError("usage", `duplicate identity ${identity}`);
      const kp = generateKeyPair();
      // Each node holds its own key object: a shared cache would thrash at 50 000 keys.
      const key: KeyObject = privateKeyObject(kp.seedHex);
      const token = createServerToken(
        { identity, collectives: [o.collective], publicKeyHex: kp.publicHex, validityS: validity },
        o.issuer,
      );
      const facts = factsOf(i);
      const node = new NodeRuntime({
        identity,
        collectives: [o.collective],
        facts,
        classes: [`role::${String(facts.role)}`, `location::${String(facts.location)}`],
        registry: this.registry,
        credential: { token, sign: (d) => edSign(null, d, key) },
        signReplies: o.signReplies ?? true,
        host,
        events: {
          drop: (reason, detail) => this.log.debug({ identity, reason }, detail),
        },
      });
      this.nodes.push(node);
      this.byIdentity.set(identity, node);
      if (i % 1000 === 0 || i === o.nodes) o.onProgress?.(i, o.nodes);
    }
  }

  async start(): Promise<void> {
    const o = this.opts;
    const count = o.connections ?? Math.min(10, Math.max(1, Math.ceil(o.nodes / 5_000)));
    const startTime = Date.now();
    const host: HostInfo = {
      version: CHORUS_VERSION,
      startTime,
      securityProvider: "choria",
      middlewareServers: [...o.servers],
      connectorTls: true,
      connectedServer: () => this.shards[0]?.nc.getServer() ?? "",
      connectionStats: (): Record<string, number> => {
        const s = this.shards[0]?.nc.stats();
        return s
          ? { in_msgs: s.inMsgs, out_msgs: s.outMsgs, in_bytes: s.inBytes, out_bytes: s.outBytes }
          : {};
      },
      configItem: () => undefined,
    };
    this.createNodes(host);
    for (let i = 0; i < count; i++) {
      const nc = await connectNats({
        servers: o.servers,
        name: `chorus-emulator-${i}`,
        ...(o.caFile && { caFile: o.caFile }),
        ...(o.security.natsJwt && { natsJwt: o.security.natsJwt }),
        seedHex: o.security.seedHex,
      });
      this.shards.push({ nc });
    }
    // One connection takes every request in: a wildcard per subject family costs two
    // subscriptions instead of one per node, and the decoder sees each message once.
    const inbound = (this.shards[0] as Shard).nc;
    for (const agent of this.registry.names()) {
      inbound.subscribe(broadcastSubject(o.collective, agent), {
        callback: (err, msg) => {
          if (!err) this.fanOut(msg.data);
        },
      });
    }
    inbound.subscribe(`${o.collective}.node.>`, {
      callback: (err, msg) => {
        if (err) return;
        const identity = msg.subject.slice(o.collective.length + 6);
        const node = this.byIdentity.get(identity);
        if (node) this.dispatch(node, this.decoder.decode(msg.data));
      },
    });
    await inbound.flush();
    this.log.info({ nodes: this.nodes.length, connections: count }, "emulator ready");
  }

  private fanOut(data: Uint8Array): void {
    // decoded once here, then shared read-only by every node
    const decoded = this.decoder.decode(data);
    for (const node of this.nodes) this.dispatch(node, decoded);
  }

  private dispatch(node: NodeRuntime, decoded: DecodeResult): void {
    const p = node
      .handle(decoded)
      .then((reply) => {
        if (reply) this.publish(reply);
      })
      .catch((err: Error) => this.log.warn({ identity: node.identity, err: err.message }, "reply failed"))
      .finally(() => this.inflight.delete(p));
    this.inflight.add(p);
  }

  private publish(reply: NodeReply): void {
    const shard = this.shards[this.next++ % this.shards.length];
    shard?.nc.publish(reply.subject, reply.data);
  }

  async stop(): Promise<void> {
    await Promise.allSettled([...this.inflight]);
    await Promise.allSettled(this.shards.map((s) => s.nc.drain()));
    this.shards.length = 0;
  }
}
