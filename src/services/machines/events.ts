import { createRequire } from "node:module";
import { randomUUID } from "node:crypto";
import type { TransitionEventData } from "./types.js";

// The cloudevents SDK is loaded on the first event: a server whose machines never
// transition does not pay for it.
const require = createRequire(import.meta.url);
const cloudEvents = (): typeof import("cloudevents") =>
  require("cloudevents") as typeof import("cloudevents");

/** Where go-choria publishes machine transitions. */
export const MACHINE_TRANSITION_SUBJECT = "choria.machine.transition";

/** Where go-choria publishes a watcher type's state announcements. */
export function watcherStateSubject(type: string): string {
  return `choria.machine.watcher.${type}.state`;
}

export const TRANSITION_PROTOCOL = "io.choria.machine.v1.transition";
export const MACHINE_EVENT_SOURCE = "io.choria.machine";

export function watcherStateProtocol(type: string): string {
  return `io.choria.machine.watcher.${type}.v1.state`;
}

/** A CloudEvents 1.0 event in structured JSON form (what JSON.stringify gives). */
export interface MachineCloudEvent<T> {
  specversion: "1.0";
  id: string;
  source: string;
  type: string;
  subject: string;
  time: string;
  datacontenttype: "application/json";
  data: T;
}

function build<T extends Record<string, unknown>>(
  type: string,
  subject: string,
  timestamp: number,
  data: T,
): MachineCloudEvent<T> {
  // go-choria sets the event time from the notification's unix-seconds timestamp
  const time = new Date((Number.isFinite(timestamp) ? timestamp : Date.now() / 1000) * 1000).toISOString();
  const ce = new (cloudEvents().CloudEvent)<T>({
    specversion: "1.0",
    id: randomUUID(),
    type,
    source: MACHINE_EVENT_SOURCE,
    subject,
    time,
    datacontenttype: "application/json",
    data,
  });
  // the SDK validated it; hand back a plain object so callers need not know the SDK
  return JSON.parse(JSON.stringify(ce)) as MachineCloudEvent<T>;
}

/** `io.choria.machine.v1.transition` (data carries `protocol` as go-choria's does). */
export function transitionCloudEvent(
  data: TransitionEventData,
): MachineCloudEvent<TransitionEventData & { protocol: string }> {
  return build(TRANSITION_PROTOCOL, data.identity, data.timestamp, {
    protocol: TRANSITION_PROTOCOL,
    ...data,
  });
}

/** `io.choria.machine.watcher.<type>.v1.state`; data is the watcher's announced state. */
export function watcherStateCloudEvent(
  type: string,
  data: Record<string, unknown>,
): MachineCloudEvent<Record<string, unknown>> {
  const identity = typeof data.identity === "string" ? data.identity : "";
  const ts = typeof data.timestamp === "number" ? data.timestamp : Date.now() / 1000;
  return build(watcherStateProtocol(type), identity, ts, { protocol: watcherStateProtocol(type), ...data });
}
