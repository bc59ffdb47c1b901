import { spawn } from "node:child_process";
import { flushNats, type NatsConnection } from "../../core/connector/index.js";
import { encodeLifecycleEvent, lifecycleSubject, newLifecycleEvent } from "../lifecycle/index.js";
import { StreamsError } from "./errors.js";
import { acquireGovernorSlot, type GovernorEventType } from "./governor.js";

/** Publishes a `governor` lifecycle event; best effort, like go-choria's trySendEvent. */
export function publishGovernorEvent(
  nc: NatsConnection,
  identity: string,
  governor: string,
  type: GovernorEventType,
  seq: number,
  component = "cli",
): void {
  try {
    const ev = newLifecycleEvent("governor", {
      identity,
      component,
      governor,
      sequence: seq,
      eventType: type,
    });
    nc.publish(lifecycleSubject(ev), encodeLifecycleEvent(ev));
  } catch {
    // an event that cannot be sent must not stop the governed command
  }
}

export interface RunGovernedOptions {
  collective: string;
  identity: string;
  timeoutMs?: number;
  intervalMs?: number;
  /** emit lifecycle events (default true) */
  events?: boolean;
  signal?: AbortSignal;
  /** stdio for the child (default inherit) */
  stdio?: "inherit" | "ignore";
  env?: NodeJS.ProcessEnv;
}

/**
 * Runs `command` only inside a governor slot: waits for a slot, runs the command,
 * releases the slot when it exits (or fails to start), and returns its exit code.
 */
export async function runGoverned(
  nc: NatsConnection,
  name: string,
  command: string,
  args: string[],
  o: RunGovernedOptions,
): Promise<number> {
  const onEvent =
    o.events === false
      ? undefined
      : (t: GovernorEventType, seq: number) => publishGovernorEvent(nc, o.identity, name, t, seq);
  const slot = await acquireGovernorSlot(nc, name, {
    collective: o.collective,
    holder: o.identity,
    ...(o.timeoutMs !== undefined && { timeoutMs: o.timeoutMs }),
    ...(o.intervalMs !== undefined && { intervalMs: o.intervalMs }),
    ...(o.signal && { signal: o.signal }),
    ...(onEvent && { onEvent }),
  });
  try {
    return await new Promise<number>((resolve, reject) => {
      const child = spawn(command, args, {
        stdio: o.stdio ?? "inherit",
        env: { ...(o.env ?? process.env), CHORIA_GOVERNOR: name, CHORIA_GOVERNOR_SEQ: String(slot.seq) },
      });
      const onAbort = () => child.kill("SIGTERM");
      o.signal?.addEventListener("abort", onAbort);
      child.once("error", (err) =>
        reject(new StreamsError("usage", `cannot run ${command}: ${err.message}`, { cause: err })),
      );
      child.once("exit", (code, sig) => {
        o.signal?.removeEventListener("abort", onAbort);
        resolve(code ?? (sig ? 128 : 1));
      });
    });
  } finally {
    await slot.release();
    await flushNats(nc).catch(() => {});
  }
}
