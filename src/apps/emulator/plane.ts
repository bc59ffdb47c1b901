import type { Logger } from "pino";
import { closeNats, connectNats, type NatsConnection } from "../../core/connector/index.js";
import { broadcastSubject } from "../../core/protocol/index.js";
import { ed25519, type SigningKey } from "../../core/security/index.js";
import type {
  AgentRegistry,
  DecodeResult,
  NodeCredential,
  NodeReply,
  NodeRuntime,
  RequestDecoder,
} from "../../server/index.js";

// Nodes handled before yielding to I/O during a fan-out, so replies leave while the
// rest are still being signed instead of in one burst at the end.
const FANOUT_CHUNK = 250;

export const yieldToIo = (): Promise<void> => new Promise((r) => setImmediate(r));

/** A node's token and key; a class so 50 000 nodes share one sign() instead of a closure each. */
export class NodeKey implements NodeCredential {
  constructor(
    readonly token: string,
    private readonly key: SigningKey,
  ) {}

  sign(data: Uint8Array): Buffer {
    return ed25519.sign(this.key, data);
  }
}

/** Replies still being built, over every plane of a shard, so stop() can wait for them. */
export class Inflight {
  private n = 0;
  private idle: (() => void) | undefined;

  enter(): void {
    this.n++;
  }

  leave(): void {
    if (--this.n === 0 && this.idle) {
      this.idle();
      this.idle = undefined;
    }
  }

  settled(): Promise<void> {
    return this.n === 0 ? Promise.resolve() : new Promise((r) => (this.idle = r));
  }
}

export interface PlaneConnection {
  servers: string[];
  caFile?: string;
  natsJwt?: string;
  /** "" for an x509 (v1) emulator, which authenticates with its certificate instead */
  seedHex: string;
  /** the x509 emulator's mTLS certificate and key */
  certFile?: string;
  keyFile?: string;
  /** where request inboxes live (the broker lets the emulator read only its reply prefix) */
  inboxPrefix?: string;
  /** connection name prefix (`-<n>` is added) */
  name: string;
  count: number;
}

export interface PlaneOptions {
  log: Logger;
  inflight: Inflight;
  /**
   * Nodes may leave (an emulated node restarting into another mode): fan-outs then
   * check that a node still belongs here. Off for a fixed fleet, which saves a lookup
   * per node per broadcast.
   */
  mutable: boolean;
}

/**
 * One collective's side of a shard: its connections, decoder, agents and the nodes
 * answering in it. A plain emulator has one; in provisioning mode a second holds the
 * nodes still in the `provisioning` collective.
 */
export class Plane {
  /** may hold nodes that left until the next compaction; byIdentity is the truth */
  private list: NodeRuntime[] = [];
  private readonly byIdentity = new Map<string, NodeRuntime>();
  private readonly conns: NatsConnection[] = [];
  private next = 0;
  private compactPending = false;

  constructor(
    readonly collective: string,
    readonly decoder: RequestDecoder,
    readonly registry: AgentRegistry,
    private readonly o: PlaneOptions,
  ) {}

  /** The nodes answering here now. */
  get nodes(): NodeRuntime[] {
    if (this.list.length !== this.byIdentity.size) this.compact();
    return this.list;
  }

  get size(): number {
    return this.byIdentity.size;
  }

  get(identity: string): NodeRuntime | undefined {
    return this.byIdentity.get(identity);
  }

  add(node: NodeRuntime): void {
    if (this.byIdentity.has(node.identity)) throw new Error(`duplicate identity ${node.identity}`);
    this.byIdentity.set(node.identity, node);
    this.list.push(node);
  }

  remove(node: NodeRuntime): void {
    if (this.byIdentity.get(node.identity) !== node) return;
    this.byIdentity.delete(node.identity);
    // many nodes leave in a burst: one pass over the list per turn of the loop, not one each
    if (this.compactPending) return;
    this.compactPending = true;
    setImmediate(() => this.compact());
  }

