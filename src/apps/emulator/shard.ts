import type { Logger } from "pino";
import { closeNats, connectNats, type NatsConnection } from "../../core/connector/index.js";
import { broadcastSubject } from "../../core/protocol/index.js";
import { createServerToken, ed25519, type Issuer, type SigningKey } from "../../core/security/index.js";
import {
  CHORUS_VERSION,
  NodeRuntime,
  ReplayGuard,
  type AgentRegistry,
  type DecodeResult,
  type HostInfo,
  type NodeCredential,
  type NodeEvents,
  type NodeReply,
  type RequestDecoder,
  type ServerStats,
} from "../../server/index.js";

/** Plain data (structured-clone safe) describing one shard: it crosses into worker threads. */
export interface ShardSpec {
  /** Global 1-based index of this shard's first node. */
  first: number;
  count: number;
  collective: string;
  servers: string[];
  caFile?: string;
  /** The emulator's NATS credential (its user may subscribe to every node subject). */
  natsSeedHex: string;
  natsJwt?: string;
  issuer: Issuer;
  tokenValidityS: number;
  signReplies: boolean;
  connections: number;
  name: string;
  startTime: number;
}

export interface ShardDeps {
  decoder: RequestDecoder;
  registry: AgentRegistry;
  log: Logger;
  identity: (i: number) => string;
  facts: (i: number) => Record<string, unknown>;
  onProgress?: (done: number) => void;
}

// Nodes handled before yielding to I/O during a fan-out, so replies leave while the
// rest are still being signed instead of in one burst at the end.
const FANOUT_CHUNK = 250;

/** A node's token and key; a class so 50 000 nodes share one sign() instead of a closure each. */
class NodeKey implements NodeCredential {
  constructor(
    readonly token: string,
    private readonly key: SigningKey,
  ) {}

  sign(data: Uint8Array): Buffer {
    return ed25519.sign(this.key, data);
  }
}

const yieldToIo = (): Promise<void> => new Promise((r) => setImmediate(r));

/**
 * A slice of the virtual fleet with its own connections and nodes, sharing the
 * decoder it is given. The same code runs in the main thread (single shard) and in
 * each worker thread (one decoder per thread, so a request is verified once per thread).
 */
export class FleetShard {
  readonly nodes: NodeRuntime[] = [];
  private readonly byIdentity = new Map<string, NodeRuntime>();
  private readonly conns: NatsConnection[] = [];
  private next = 0;
  private inflight = 0;
  // one per shard: a bit per node per request id instead of a cache per node
  private readonly replay = new ReplayGuard();
  private idle: (() => void) | undefined;

  constructor(
    readonly spec: ShardSpec,
    private readonly deps: ShardDeps,
  ) {}

  private host(): HostInfo {
    return {
      version: CHORUS_VERSION,
      startTime: this.spec.startTime,
      securityProvider: "choria",
      middlewareServers: [...this.spec.servers],
      connectorTls: true,
      connectedServer: () => this.conns[0]?.getServer() ?? "",
      connectionStats: (): Record<string, number> => {
        const s = this.conns[0]?.stats();
        return s
          ? { in_msgs: s.inMsgs, out_msgs: s.outMsgs, in_bytes: s.inBytes, out_bytes: s.outBytes }
          : {};
      },
      configItem: () => undefined,
    };
  }

  /** Keys and tokens for every node; yields now and then so progress can be reported. */
  async createNodes(): Promise<void> {
    const s = this.spec;
    const d = this.deps;
    const host = this.host();
    // class names repeat across the fleet: keep one copy of each string
    const names = new Map<string, string>();
    const intern = (x: string): string => names.get(x) ?? (names.set(x, x), x);
    // one events object for the shard (the node comes as an argument): no closure per node
    const events: NodeEvents = {
      drop: (reason, detail, node) => d.log.debug({ identity: node.identity, reason }, detail),
    };
    const last = s.first + s.count - 1;
    for (let i = s.first; i <= last; i++) {
      const identity = d.identity(i);
      if (this.byIdentity.has(identity)) throw new Error(`duplicate identity ${identity}`);
      // Each node holds its own key straight from the generator: the seed is never
      // needed, and a shared cache would thrash at 50 000 keys.
      const { key, publicRaw } = ed25519.generate();
      const publicKeyHex = publicRaw.toString("hex");
      const token = createServerToken(
        { identity, collectives: [s.collective], publicKeyHex, validityS: s.tokenValidityS },
        s.issuer,
      );
      const facts = d.facts(i);
      const node = new NodeRuntime({
        identity,
        collectives: [s.collective],
        facts,
        classes: [intern(`role::${String(facts.role)}`), intern(`location::${String(facts.location)}`)],
        registry: d.registry,
        credential: new NodeKey(token, key),
        signReplies: s.signReplies,
        host,
        events,
        replayGuard: this.replay,
      });
      this.nodes.push(node);
      this.byIdentity.set(identity, node);
      const done = i - s.first + 1;
      if (done % 1000 === 0 || i === last) {
        d.onProgress?.(done);
        await yieldToIo();
      }
    }
  }

