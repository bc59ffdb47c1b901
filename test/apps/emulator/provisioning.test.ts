// The emulator in provisioning mode against the real provisioner (embedded) on a secure
// broker with the PROVISIONING account: emulated nodes are enrolled exactly as real
// ones, then answer in the main collective with the credentials they were given.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { Emulator, type ProvisioningStats } from "../../../src/apps/emulator/index.js";
import type { ProvisioningDevFiles } from "../../../src/apps/setup/index.js";
import { Client } from "../../../src/client/index.js";
import { decodeTokenUnverified, publicHexFromSeed } from "../../../src/core/security/index.js";
import { choriaProvisionDDL } from "../../../src/server/index.js";
import { ProvisionerService, loadProvisionerConfig } from "../../../src/services/provisioner/index.js";
import { startSecureFleet, type SecureFleet } from "../../helpers/fleet.js";

const quiet = pino({ level: process.env.CHORUS_TEST_LOG ?? "silent" });
const N = 20;

let fleet: SecureFleet;
let files: ProvisioningDevFiles;
let provisioner: ProvisionerService;
let configs = 0;

/** The provisioner config setup wrote, without a helper process, with test timings. */
function provisionerConfig(): string {
  const base = parse(readFileSync(files.serviceConfig, "utf8")) as Record<string, unknown>;
  const cfg: Record<string, unknown> = {
    ...base,
    loglevel: "error",
    interval: "2s",
    discovery_timeout: "500ms",
    rpc_timeout: "5s",
    queue_ack_wait: "10s",
    workers: 4,
    leader_election: false,
    default_configuration: { "plugin.security.choria.ca": fleet.setup.caFile },
  };
  delete cfg.helper;
  delete cfg.logfile;
  const file = join(fleet.setup.dir, `provisioner-${++configs}.yaml`);
  writeFileSync(file, stringify(cfg));
  return file;
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function enrolled(em: Emulator, n: number): Promise<ProvisioningStats> {
  let last: ProvisioningStats | undefined;
  await until(
    `${n} nodes in normal mode`,
    async () => ((last = await em.provisioningStats()), last?.normal === n),
  ).catch((err: Error) => {
    throw new Error(`${err.message}; last figures ${JSON.stringify(last)}`);
  });
  return last as ProvisioningStats;
}

beforeAll(async () => {
  fleet = await startSecureFleet({ servers: [], provisioning: true });
  files = fleet.setup.provisioning as ProvisioningDevFiles;
  provisioner = new ProvisionerService(loadProvisionerConfig(provisionerConfig()), {
    logger: quiet,
    rpcBackoffMs: 100,
  });
  await provisioner.start();
}, 60_000);
afterAll(async () => {
  await provisioner?.stop();
  await fleet?.stop();
});

describe("emulator in provisioning mode, in-process", () => {
  let em: Emulator;
  let client: Client;
  const identity = (i: number) => `prov-${String(i).padStart(3, "0")}.emulated.test`;
  const ids = Array.from({ length: N }, (_, k) => identity(k + 1));

  beforeAll(async () => {
    em = Emulator.fromConfigFile(fleet.setup.emulatorConfig, {
      nodes: N,
      workers: 0,
      identity,
      logger: quiet,
      provisioning: { tokenFile: files.tokenFile, tuning: { minDelayMs: 50, splayS: 0 } },
    });
    await em.start();
    client = await Client.fromConfigFile(fleet.setup.clientConfig, { logger: quiet });
    client.registerDDL(choriaProvisionDDL());
  }, 60_000);
  afterAll(async () => {
    await client?.close();
    await em?.stop();
  });

  it(`enrolls all ${N} nodes, each configured exactly once`, async () => {
    const s = await enrolled(em, N);
    expect(s).toMatchObject({ provisioning: 0, normal: N, failed: 0, shutdown: 0, configured: N });
    expect(s.reconfigured).toEqual([]);
    expect(s.calls.configure).toBe(N);
    expect(s.calls.restart).toBe(N);
    // Choria's sequence: the token twice (before and after the helper), the key proof once
    expect(s.calls.jwt).toBe(2 * N);
    expect(s.calls.gen25519).toBe(N);
    // every node announced itself; the provisioner heard them
    expect(await provisioner.metrics.value("choria_provisioner_event_discovered")).toBeGreaterThanOrEqual(N);
    expect(await provisioner.metrics.value("choria_provisioner_provisioned")).toBe(N);
  }, 60_000);

  it("each node answers rpcutil ping in the main collective, signed with the key it made", async () => {
    const r = await client.request(
      "rpcutil",
      "ping",
      {},
      {
        nodes: ids,
        timeoutMs: 5_000,
        verifyReplySignatures: true,
      },
    );
    expect(r.replies.map((x) => x.sender).sort()).toEqual(ids);
    expect(r.replies.every((x) => x.statuscode === 0)).toBe(true);
    expect(r.stats.dropped.signature).toBe(0);
    // the token the replies carried is the one configure wrote, for the seed gen25519 made
    const chainIssuer = readFileSync(files.chainIssuerTokenFile, "utf8").trim();
    for (const id of ids) {
      const store = em.nodeFiles(id);
      const cfg = store?.read(`/var/lib/chorus-emulator/${id}/server.conf`) ?? "";
      expect(cfg).toMatch(/^plugin\.choria\.server\.provision = false$/m);
      const token = store?.read(`/var/lib/chorus-emulator/${id}/server.jwt`) ?? "";
      const seed = store?.read(`/var/lib/chorus-emulator/${id}/server.seed`) ?? "";
      const claims = decodeTokenUnverified(token);
      expect(claims.identity).toBe(id);
      expect(claims.public_key).toBe(publicHexFromSeed(seed));
      expect(claims.iss).toBe(
        `C-${decodeTokenUnverified(chainIssuer).jti as string}.${files.chainIssuerPublic}`,
      );
      expect(store?.read(`/var/lib/chorus-emulator/${id}/server.jwt.nats`)).toBeTruthy();
    }
  });

  it("reprovision sends a node back to provisioning mode, as a real node", async () => {
    const target = ids[0] as string;
    const r = await client.request(
      "choria_provision",
      "reprovision",
      { token: files.token },
      { nodes: [target], timeoutMs: 5_000 },
    );
    expect(r.replies.map((x) => [x.sender, x.statuscode])).toEqual([[target, 0]]);
    await until("the node back in provisioning mode", async () => {
      const s = await em.provisioningStats();
      return s?.provisioning === 1;
    });
    const cfg = em.nodeFiles(target)?.read(`/var/lib/chorus-emulator/${target}/server.conf`) ?? "";
    expect(cfg).toMatch(/^plugin\.choria\.server\.provision = true$/m);
    // a wrong token is refused by the same agent code a real node runs
    const bad = await client.request(
      "choria_provision",
      "reprovision",
      { token: "wrong" },
      { nodes: [ids[1] as string], timeoutMs: 5_000 },
    );
    expect(bad.replies[0]?.statusmsg).toBe("Incorrect provision token supplied");
  });
});

// Worker shards run the built JS; `npm test` builds first, a bare vitest run may not have.
const builtWorker = fileURLToPath(new URL("../../../dist/apps/emulator/worker.js", import.meta.url));

describe.skipIf(!existsSync(builtWorker))("emulator in provisioning mode, worker threads", () => {
  let em: Emulator;

  beforeAll(async () => {
    em = Emulator.fromConfigFile(fleet.setup.emulatorConfig, {
      nodes: N,
      workers: 2,
      logger: quiet,
      provisioning: { tokenFile: files.tokenFile, tuning: { minDelayMs: 50, splayS: 0 } },
    });
    await em.start();
  }, 60_000);
  afterAll(async () => {
    await em?.stop();
  });

  it(`enrolls all ${N} nodes across the workers, each once, and they answer ping`, async () => {
    const s = await enrolled(em, N);
    expect(s).toMatchObject({ normal: N, failed: 0, configured: N, reconfigured: [] });
    expect(s.calls.configure).toBe(N);
    const shards = await em.shardStats();
    expect(shards.map((x) => x.provisioning?.normal)).toEqual([N / 2, N / 2]);
    const client = await Client.fromConfigFile(fleet.setup.clientConfig, { logger: quiet });
    try {
      const ping = await client.ping({ timeoutMs: 3_000, verifyReplySignatures: true });
      // the in-process nodes above have stopped; these are the workers' nodes
      expect(new Set(ping.replies.map((r) => r.sender)).size).toBe(N);
      expect(ping.dropped.signature).toBe(0);
    } finally {
      await client.close();
    }
  }, 60_000);
});
