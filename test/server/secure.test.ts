import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client } from "../../src/client/index.js";
import { Server } from "../../src/server/index.js";
import { startSecureFleet, type SecureFleet } from "../helpers/fleet.js";
import { quietLogger } from "./helpers.js";

const IDS = ["web1.example.net", "db1.example.net"];

describe("servers on a TLS + JWT broker from `chorus setup dev`", () => {
  let fleet: SecureFleet;
  let servers: Server[] = [];
  let client: Client;

  beforeAll(async () => {
    fleet = await startSecureFleet({ servers: IDS });
    servers = await Promise.all(
      IDS.map((id) => Server.fromConfigFile(fleet.setup.serverConfigs[id]!, { logger: quietLogger })),
    );
    await Promise.all(servers.map((s) => s.start()));
    client = await Client.fromConfigFile(fleet.setup.clientConfig, { logger: quietLogger });
  }, 60_000);
  afterAll(async () => {
    await client?.close();
    await Promise.all(servers.map((s) => s.stop()));
    await fleet?.stop();
  });

  it("discovers both servers and gets signed replies the client verifies", async () => {
    expect((await client.discover({ timeoutMs: 1000 })).sort()).toEqual([...IDS].sort());
    const res = await client.request("rpcutil", "ping", {}, { timeoutMs: 3000, verifyReplySignatures: true });
    expect(res.replies.map((r) => r.sender).sort()).toEqual([...IDS].sort());
    expect(res.stats.dropped).toMatchObject({ signature: 0, hash: 0, malformed: 0 });
  });

  it("answers direct and broadcast requests with facts from the setup's facts file", async () => {
    for (const mode of ["direct", "broadcast"] as const) {
      const res = await client.request(
        "rpcutil",
        "get_fact",
        { fact: "os" },
        { mode, timeoutMs: 3000, filter: { identity: ["web1.example.net"] } },
      );
      expect(res.replies).toHaveLength(1);
      expect(res.replies[0]).toMatchObject({
        sender: "web1.example.net",
        data: { fact: "os", value: "linux" },
      });
    }
  });

  it("choria_util#info reports a TLS connection to the broker", async () => {
    const res = await client.request(
      "choria_util",
      "info",
      {},
      { timeoutMs: 3000, nodes: ["db1.example.net"] },
    );
    expect(res.replies[0]?.data).toMatchObject({ security: "choria", connector_tls: true });
    expect(String(res.replies[0]?.data.connected_server)).toMatch(/127\.0\.0\.1/);
  });
});
