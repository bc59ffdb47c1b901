import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client } from "../../src/client/index.js";
import { Server } from "../../src/server/index.js";
import { startSecureFleet, type SecureFleet } from "../helpers/fleet.js";

const quiet = pino({ level: "silent" });

// The whole secured path (dev setup, supervised TLS + JWT broker, a real Server from
// its config file, the Client) survives nats-server dying under it.
describe("broker restart under a running fleet", () => {
  let fleet: SecureFleet;
  let server: Server;
  let client: Client;

  beforeAll(async () => {
    fleet = await startSecureFleet({ servers: ["web1.example.net"] });
    server = await Server.fromConfigFile(fleet.setup.serverConfigs["web1.example.net"] as string, {
      logger: quiet,
    });
    await server.start();
    client = await Client.fromConfigFile(fleet.setup.clientConfig, { logger: quiet });
  }, 30_000);
  afterAll(async () => {
    await client?.close();
    await server?.stop();
    await fleet?.stop();
  });

  it("answers before, restarts a SIGKILLed nats-server, and answers again after reconnecting", async () => {
    const before = await client.request("rpcutil", "ping", {}, { discoveryWindowed: true });
    expect(before.replies.map((r) => r.sender)).toEqual(["web1.example.net"]);

    const oldPid = fleet.broker.pid as number;
    const restarted = new Promise((r) => fleet.broker.once("restarted", r));
    process.kill(oldPid, "SIGKILL");
    await restarted;
    expect(fleet.broker.pid).not.toBe(oldPid);

    // both sides reconnect on their own; poll until the node answers again
    let after: string[] = [];
    for (let i = 0; i < 40 && after.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 250));
      after = await client.discover({ windowed: true, timeoutMs: 1000 }).catch(() => []);
    }
    expect(after).toEqual(["web1.example.net"]);
    const again = await client.request("rpcutil", "ping", {}, { nodes: after });
    expect(again.stats.ok).toBe(1);
    expect(fleet.broker.restarts).toBe(1);
  }, 30_000);
});

describe("stopping a server whose broker is gone", () => {
  it("closes its NATS connection instead of reconnecting forever (SIGTERM must end the process)", async () => {
    const fleet = await startSecureFleet({ servers: ["web2.example.net"] });
    const server = await Server.fromConfigFile(fleet.setup.serverConfigs["web2.example.net"] as string, {
      logger: quiet,
    });
    await server.start();
    const nc = server.connection;
    expect(nc).toBeDefined();
    await fleet.stop(); // the broker goes away; the connection starts reconnecting
    await new Promise((r) => setTimeout(r, 300));
    await server.stop();
    // a connection left reconnecting keeps the event loop (and the process) alive
    expect(nc?.isClosed()).toBe(true);
  }, 30_000);
});
