import type { Client } from "../../client/index.js";
import type { NatsConnection } from "../../core/connector/index.js";
import { lookupFact, matchFilter } from "../../core/filter/index.js";
import {
  decodeRequest,
  decodeSecureRequest,
  decodeTransport,
  isEmptyFilter,
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
import type { FleetNode, NodeStatus, RegistrationState } from "./api-types.js";

export interface FleetTableOptions {
  /** the fleet's registration interval: a node is stale after twice this (default: 5 minutes) */
  registrationIntervalS?: number;
  /** a node not heard from this long is gone (default 1 h) */
  goneAfterMs?: number;
  /**
   * counts by fact answer from a cache this long (default 1 000 ms; 0: never): many
   * browsers on one chart ask the same question, and each answer walks every node
   */
  countsCacheMs?: number;
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

const byIdentity = (a: Entry, b: Entry): number =>
  a.identity < b.identity ? -1 : a.identity > b.identity ? 1 : 0;

/**
 * What the console knows of each node, from registration, lifecycle events and inventory
 * polls. Built for tens of thousands of nodes: the identity order is kept between queries
 * (only a new node re-sorts), and only the page asked for is turned into views.
 */
export class FleetTable {
  private readonly nodes = new Map<string, Entry>();
  /** every entry by identity; undefined after a node was added */
  private sorted: Entry[] | undefined;
  private readonly countsCacheMs: number;
  /** recent counts answers by fact and filter */
  private readonly countsCache = new Map<string, { at: number; counts: Record<string, number> }>();
  private readonly staleMs: number;
  private readonly goneMs: number;
  private readonly now: () => number;

  constructor(o: FleetTableOptions = {}) {
    this.staleMs = o.registrationIntervalS ? o.registrationIntervalS * 2000 : FIVE_MIN_MS;
    this.goneMs = o.goneAfterMs ?? HOUR_MS;
    this.now = o.now ?? Date.now;
    this.countsCacheMs = o.countsCacheMs ?? 1_000;
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
    if (!this.nodes.has(identity)) {
      this.nodes.set(identity, e);
      this.sorted = undefined;
    }
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

  /** Entries matching the filter (and status), by identity; the cached order itself when nothing filters. */
  private matching(filter: Filter | undefined, status: NodeStatus | undefined, now: number): Entry[] {
    const all = (this.sorted ??= [...this.nodes.values()].sort(byIdentity));
    const open = filter === undefined || isEmptyFilter(filter);
    if (open && status === undefined) return all;
    return all.filter(
      (e) => (status === undefined || this.status(e, now) === status) && (open || matchFilter(filter, e)),
    );
  }

  /** Nodes matching the filter (and status), sorted by identity. */
  query(filter: Filter | undefined, status?: NodeStatus): FleetNode[] {
    const now = this.now();
    return this.matching(filter, status, now).map((e) => this.view(e, now));
  }

  /** One page of query(): how many match, and views of `limit` of them from `offset`. */
  page(
    filter: Filter | undefined,
    status: NodeStatus | undefined,
    offset: number,
    limit: number,
  ): { total: number; nodes: FleetNode[] } {
    const now = this.now();
    const m = this.matching(filter, status, now);
    return { total: m.length, nodes: m.slice(offset, offset + limit).map((e) => this.view(e, now)) };
  }

  summary(): Record<NodeStatus, number> {
    const now = this.now();
    const s: Record<NodeStatus, number> = { alive: 0, stale: 0, gone: 0 };
    for (const e of this.nodes.values()) s[this.status(e, now)]++;
    return s;
  }

  /** Nodes per value of a (dotted) fact among those matching the filter; at most countsCacheMs old. */
  counts(fact: string, filter: Filter | undefined): Record<string, number> {
    const now = this.now();
    const key = this.countsCacheMs > 0 ? `${fact}\u0000${JSON.stringify(filter ?? null)}` : undefined;
    const hit = key === undefined ? undefined : this.countsCache.get(key);
    if (hit && now - hit.at < this.countsCacheMs) return hit.counts;
    const counts: Record<string, number> = {};
    for (const n of this.matching(filter, undefined, now)) {
      const v = lookupFact(n.facts, fact);
      const value =
        v === undefined || v === null ? "(unset)" : typeof v === "object" ? JSON.stringify(v) : String(v);
      counts[value] = (counts[value] ?? 0) + 1;
    }
    if (key !== undefined) {
      // bounded: a table of many different questions starts over
      if (this.countsCache.size >= 256) this.countsCache.clear();
      this.countsCache.set(key, { at: now, counts });
    }
    return counts;
  }
}

export interface FleetWatcherOptions {
  table: FleetTable;
  /** lifecycle events come on this one (the console's client: events_viewer) */
  nc: NatsConnection;
  /**
   * subscribes to `<collective>.broadcast.agent.registration` on this one: a credential
   * allowed to (an everyday client token is not); without it, no subscription at all
   */
  registrationNc?: NatsConnection;
  /** names that credential in the one log line a refused subscription gets */
  registrationBy?: string;
  /**
   * known before subscribing (the credential's NATS permissions say so): why that
   * credential may not subscribe; nothing is sent to the broker then
   */
  registrationRefused?: string;
  /** polls rpcutil#inventory with it; without one, registration and lifecycle only */
  client?: Client;
  collective: string;
  log: Logger;
  /** poll rpcutil#inventory this often, ms (default 60 000; 0: only at start) */
  inventoryEveryMs?: number;
}

/**
 * Keeps the table current: lifecycle events and (given a credential that may read them)
 * registration messages as they come, and an rpcutil#inventory poll at start and then
 * periodically, since nodes (and the emulator) need not publish registration at all.
 */
export class FleetWatcher {
  private readonly subs: { unsubscribe(): void }[] = [];
  private timer: NodeJS.Timeout | undefined;
  private polling: Promise<void> | undefined;
  private stopped = false;
  private regState: RegistrationState = "off";
  /** settles once the broker accepted or refused the registration subscription */
  private regSettled: Promise<void> = Promise.resolve();

  constructor(private readonly o: FleetWatcherOptions) {}

  /** Whether registration arrives live, was refused by the broker, or is not subscribed. */
  get registration(): RegistrationState {
    return this.regState;
  }

  /** Resolves once the registration subscription is known to be live or refused. */
  registrationSettled(): Promise<void> {
    return this.regSettled;
  }

  get inventoryEveryS(): number {
    return Math.round((this.o.inventoryEveryMs ?? 60_000) / 1000);
  }

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
    if (this.o.registrationRefused !== undefined) this.refused(this.o.registrationRefused);
    else if (this.o.registrationNc) this.subscribeRegistration(this.o.registrationNc);
    void this.poll();
    const every = this.o.inventoryEveryMs ?? 60_000;
    if (every > 0) {
      this.timer = setInterval(() => void this.poll(), every);
      this.timer.unref();
    }
  }

  // Registration is signed by each node; the console only reads it for display, so the
  // broker's publish permissions are the trust here (no signature check).
  private subscribeRegistration(nc: NatsConnection): void {
    const { table, log } = this.o;
    const subject = registrationSubject(this.o.collective);
    this.regState = "live";
    this.subs.push(
      nc.subscribe(subject, {
        callback: (err, msg) => {
          if (err) {
            // a refused subscription ends here once; the inventory poll carries on
            if (this.regState !== "refused" && !this.stopped) this.refused(err.message);
            return;
          }
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
    // a permission violation comes back before the PONG of this flush
    this.regSettled = nc.flush().catch(() => {});
  }

  private refused(why: string): void {
    this.regState = "refused";
    this.o.log.info(
      `registration: ${this.o.registrationBy ?? "the credential"} may not subscribe to ` +
        `${registrationSubject(this.o.collective)} (${why}); nodes come from lifecycle events and rpcutil#inventory polls`,
    );
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
