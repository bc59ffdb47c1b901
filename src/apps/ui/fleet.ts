import type { Client } from "../../client/index.js";
import type { NatsConnection } from "../../core/connector/index.js";
import { lookupFact, matchFilter } from "../../core/filter/index.js";
import {
  decodeRequest,
  decodeSecureRequest,
  decodeTransport,
  type Filter,
} from "../../core/protocol/index.js";
import type { Logger } from "../../core/util/index.js";
import { decodeLifecycleEvent, eventType } from "../../services/lifecycle/index.js";
import {
  INVENTORY_PROTOCOL,
  decodeRegistrationPayload,
  registrationSubject,
  type InventoryData,
} from "../../services/registration/index.js";
import type { FleetNode, NodeStatus } from "./api-types.js";

export interface FleetTableOptions {
  /** the fleet's registration interval: a node is stale after twice this (default: 5 minutes) */
  registrationIntervalS?: number;
  /** a node not heard from this long is gone (default 1 h) */
  goneAfterMs?: number;
  /** ms clock, for tests */
  now?: () => number;
}

interface Entry {
  identity: string;
  facts: Record<string, unknown>;
  classes: string[];
  agents: string[];
  lastSeen: number;
  /** a shutdown event said so; cleared by any later sign of life */
  shutdown: boolean;
}

const FIVE_MIN_MS = 5 * 60_000;
const HOUR_MS = 60 * 60_000;

/** What the console knows of each node, from registration, lifecycle events and inventory polls. */
export class FleetTable {
  private readonly nodes = new Map<string, Entry>();
  private readonly staleMs: number;
  private readonly goneMs: number;
  private readonly now: () => number;

  constructor(o: FleetTableOptions = {}) {
    this.staleMs = o.registrationIntervalS ? o.registrationIntervalS * 2000 : FIVE_MIN_MS;
    this.goneMs = o.goneAfterMs ?? HOUR_MS;
    this.now = o.now ?? Date.now;
  }

  get size(): number {
    return this.nodes.size;
  }

  /** A sign of life, with whatever inventory came with it. */
  seen(
    identity: string,
    inv: Partial<Pick<InventoryData, "facts" | "classes" | "agents">> = {},
    at = this.now(),
  ): void {
    const e = this.nodes.get(identity) ?? {
      identity,
      facts: {},
      classes: [],
      agents: [],
      lastSeen: at,
      shutdown: false,
    };
    if (inv.facts && typeof inv.facts === "object") e.facts = inv.facts;
    if (Array.isArray(inv.classes)) e.classes = inv.classes.map(String);
    if (Array.isArray(inv.agents)) e.agents = inv.agents.map(String);
    e.lastSeen = Math.max(e.lastSeen, at);
    e.shutdown = false;
    this.nodes.set(identity, e);
  }

  shutdown(identity: string, at = this.now()): void {
    const e = this.nodes.get(identity);
    if (!e) return;
    e.shutdown = true;
    e.lastSeen = Math.max(e.lastSeen, at);
  }

  status(e: Entry, now = this.now()): NodeStatus {
    const age = now - e.lastSeen;
    if (e.shutdown || age >= this.goneMs) return "gone";
    return age >= this.staleMs ? "stale" : "alive";
  }

  private view(e: Entry, now: number): FleetNode {
    return {
      identity: e.identity,
      facts: e.facts,
      classes: e.classes,
      agents: e.agents,
      lastSeen: new Date(e.lastSeen).toISOString(),
      ageS: Math.max(0, Math.round((now - e.lastSeen) / 1000)),
      status: this.status(e, now),
    };
  }

  get(identity: string): FleetNode | undefined {
    const e = this.nodes.get(identity);
    return e && this.view(e, this.now());
  }

  /** Nodes matching the filter (and status), sorted by identity. */
  query(filter: Filter | undefined, status?: NodeStatus): FleetNode[] {
    const now = this.now();
    const out: FleetNode[] = [];
    for (const e of this.nodes.values()) {
      if (status !== undefined && this.status(e, now) !== status) continue;
      if (!matchFilter(filter, e)) continue;
      out.push(this.view(e, now));
    }
    return out.sort((a, b) => (a.identity < b.identity ? -1 : a.identity > b.identity ? 1 : 0));
  }

