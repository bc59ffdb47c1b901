import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  decodeLifecycleEvent,
  watchLifecycle,
  type LifecycleEvent,
} from "../../../src/services/lifecycle/index.js";
import { Server } from "../../../src/server/index.js";
import { startSecureFleet, type SecureFleet } from "../../helpers/fleet.js";
import { connectAs, extraClient } from "./connect.js";

const NODE = "life1.example.net";

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("server lifecycle events through a JetStream broker", () => {
  let fleet: SecureFleet;
  let client: NatsConnection;
  beforeAll(async () => {
    fleet = await startSecureFleet({ servers: [NODE] });
    client = await connectAs(fleet.setup, fleet.setup.client);
  }, 60_000);
  afterAll(async () => {
    await client?.close();
    await fleet?.stop();
  });

  it("startup, alive and shutdown land in CHORIA_EVENTS and reach watchers", async () => {
    const watched: LifecycleEvent[] = [];
    const sub = watchLifecycle(client, { identity: NODE }, (ev) => watched.push(ev));
    await client.flush();
    const server = await Server.fromConfigFile(fleet.setup.serverConfigs[NODE] as string, {
      logger: pino({ level: "silent" }),
      lifecycle: { aliveIntervalMs: 200, aliveFirstDelayMaxMs: 50 },
    });
    await server.start();
    await until("two alive events", () => watched.filter((e) => e.protocol.endsWith(".alive")).length >= 2);
    await server.stop();
    await until("shutdown", () => watched.some((e) => e.protocol.endsWith(".shutdown")));
    sub.unsubscribe();
    // rpcutil daemon_stats "events": every lifecycle event the node published
    expect(server.node.stats.events).toBe(watched.length);

    const jsm = await jetstreamManager(client);
    const types: string[] = [];
    await until("events stored", async () => {
      const info = await jsm.streams.info("CHORIA_EVENTS");
      return info.state.messages >= 4;
    });
    const info = await jsm.streams.info("CHORIA_EVENTS");
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const m = await jsm.streams.getMessage("CHORIA_EVENTS", { seq });
      if (!m) continue;
      const ev = decodeLifecycleEvent(m.data);
      if (ev.identity !== NODE) continue;
      types.push(`${m.subject} ${ev.protocol}`);
      expect(ev.component).toBe("server");
    }
    expect(types[0]).toBe("choria.lifecycle.event.startup.server io.choria.lifecycle.v1.startup");
    expect(types.at(-1)).toBe("choria.lifecycle.event.shutdown.server io.choria.lifecycle.v1.shutdown");
    expect(types.filter((t) => t.includes(".alive.")).length).toBeGreaterThanOrEqual(2);
  }, 30_000);

  it("a client without events_viewer may not subscribe to lifecycle events", async () => {
    const cred = await extraClient(fleet.setup, "noevents", { fleet_management: true });
    const nc = await connectAs(fleet.setup, cred);
    try {
      const errors: Error[] = [];
      watchLifecycle(
        nc,
        {},
        () => {},
        (err) => errors.push(err),
      );
      await nc.flush();
      await until("permission error", () => errors.length > 0, 5000);
      expect(errors[0]?.message).toMatch(/permission/i);
    } finally {
      await nc.close().catch(() => undefined);
    }
  }, 20_000);
});