  async connect(): Promise<void> {
    const s = this.spec;
    for (let i = 0; i < s.connections; i++) {
      this.conns.push(
        await connectNats({
          servers: s.servers,
          name: `${s.name}-${i}`,
          ...(s.caFile && { caFile: s.caFile }),
          ...(s.natsJwt && { natsJwt: s.natsJwt }),
          seedHex: s.natsSeedHex,
        }),
      );
    }
    // One connection takes requests in: a wildcard per subject family costs a few
    // subscriptions instead of one per node, and the decoder sees each message once.
    const inbound = this.conns[0] as NatsConnection;
    for (const agent of this.deps.registry.names()) {
      inbound.subscribe(broadcastSubject(s.collective, agent), {
        callback: (err, msg) => {
          if (!err) this.guard(msg.subject, () => void this.fanOut(this.deps.decoder.decode(msg.data)));
        },
      });
    }
    const prefix = s.collective.length + 6; // "<collective>.node."
    inbound.subscribe(`${s.collective}.node.>`, {
      callback: (err, msg) => {
        if (err) return;
        // Every shard sees every direct request; the ownership check comes before any hashing.
        const node = this.byIdentity.get(msg.subject.slice(prefix));
        if (node) this.guard(msg.subject, () => this.dispatch(node, this.deps.decoder.decode(msg.data)));
      },
    });
    await inbound.flush();
  }

  /** A NATS callback must never throw: one bad message would cost the subscription. */
  private guard(subject: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.deps.log.error({ subject, err: (err as Error).message }, "message failed");
    }
  }

  private async fanOut(decoded: DecodeResult): Promise<void> {
    // decoded once, then shared read-only by every node
    this.inflight++;
    let wanted = false;
    try {
      const nodes = this.nodes;
      for (let i = 0; i < nodes.length; i += FANOUT_CHUNK) {
        const end = Math.min(nodes.length, i + FANOUT_CHUNK);
        for (let j = i; j < end; j++) {
          const node = nodes[j] as NodeRuntime;
          const passed = node.counters.passed;
          this.dispatch(node, decoded);
          // handle() filters synchronously, so the counter already tells
          if (node.counters.passed !== passed) wanted = true;
        }
        if (end < nodes.length) await yieldToIo();
      }
    } catch (err) {
      this.deps.log.error({ err: (err as Error).message }, "fan-out failed");
    } finally {
      // a broadcast none of these nodes wanted is not kept in the decoder cache
      if (!wanted) this.deps.decoder.forget(decoded);
      this.settle();
    }
  }

  private dispatch(node: NodeRuntime, decoded: DecodeResult): void {
    this.inflight++;
    node.handle(decoded).then(
      (reply) => {
        if (reply) this.publish(reply);
        this.settle();
      },
      (err: Error) => {
        this.deps.log.warn({ identity: node.identity, err: err.message }, "reply failed");
        this.settle();
      },
    );
  }

  private settle(): void {
    if (--this.inflight === 0 && this.idle) {
      this.idle();
      this.idle = undefined;
    }
  }

  private publish(reply: NodeReply): void {
    const nc = this.conns[this.next++ % this.conns.length];
    nc?.publish(reply.subject, reply.data);
  }

  /** Every node's counters summed. */
  stats(): ServerStats | undefined {
    const total = this.nodes[0]?.counters.snapshot();
    if (!total) return undefined;
    const t = total as unknown as Record<string, unknown>;
    for (let i = 1; i < this.nodes.length; i++) {
      const s = (this.nodes[i] as NodeRuntime).counters.snapshot() as unknown as Record<string, unknown>;
      for (const [k, v] of Object.entries(s)) {
        if (typeof v === "number" && typeof t[k] === "number") t[k] = (t[k] as number) + v;
      }
    }
    return total;
  }

  async stop(): Promise<void> {
    if (this.inflight > 0) await new Promise<void>((r) => (this.idle = r));
    await Promise.allSettled(this.conns.map((c) => closeNats(c)));
    this.conns.length = 0;
  }
}

/** Sums ServerStats from several shards (numeric fields only, as the single-process sum did). */
export function sumStats(parts: ServerStats[]): ServerStats | undefined {
  const [first, ...rest] = parts;
  if (!first) return undefined;
  const t = structuredClone(first) as unknown as Record<string, unknown>;
  for (const p of rest) {
    for (const [k, v] of Object.entries(p as unknown as Record<string, unknown>)) {
      if (typeof v === "number" && typeof t[k] === "number") t[k] = (t[k] as number) + v;
    }
  }
  return t as unknown as ServerStats;
}