  private compact(): void {
    this.compactPending = false;
    // a new array: a fan-out in progress keeps walking the old one
    this.list = this.list.filter((n) => this.byIdentity.get(n.identity) === n);
  }

  /** The first connection (what rpcutil reports as the connected server). */
  get primary(): NatsConnection | undefined {
    return this.conns[0];
  }

  async connect(c: PlaneConnection): Promise<void> {
    for (let i = 0; i < c.count; i++) {
      this.conns.push(
        await connectNats({
          servers: c.servers,
          name: `${c.name}-${i}`,
          ...(c.caFile && { caFile: c.caFile }),
          ...(c.natsJwt && { natsJwt: c.natsJwt }),
          ...(c.seedHex && { seedHex: c.seedHex }),
          ...(c.certFile && c.keyFile && { certFile: c.certFile, keyFile: c.keyFile }),
          ...(c.inboxPrefix && { inboxPrefix: c.inboxPrefix }),
        }),
      );
    }
    // One connection takes requests in: a wildcard per subject family costs a few
    // subscriptions instead of one per node, and the decoder sees each message once.
    const inbound = this.conns[0] as NatsConnection;
    for (const agent of this.registry.names()) {
      inbound.subscribe(broadcastSubject(this.collective, agent), {
        callback: (err, msg) => {
          if (!err) this.guard(msg.subject, () => void this.fanOut(this.decoder.decode(msg.data)));
        },
      });
    }
    const prefix = this.collective.length + 6; // "<collective>.node."
    inbound.subscribe(`${this.collective}.node.>`, {
      callback: (err, msg) => {
        if (err) return;
        // Every shard sees every direct request; the ownership check comes before any hashing.
        const node = this.byIdentity.get(msg.subject.slice(prefix));
        if (node) this.guard(msg.subject, () => this.dispatch(node, this.decoder.decode(msg.data)));
      },
    });
    await inbound.flush();
  }

  /** A NATS callback must never throw: one bad message would cost the subscription. */
  private guard(subject: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.o.log.error({ subject, err: (err as Error).message }, "message failed");
    }
  }

  private async fanOut(decoded: DecodeResult): Promise<void> {
    // decoded once, then shared read-only by every node
    const inflight = this.o.inflight;
    inflight.enter();
    let wanted = false;
    try {
      const nodes = this.nodes;
      const check = this.o.mutable;
      for (let i = 0; i < nodes.length; i += FANOUT_CHUNK) {
        const end = Math.min(nodes.length, i + FANOUT_CHUNK);
        for (let j = i; j < end; j++) {
          const node = nodes[j] as NodeRuntime;
          // gone since this fan-out began (restarted elsewhere): not answering here any more
          if (check && this.byIdentity.get(node.identity) !== node) continue;
          const passed = node.counters.passed;
          this.dispatch(node, decoded);
          // handle() filters synchronously, so the counter already tells
          if (node.counters.passed !== passed) wanted = true;
        }
        if (end < nodes.length) await yieldToIo();
      }
    } catch (err) {
      this.o.log.error({ err: (err as Error).message }, "fan-out failed");
    } finally {
      // a broadcast none of these nodes wanted is not kept in the decoder cache
      if (!wanted) this.decoder.forget(decoded);
      inflight.leave();
    }
  }

  dispatch(node: NodeRuntime, decoded: DecodeResult): void {
    const inflight = this.o.inflight;
    inflight.enter();
    node.handle(decoded).then(
      (reply) => {
        if (reply) this.reply(reply);
        inflight.leave();
      },
      (err: Error) => {
        this.o.log.warn({ identity: node.identity, err: err.message }, "reply failed");
        inflight.leave();
      },
    );
  }

  private reply(reply: NodeReply): void {
    this.publish(reply.subject, reply.data);
  }

  /** Publishes on the next connection in turn (replies and events spread over them). */
  publish(subject: string, data: Uint8Array): void {
    const nc = this.conns[this.next++ % this.conns.length];
    nc?.publish(subject, data);
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.conns.map((c) => closeNats(c)));
    this.conns.length = 0;
  }
}
