import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client } from "../../src/client/index.js";
import { Emulator } from "../../src/emulator/index.js";
import { verifyStats } from "../../src/security/index.js";
import { pino } from "pino";
import { chorusAsync } from "../helpers/cli.js";
import { startSecureFleet, type SecureFleet } from "../helpers/fleet.js";

const quiet = pino({ level: "silent" });

describe("emulator on a secured broker", () => {
  let fleet: SecureFleet;
  let emulator: Emulator;
  let client: Client;
  const N = 1000;

  beforeAll(async () => {
    fleet = await startSecureFleet();
    emulator = Emulator.fromConfigFile(fleet.setup.emulatorConfig, { nodes: N, logger: quiet });
    await emulator.start();
    client = await Client.fromConfigFile(fleet.setup.clientConfig, { logger: quiet });
  }, 60_000);
  afterAll(async () => {
    await client?.close();
    await emulator?.stop();
    await fleet?.stop();
  });

  it(`answers a signed ping from all ${N} nodes`, async () => {
    const ping = await client.ping({ windowed: true, timeoutMs: 10_000 });
    expect(ping.replies).toHaveLength(N);
    expect(new Set(ping.replies.map((r) => r.sender)).size).toBe(N);
  });

  it("verifies a broadcast request once for the whole process, not once per node", async () => {
    const before = emulator.decoder.stats;
    const result = await client.request("rpcutil", "ping", {}, { mode: "broadcast", timeoutMs: 5_000 });
    expect(result.replies).toHaveLength(N);
    const after = emulator.decoder.stats;
    // the request arrives once; its bytes are parsed and verified once however many
    // nodes answer (the client discovers first, so two messages came in)
    expect(result.stats.discovered).toBe(N);
    expect(after.messages - before.messages).toBe(2);
    expect(after.verifications - before.verifications).toBe(2);
  });

  it("direct requests reach only the filtered nodes and every reply signature verifies", async () => {
    const verifiesBefore = verifyStats.count;
    const result = await client.request(
      "rpcutil",
      "get_fact",
      { fact: "role" },
      {
        filter: { fact: [{ fact: "role", operator: "==", value: "db" }] },
        verifyReplySignatures: true,
        discoveryWindowed: true,
      },
    );
    expect(result.stats.discovered).toBe(N / 5);
    expect(result.stats.ok).toBe(N / 5);
    expect(result.replies.every((r) => r.data.value === "db")).toBe(true);
    // the client checked one signature (and one server token) per reply at least
    expect(verifyStats.count - verifiesBefore).toBeGreaterThanOrEqual(N / 5);
  });

  it(`chorus ping (the CLI) gets ${N} replies`, async () => {
    const r = await chorusAsync(["ping", "--discovery-window"], { CHORUS_CONFIG: fleet.setup.clientConfig });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const lines = r.stdout.split("\n").filter((l) => /\.emulated\.chorus\s+time=/.test(l));
    expect(lines).toHaveLength(N);
    expect(r.stdout).toContain(`${N} replies`);
  });
});
