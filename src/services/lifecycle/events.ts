import { createRequire } from "node:module";
import type { CloudEvent } from "cloudevents";
import { ChorusError } from "../../core/protocol/errors.js";
import { newRequestId } from "../../core/protocol/index.js";

// The cloudevents SDK (HTTP emitter, uuid, bignumber.js, a compiled schema) is loaded
// only to decode: every server publishes events, few processes read them.
const require = createRequire(import.meta.url);
const cloudEvents = (): typeof import("cloudevents") =>
  require("cloudevents") as typeof import("cloudevents");

export class LifecycleError extends ChorusError {}

export const LIFECYCLE_TYPES = [
  "startup",
  "shutdown",
  "alive",
  "provisioned",
  "governor",
  "upgraded",
] as const;
export type LifecycleType = (typeof LIFECYCLE_TYPES)[number];

// "timeouts" (plural) is what go-choria sends on the wire.
export type GovernorEventType = "enter" | "exit" | "timeouts" | "eviction";

/** The `data` of a lifecycle event, as go-choria's lifecycle package marshals it. */
export interface LifecycleEvent {
  protocol: string;
  id: string;
  identity: string;
  component: string;
  /** unix seconds */
  timestamp: number;
  /** startup, alive, upgraded */
  version?: string;
  /** upgraded */
  new_version?: string;
  /** governor */
  governor?: string;
  sequence?: number;
  event_type?: GovernorEventType;
}

export interface NewEventFields {
  identity: string;
  component: string;
  version?: string;
  newVersion?: string;
  governor?: string;
  sequence?: number;
  eventType?: GovernorEventType;
  /** defaults to now */
  timestamp?: number;
}

export const LIFECYCLE_SOURCE = "io.choria.lifecycle";
export const protocolFor = (type: LifecycleType): string => `io.choria.lifecycle.v1.${type}`;

// What each type must carry beyond the common fields (per the lifecycle schemas).
const REQUIRED: Record<LifecycleType, (keyof LifecycleEvent)[]> = {
  startup: ["version"],
  shutdown: [],
  alive: ["version"],
  provisioned: [],
  governor: ["governor", "sequence", "event_type"],
  upgraded: ["version", "new_version"],
};

/** Builds an event; throws when a field its type requires is missing. */
export function newLifecycleEvent(type: LifecycleType, f: NewEventFields): LifecycleEvent {
  if (!LIFECYCLE_TYPES.includes(type))
    throw new LifecycleError("type", `unknown lifecycle event type ${type}`);
  const ev: LifecycleEvent = {
    protocol: protocolFor(type),
    id: newRequestId(),
    identity: f.identity,
    component: f.component,
    timestamp: f.timestamp ?? Math.floor(Date.now() / 1000),
  };
  if (type === "startup" || type === "alive" || type === "upgraded") ev.version = f.version ?? "";
  if (type === "upgraded") ev.new_version = f.newVersion ?? "";
  if (type === "governor") {
    ev.governor = f.governor ?? "";
    ev.sequence = f.sequence ?? 0;
    ev.event_type = f.eventType ?? "enter";
  }
  checkEvent(type, ev);
  return ev;
}

function checkEvent(type: LifecycleType, ev: LifecycleEvent): void {
  for (const k of ["identity", "component"] as const) {
    if (typeof ev[k] !== "string" || ev[k] === "" || /[\s*>]/.test(ev[k]))
      throw new LifecycleError(
        "invalid",
        `lifecycle event ${k} "${String(ev[k])}" is empty or not a subject token`,
      );
  }
  for (const k of REQUIRED[type]) {
    if (ev[k] === undefined) throw new LifecycleError("invalid", `${type} event needs ${k}`);
  }
}

/** The type of an event, from its protocol (new `io.choria.lifecycle.v1.x` or legacy `choria:lifecycle:x:1`). */
export function eventType(ev: Pick<LifecycleEvent, "protocol">): LifecycleType {
  const m =
    /^io\.choria\.lifecycle\.v1\.(\w+)$/.exec(ev.protocol) ?? /^choria:lifecycle:(\w+):1$/.exec(ev.protocol);
  const t = m?.[1] as LifecycleType | undefined;
  if (!t || !LIFECYCLE_TYPES.includes(t))
    throw new LifecycleError("type", `unknown lifecycle protocol "${ev.protocol}"`);
  return t;
}

/** `choria.lifecycle.event.<type>.<component>` */
export function lifecycleSubject(ev: LifecycleEvent): string {
  return `choria.lifecycle.event.${eventType(ev)}.${ev.component}`;
}

/**
 * The wire form: a structured-mode CloudEvents 1.0 JSON document whose data is the
 * event, or (legacy) the bare event JSON as `plugin.choria.legacy_lifecycle_format` does.
 */
export function encodeLifecycleEvent(ev: LifecycleEvent, opts: { legacy?: boolean } = {}): Uint8Array {
  if (opts.legacy) return Buffer.from(JSON.stringify(ev));
  const type = protocolFor(eventType(ev));
  // What the SDK's validation would reject for these fields (the rest are constants).
  if (typeof ev.id !== "string" || ev.id === "" || typeof ev.identity !== "string" || ev.identity === "")
    throw new LifecycleError("invalid", "lifecycle event needs an id and an identity");
  // The exact bytes of JSON.stringify(new CloudEvent({...})) (same keys, same order;
  // pinned against the SDK by test/apps/cli/rss-lazy.test.ts), built by hand so a node
  // need not load the SDK to publish.
  return Buffer.from(
    JSON.stringify({
      id: ev.id,
      time: new Date(ev.timestamp * 1000).toISOString(),
      type,
      source: LIFECYCLE_SOURCE,
      specversion: "1.0",
      datacontenttype: "application/json",
      subject: ev.identity,
      data: ev,
    }),
  );
}

/** Parses either wire form; throws LifecycleError on anything else. */
export function decodeLifecycleEvent(bytes: Uint8Array): LifecycleEvent {
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes).toString("utf8"));
  } catch {
    throw new LifecycleError("malformed", "lifecycle event is not JSON");
  }
  if (raw === null || typeof raw !== "object")
    throw new LifecycleError("malformed", "lifecycle event is not an object");
  let data = raw as Record<string, unknown>;
  if ("specversion" in data) {
    let ce: CloudEvent<unknown>;
    try {
      ce = new (cloudEvents().CloudEvent)(data as Partial<CloudEvent<unknown>>);
    } catch (err) {
      throw new LifecycleError("malformed", `invalid CloudEvent: ${(err as Error).message}`);
    }
    const d = typeof ce.data === "string" ? (JSON.parse(ce.data) as unknown) : ce.data;
    if (d === null || typeof d !== "object")
      throw new LifecycleError("malformed", "CloudEvent has no event data");
    data = d as Record<string, unknown>;
  }
  if (typeof data.protocol !== "string")
    throw new LifecycleError("malformed", "lifecycle event has no protocol");
  const type = eventType(data as unknown as LifecycleEvent);
  const ev = data as unknown as LifecycleEvent;
  if (typeof ev.id !== "string" || typeof ev.timestamp !== "number")
    throw new LifecycleError("malformed", "lifecycle event lacks id or timestamp");
  checkEvent(type, ev);
  return ev;
}