  summary(): Record<NodeStatus, number> {
    const now = this.now();
    const s: Record<NodeStatus, number> = { alive: 0, stale: 0, gone: 0 };
    for (const e of this.nodes.values()) s[this.status(e, now)]++;
    return s;
  }

  /** Nodes per value of a (dotted) fact among those matching the filter. */
  counts(fact: string, filter: Filter | undefined): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const n of this.query(filter)) {
      const v = lookupFact(n.facts, fact);
      const key =
        v === undefined || v === null ? "(unset)" : typeof v === "object" ? JSON.stringify(v) : String(v);
      counts[key] = (counts[key] ?? 0) + 1;
    }
    return counts;
  }
}

export interface FleetWatcherOptions {
  table: FleetTable;
  nc: NatsConnection;
  /** polls rpcutil#inventory with it; without one, registration and lifecycle only */
  client?: Client;
  collective: string;
  log: Logger;
  /** poll rpcutil#inventory this often, ms (default 60 000; 0: only at start) */
  inventoryEveryMs?: number;
}

/**
 * Keeps the table current: registration messages and lifecycle events as they come, and
 * an rpcutil#inventory poll at start and then periodically, since nodes (and the emulator)
 * need not publish registration at all.
 */
export class FleetWatcher {
  private readonly subs: { unsubscribe(): void }[] = [];
  private timer: NodeJS.Timeout | undefined;
  private polling: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly o: FleetWatcherOptions) {}

  start(): void {
    const { nc, table, log } = this.o;
    this.subs.push(
      nc.subscribe("choria.lifecycle.event.>", {
        callback: (err, msg) => {
          if (err) return log.warn(`lifecycle subscription: ${err.message}`);
          try {
            const ev = decodeLifecycleEvent(msg.data);
            const at = ev.timestamp > 0 ? ev.timestamp * 1000 : Date.now();
            if (eventType(ev) === "shutdown") table.shutdown(ev.identity, at);
            else table.seen(ev.identity, {}, Math.min(at, Date.now()));
          } catch (e) {
            log.debug(`bad lifecycle event on ${msg.subject}: ${(e as Error).message}`);
          }
        },
      }),
    );
    // Registration is signed by each node; the console only reads it for display, so the
    // broker's publish permissions are the trust here (no signature check).
    this.subs.push(
      nc.subscribe(registrationSubject(this.o.collective), {
        callback: (err, msg) => {
          if (err) return log.warn(`registration subscription: ${err.message}`);
          try {
            const { inner } = decodeTransport(msg.data, { strict: false });
            const { requestBytes } = decodeSecureRequest(inner);
            const { request, message } = decodeRequest(requestBytes);
            const p = decodeRegistrationPayload(message);
            const identity = request.sender;
            if (p.protocol === INVENTORY_PROTOCOL && p.content && typeof p.content === "object") {
              table.seen(identity, p.content as InventoryData);
            } else table.seen(identity);
          } catch (e) {
            log.debug(`bad registration message: ${(e as Error).message}`);
          }
        },
      }),
    );
    void this.poll();
    const every = this.o.inventoryEveryMs ?? 60_000;
    if (every > 0) {
      this.timer = setInterval(() => void this.poll(), every);
      this.timer.unref();
    }
  }

  /** One inventory round over the whole collective; resolves when it is done. */
  poll(): Promise<void> {
    const client = this.o.client;
    if (!client) return Promise.resolve();
    this.polling ??= (async () => {
      try {
        await client.request(
          "rpcutil",
          "inventory",
          {},
          {
            onReply: (r) => {
              if (r.statuscode === 0) this.o.table.seen(r.sender, r.data as Partial<InventoryData>);
            },
          },
        );
      } catch (err) {
        if (!this.stopped) this.o.log.warn(`inventory poll failed: ${(err as Error).message}`);
      } finally {
        this.polling = undefined;
      }
    })();
    return this.polling;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    for (const s of this.subs) s.unsubscribe();
    await this.polling;
  }
}
