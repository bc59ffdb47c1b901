import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { exitCodeFor } from "../../src/apps/cli/render/index.js";
import { Client } from "../../src/client/index.js";
import { startSecureFleet, type SecureFleet } from "../helpers/fleet.js";
import { startServerResponder, type Responder } from "./fleet.js";

// The client as `chorus req` runs it: dev setup config, TLS, NATS JWT auth and the
// broker ACLs derived from the tokens, against responders using real server credentials.
let fleet: SecureFleet;
const responders: Responder[] = [];

beforeAll(async () => {
  fleet = await startSecureFleet({ servers: ["s1.lab", "s2.lab"] });
  for (const [identity, path] of Object.entries(fleet.setup.serverConfigs)) {
    responders.push(
      await startServerResponder(path, identity, {
        handler: () => ({ statuscode: 0, statusmsg: "OK", data: { pong: 1 } }),
      }),
    );
  }
}, 60_000);

afterAll(async () => {
  await Promise.all(responders.map((r) => r.stop()));
  await fleet?.stop();
});

describe("client against a secure broker", () => {
  it("discovers and requests with verified reply signatures", async () => {
    const client = await Client.fromConfigFile(fleet.setup.clientConfig, {
      discoveryTimeoutMs: 1000,
      verifyReplySignatures: true,
    });
    try {
      expect((await client.discover({ windowed: true })).sort()).toEqual(["s1.lab", "s2.lab"]);
      const r = await client.request("rpcutil", "ping", {}, { discoveryWindowed: true });
      expect(r.replies.map((x) => x.sender).sort()).toEqual(["s1.lab", "s2.lab"]);
      expect(r.stats.dropped).toEqual({ malformed: 0, hash: 0, signature: 0, request: 0, duplicate: 0 });
      expect(exitCodeFor(r.stats)).toBe(0);
      const b = await client.request(
        "rpcutil",
        "ping",
        {},
        { mode: "broadcast", nodes: ["s1.lab", "s2.lab"] },
      );
      expect(b.stats).toMatchObject({ responses: 2, ok: 2, noResponses: [] });
    } finally {
      await client.close();
    }
  });
});
