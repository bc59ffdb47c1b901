import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import type { Counter, Gauge, Registry } from "prom-client";
import { compileRegex, regexProblem } from "../../core/protocol/index.js";
import { promClient } from "../../core/util/index.js";
import {
  LIFECYCLE_TYPES,
  LifecycleError,
  decodeLifecycleEvent,
  eventType,
  type LifecycleEvent,
  type LifecycleType,
} from "./events.js";
import { ALIVE_INTERVAL_MS } from "./reporter.js";

export interface LifecycleFilter {
  type?: LifecycleType;
  component?: string;
  /** exact identity, or /regex/ */
  identity?: string;
}

/** The narrowest subject for a filter; identity is matched after decoding. */
export function lifecycleWatchSubject(f: LifecycleFilter = {}): string {
  if (f.type && !LIFECYCLE_TYPES.includes(f.type))
    throw new LifecycleError("type", `unknown lifecycle event type ${f.type}`);
  return `choria.lifecycle.event.${f.type ?? "*"}.${f.component ?? "*"}`;
}

export function identityMatcher(pattern: string | undefined): (identity: string) => boolean {
  if (!pattern) return () => true;
  const m = /^\/(.*)\/$/.exec(pattern);
  if (!m) return (id) => id === pattern;
  // Linear-time engine, RE2 syntax (as go-choria); a bad pattern is the watcher's own mistake.
  const re = compileRegex(m[1] as string);
  if (!re) {
    const why = regexProblem(m[1] as string) ?? "invalid";
    throw new LifecycleError("identity", `invalid identity regular expression ${pattern}: ${why}`);
  }
  return (id) => re.test(id);
}

/**
 * Subscribes to lifecycle events matching `filter`. Undecodable messages go to
 * onBad rather than ending the watch (other publishers share the subjects).
 */
export function watchLifecycle(
  nc: NatsConnection,
  filter: LifecycleFilter,
  onEvent: (ev: LifecycleEvent, subject: string) => void,
  onBad?: (err: Error, subject: string) => void,
): Subscription {
  const match = identityMatcher(filter.identity);
  return nc.subscribe(lifecycleWatchSubject(filter), {
    callback: (err, msg) => {
      if (err) {
        onBad?.(err, "");
        return;
      }
      let ev: LifecycleEvent;
      try {
        ev = decodeLifecycleEvent(msg.data);
      } catch (e) {
        onBad?.(e as Error, msg.subject);
        return;
      }
      if (match(ev.identity)) onEvent(ev, msg.subject);
    },
  });
}

// prom-client is loaded (promClient()) by the first LifecycleTally: servers import this
// module (through lifecycle/index.ts) but never tally, and should not carry prom-client for it.

export interface TallyOptions {
  /** only count this component (default: all) */
  component?: string;
  /** forget nodes not heard from for this long (default 2 alive intervals + 5 min) */
  expireMs?: number;
  registry?: Registry;
  /** metric name prefix (default choria_lifecycle_tally) */
  prefix?: string;
}

interface NodeEntry {
  component: string;
  version: string;
  seen: number;
}

/**
 * Live counts of nodes by component and version, from startup, alive and shutdown
 * events: the node list a `chorus event tally` keeps, exported as Prometheus gauges.
 */
export class LifecycleTally {
  readonly registry: Registry;
  private readonly nodes = new Map<string, NodeEntry>();
  private readonly o: TallyOptions;
  private readonly versions: Gauge;
  private readonly events: Counter;
  private readonly bad: Counter;
  private readonly expired: Counter;

  constructor(o: TallyOptions = {}) {
    const { Counter, Gauge, Registry } = promClient();
    this.o = o;
    this.registry = o.registry ?? new Registry();
    const p = o.prefix ?? "choria_lifecycle_tally";
    const registers = [this.registry];
    this.versions = new Gauge({
      name: `${p}_versions`,
      help: "Nodes seen by component and version",
      labelNames: ["component", "version"],
      registers,
      // computed at scrape time from the node list, so it never drifts
      collect: () => {
        this.expire();
        this.versions.reset();
        for (const c of this.counts())
          this.versions.set({ component: c.component, version: c.version }, c.count);
      },
    });
    this.events = new Counter({
      name: `${p}_events_total`,
      help: "Lifecycle events processed by type",
      labelNames: ["type"],
      registers,
    });
    this.bad = new Counter({
      name: `${p}_bad_events_total`,
      help: "Messages that were not lifecycle events",
      registers,
    });
    this.expired = new Counter({
      name: `${p}_nodes_expired_total`,
      help: "Nodes forgotten after no alive event",
      registers,
    });
  }

  get size(): number {
    return this.nodes.size;
  }

  observeBad(): void {
    this.bad.inc();
  }

  observe(ev: LifecycleEvent, now = Date.now()): void {
    if (this.o.component && ev.component !== this.o.component) return;
    const type = eventType(ev);
    this.events.inc({ type });
    const key = `${ev.component}\u0000${ev.identity}`;
    if (type === "shutdown") this.nodes.delete(key);
    else if (type === "startup" || type === "alive")
      this.nodes.set(key, { component: ev.component, version: ev.version ?? "", seen: now });
    else if (type === "upgraded")
      this.nodes.set(key, { component: ev.component, version: ev.new_version ?? "", seen: now });
    else {
      const n = this.nodes.get(key);
      if (n) n.seen = now;
    }
  }

  /** Drops nodes whose last event is older than the expiry. */
  expire(now = Date.now()): number {
    const limit = this.o.expireMs ?? 2 * ALIVE_INTERVAL_MS + 5 * 60_000;
    let n = 0;
    for (const [k, v] of this.nodes) {
      if (now - v.seen > limit) {
        this.nodes.delete(k);
        n++;
      }
    }
    if (n) this.expired.inc(n);
    return n;
  }

  counts(): { component: string; version: string; count: number }[] {
    const m = new Map<string, { component: string; version: string; count: number }>();
    for (const v of this.nodes.values()) {
      const k = `${v.component}\u0000${v.version}`;
      const e = m.get(k) ?? { component: v.component, version: v.version, count: 0 };
      e.count++;
      m.set(k, e);
    }
    return [...m.values()].sort(
      (a, b) => a.component.localeCompare(b.component) || a.version.localeCompare(b.version),
    );
  }
}
