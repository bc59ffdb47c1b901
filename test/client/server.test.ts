import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { exitCodeFor, renderText } from "../../src/apps/cli/render/index.js";
import { Client } from "../../src/client/index.js";
import { Server } from "../../src/server/index.js";
import { startSecureFleet, type SecureFleet } from "../helpers/fleet.js";
import { TEST_DDL } from "./fleet.js";

// Chorus client against Chorus servers (src/server + built-in agents) on the secure
// dev broker: the path `chorus req` takes in a real deployment.
let fleet: SecureFleet;
const servers: Server[] = [];

beforeAll(async () => {
  fleet = await startSecureFleet({ servers: ["a.lab", "b.lab", "c.lab"] });
  for (const [identity, path] of Object.entries(fleet.setup.serverConfigs)) {
    const server = await Server.fromConfigFile(path, {
      logger: pino({ level: "silent" }),
      facts: { role: identity === "c.lab" ? "db" : "web" },
    });
    server.registerAgent(TEST_DDL, {
      echo: (req) => ({ message: req.data.message }),
      fail: (_req, reply) => reply.fail("failed on purpose"),
    });
    await server.start();
    servers.push(server);
  }
}, 60_000);

afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  await fleet?.stop();
});

async function withClient<T>(fn: (c: Client) => Promise<T>): Promise<T> {
  const c = await Client.fromConfigFile(fleet.setup.clientConfig, { discoveryTimeoutMs: 1500 });
  c.registerDDL(TEST_DDL);
  try {
    return await fn(c);
  } finally {
    await c.close();
  }
}

describe("client against Chorus servers", () => {
  it("discovers by fact and pings", async () => {
    await withClient(async (c) => {
      const web = await c.discover({ filter: { fact: [{ fact: "role", operator: "==", value: "web" }] } });
      expect(web.sort()).toEqual(["a.lab", "b.lab"]);
      const ping = await c.ping({ windowed: true });
      expect(ping.replies.map((r) => r.sender).sort()).toEqual(["a.lab", "b.lab", "c.lab"]);
    });
  });

  it("runs rpcutil#ping with verified reply signatures", async () => {
    await withClient(async (c) => {
      const r = await c.request(
        "rpcutil",
        "ping",
        {},
        { discoveryWindowed: true, verifyReplySignatures: true },
      );
      expect(r.replies.map((x) => x.sender).sort()).toEqual(["a.lab", "b.lab", "c.lab"]);
      expect(r.stats.dropped.signature).toBe(0);
      for (const reply of r.replies) expect(typeof reply.data.pong).toBe("number");
      expect(exitCodeFor(r.stats)).toBe(0);
      expect(renderText(r, c.ddl("rpcutil"))).toMatch(/Timestamp: \d+/);
    });
  });

  it("runs a custom agent in direct and broadcast mode", async () => {
    await withClient(async (c) => {
      const direct = await c.request(
        "testagent",
        "echo",
        { message: "hi there" },
        { nodes: ["a.lab", "c.lab"] },
      );
      expect(direct.replies.map((x) => x.data).sort()).toEqual([
        { message: "hi there", extra: "dflt" },
        { message: "hi there", extra: "dflt" },
      ]);
      const bc = await c.request(
        "testagent",
        "fail",
        {},
        { mode: "broadcast", filter: { fact: [{ fact: "role", operator: "==", value: "web" }] } },
      );
      expect(bc.replies.map((x) => x.sender).sort()).toEqual(["a.lab", "b.lab"]);
      expect(bc.stats).toMatchObject({ failed: 2, ok: 0, noResponses: [] });
      expect(bc.replies[0]?.statusmsg).toBe("failed on purpose");
      expect(exitCodeFor(bc.stats)).toBe(2);
    });
  });
});
