import { createRequire } from "node:module";
import { newRequestId } from "../../core/protocol/index.js";
import { silentLogger, type Logger } from "../../core/util/index.js";
import { Spool } from "../submission/index.js";

// The cloudevents SDK is loaded when an event is first encoded: servers that import
// the engine but never run a workflow do not pay for it.
const require = createRequire(import.meta.url);
const cloudEvents = (): typeof import("cloudevents") =>
  require("cloudevents") as typeof import("cloudevents");

export const JOB_EVENT_TYPES = [
  "execution_started",
  "started",
  "output",
  "finished",
  "failed",
  "execution_finished",
] as const;
export type JobEventType = (typeof JOB_EVENT_TYPES)[number];

/** One engine event; becomes the `data` of a CloudEvent. */
export interface JobEvent {
  event: JobEventType;
  execution_id: string;
  workflow_id: string;
  /** workflow name */
  name: string;
  /** step name; absent on execution_* events */
  step?: string;
  attempt?: number;
  /** execution_finished: the final execution state; finished/failed: the step's */
  state?: string;
  exit_code?: number;
  duration_ms?: number;
  error?: string;
  /** output events: a chunk of combined stdout+stderr */
  output?: string;
  /** output events: bytes of this step's output left out of events so far (rate and size caps) */
  dropped_bytes?: number;
  /** ISO time */
  time: string;
}

/** Where the engine reports events; implementations never throw. */
export interface EventSink {
  emit(e: JobEvent): void;
}

export const nullSink: EventSink = { emit() {} };

export const JOB_EVENT_PREFIX = "io.chorus.jobs.v1.";

/** The CloudEvents 1.0 JSON document (structured mode) of an event, validated by the SDK. */
export function encodeJobEvent(e: JobEvent, identity: string): string {
  const ce = new (cloudEvents().CloudEvent)({
    specversion: "1.0",
    id: newRequestId(),
    type: `${JOB_EVENT_PREFIX}${e.event}`,
    source: `chorus://${identity}/jobs/${e.execution_id}`,
    time: e.time,
    datacontenttype: "application/json",
    ...(e.step !== undefined ? { subject: e.step } : {}),
    data: e,
  });
  return JSON.stringify(ce);
}

/** `chorus.jobs.<execution_id>.<event>`: the spool publishes it under `<collective>.submission.in.` */
export function jobEventSubject(e: JobEvent): string {
  return `chorus.jobs.${e.execution_id}.${e.event}`;
}

/**
 * Submits events as reliable messages into a node's submission spool; whichever
 * process runs the spool's publisher (the server) sends them on, later if the node
 * is disconnected. A full spool or disk loses the event (logged), never the step.
 */
export function spoolSink(o: {
  spoolDir: string;
  identity: string;
  collective: string;
  logger?: Pick<Logger, "warn">;
}): EventSink {
  const log = o.logger ?? silentLogger;
  let spool: Spool | undefined;
  return {
    emit(e) {
      try {
        spool ??= new Spool({ dir: o.spoolDir, identity: o.identity, collective: o.collective });
        spool.submit({
          subject: jobEventSubject(e),
          payload: encodeJobEvent(e, o.identity),
          sender: "chorus-jobs",
          reliable: true,
        });
      } catch (err) {
        log.warn({ event: e.event, step: e.step, err: (err as Error).message }, "job event not spooled");
      }
    },
  };
}
