import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client } from "../../../src/client/index.js";
import { Emulator, emulatedFacts } from "../../../src/apps/emulator/index.js";
import { verifyStats } from "../../../src/core/security/index.js";
import { pino } from "pino";
import { chorusAsync } from "../../helpers/cli.js";
import { startSecureFleet, type SecureFleet } from "../../helpers/fleet.js";

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
    const ping = await client.ping({ windowed: true, windowMs: 2_000, timeoutMs: 10_000 });
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

  it("performs exactly one ed25519 verification per distinct request in the process (regression guard)", async () => {
    // Hash-checked replies cost the client no verification and the caller token is
    // cached, so every verification here is the emulator checking a request signature:
    // one per distinct request (discovery + rpcutil), never one per node.
    const before = verifyStats.count;
    const result = await client.request("rpcutil", "ping", {}, { mode: "broadcast", timeoutMs: 5_000 });
    expect(result.replies).toHaveLength(N);
    expect(verifyStats.count - before).toBe(2);
    // direct requests to many nodes carry the same bytes: still one verification
    const direct = await client.request(
      "rpcutil",
      "ping",
      {},
      { nodes: result.replies.slice(0, 50).map((r) => r.sender) },
    );
    expect(direct.stats.ok).toBe(50);
    expect(verifyStats.count - before).toBe(3);
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
        // fixed-time discovery: a 300 ms quiet window could cut a loaded CI machine short
        discoveryTimeoutMs: 3_000,
      },
    );
    // facts are per-node hashes: count the db nodes the same way
    let dbs = 0;
    for (let i = 1; i <= N; i++) if (emulatedFacts(i).role === "db") dbs++;
    expect(result.stats.discovered).toBe(dbs);
    expect(result.stats.ok).toBe(dbs);
    expect(result.replies.every((r) => r.data.value === "db")).toBe(true);
    // the client checked one signature (and one server token) per reply at least
    expect(verifyStats.count - verifiesBefore).toBeGreaterThanOrEqual(dbs);
  });

  it(`chorus ping (the CLI) gets ${N} replies`, async () => {
    const r = await chorusAsync(["ping", "--discovery-timeout", "4"], {
      CHORUS_CONFIG: fleet.setup.clientConfig,
    });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const lines = r.stdout.split("\n").filter((l) => /\.emulated\.chorus\s+time=/.test(l));
    expect(lines).toHaveLength(N);
    expect(r.stdout).toContain(`${N} replies`);
  });
});

// Worker shards run the built JS; `npm test` builds first, a bare vitest run may not have.
const builtWorker = fileURLToPath(new URL("../../../dist/apps/emulator/worker.js", import.meta.url));

describe.skipIf(!existsSync(builtWorker))("sharded emulator (worker threads)", () => {
  let fleet: SecureFleet;
  let emulator: Emulator;
  let client: Client;
  const N = 600;

  beforeAll(async () => {
    fleet = await startSecureFleet();
    emulator = Emulator.fromConfigFile(fleet.setup.emulatorConfig, { nodes: N, workers: 2, logger: quiet });
    await emulator.start();
    client = await Client.fromConfigFile(fleet.setup.clientConfig, { logger: quiet });
  }, 60_000);
  afterAll(async () => {
    await client?.close();
    await emulator?.stop();
    await fleet?.stop();
  });

  it("spreads the nodes over the workers and answers from all of them", async () => {
    expect(emulator.workers).toBe(2);
    expect(emulator.size).toBe(N);
    const shards = await emulator.shardStats();
    expect(shards.map((s) => s.nodes)).toEqual([N / 2, N / 2]);
    const ping = await client.ping({ windowed: true, windowMs: 2_000, timeoutMs: 10_000 });
    expect(new Set(ping.replies.map((r) => r.sender)).size).toBe(N);
  });

  it("verifies each request once per worker thread, however many of its nodes receive it", async () => {
    const before = await emulator.shardStats();
    const result = await client.request("rpcutil", "ping", {}, { mode: "broadcast", timeoutMs: 5_000 });
    expect(result.replies).toHaveLength(N);
    // direct to 100 nodes of each shard: the same bytes arrive 100 times per shard
    const targets = result.replies.map((r) => r.sender).sort();
    const direct = await client.request(
      "rpcutil",
      "ping",
      {},
      { nodes: [...targets.slice(0, 100), ...targets.slice(-100)] },
    );
    expect(direct.stats.ok).toBe(200);
    const after = await emulator.shardStats();
    for (let i = 0; i < after.length; i++) {
      const a = after[i] as (typeof after)[number];
      const b = before[i] as (typeof before)[number];
      // discovery broadcast + rpcutil broadcast + one direct request: three distinct messages
      expect(a.decoder.verifications - b.decoder.verifications).toBe(3);
      expect(a.verifies - b.verifies).toBe(3);
      expect(a.decoder.cacheHits - b.decoder.cacheHits).toBe(99);
    }
    const total = await emulator.totalStats();
    expect(total?.replies).toBeGreaterThanOrEqual(2 * N + 200);
  });
});

describe("emulated facts", () => {
  it("are deterministic and independent of each other (every role meets every os)", () => {
    expect(emulatedFacts(7)).toEqual(emulatedFacts(7));
    const seen = new Set<string>();
    for (let i = 1; i <= 200; i++) {
      const f = emulatedFacts(i);
      seen.add(`${String(f.role)}/${String(f.os)}`);
    }
    for (const role of ["web", "db", "cache", "queue", "batch"]) {
      for (const os of ["linux", "freebsd", "windows"]) expect(seen).toContain(`${role}/${os}`);
    }
  });
});
