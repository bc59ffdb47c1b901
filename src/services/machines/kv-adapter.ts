/**
 * MachineKv and MachineGovernor over Choria Streams, for hosts that have a broker
 * connection with JetStream (the server; `chorus machine run --nats`).
 */
import type { KV } from "@nats-io/kv";
import type { NatsConnection } from "../../core/connector/index.js";
import type { GovernorEventType } from "../streams/index.js";
import type { MachineGovernor, MachineKv } from "./types.js";

// Streams (and JetStream with it) load on first use: a server whose machines use no KV
// or governor never pays for them.
const streams = () => import("../streams/index.js");

/**
 * A MachineKv over the connection's JetStream KV buckets. Buckets are opened on first
 * use and the handle kept; a bucket that does not exist yet is retried on the next call
 * (go-choria binds on every poll so a bucket created later is picked up).
 */
export function streamsMachineKv(nc: NatsConnection): MachineKv {
  const open = new Map<string, Promise<KV>>();
  const bucket = (name: string): Promise<KV> => {
    let p = open.get(name);
    if (!p) {
      p = streams().then((s) => s.openBucket(nc, name));
      open.set(name, p);
      // forget failures so the next call tries again
      p.catch(() => open.delete(name));
    }
    return p;
  };
  return {
    async get(b, key) {
      const kv = await bucket(b);
      const { kvOp } = await streams();
      const e = await kvOp(`reading ${b}.${key}`, () => kv.get(key));
      if (!e || e.operation !== "PUT") return undefined;
      return { value: e.value, revision: e.revision };
    },
    async watch(b, key, onChange) {
      const kv = await bucket(b);
      const { kvOp } = await streams();
      // the default (LastValue) delivers the current value first, then every update
      const it = await kvOp(`watching ${b}.${key}`, () => kv.watch({ key }));
      void (async () => {
        try {
          for await (const e of it) onChange(e.operation === "PUT" ? e.value : undefined);
        } catch {
          // the iterator ends with an error when the connection closes; nothing to do
        }
      })();
      return () => it.stop();
    },
  };
}

export interface StreamsGovernorOptions {
  collective: string;
  /** recorded as the slot holder and in lifecycle events */
  identity: string;
  /** publish governor lifecycle events (default true) */
  events?: boolean;
}

/** A MachineGovernor over Choria Streams governors, publishing lifecycle events as go-choria does. */
export function streamsMachineGovernor(nc: NatsConnection, o: StreamsGovernorOptions): MachineGovernor {
  return {
    async run(name, timeoutMs, fn) {
      const { acquireGovernorSlot, publishGovernorEvent } = await streams();
      const onEvent =
        o.events === false
          ? undefined
          : (t: GovernorEventType, seq: number) =>
              publishGovernorEvent(nc, o.identity, name, t, seq, "machine");
      const slot = await acquireGovernorSlot(nc, name, {
        collective: o.collective,
        holder: o.identity,
        timeoutMs,
        ...(onEvent && { onEvent }),
      });
      try {
        return await fn();
      } finally {
        await slot.release();
      }
    },
  };
}
