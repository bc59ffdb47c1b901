// `chorus setup dev --x509-port`: one JWT broker with its x509 edge, v2 and v1 emulated
// nodes, and the clients setup writes: a v1 client reaches the v1 nodes through the edge,
// the mixed client reaches both kinds through the main port.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Emulator } from "../../../src/apps/emulator/index.js";
import { createDevSetup, type DevSetup } from "../../../src/apps/setup/index.js";
import { BrokerSupervisor, brokerSettings } from "../../../src/broker/index.js";
import { Client } from "../../../src/client/index.js";
import { loadConfig } from "../../../src/core/config/index.js";
import { chorus } from "../../helpers/cli.js";
import { freePort } from "../../helpers/nats.js";

const quiet = pino({ level: "silent" });
const dir = mkdtempSync(join(tmpdir(), "chorus-mixed-"));
let setup: DevSetup;
let broker: BrokerSupervisor;
const emulators: Emulator[] = [];

beforeAll(async () => {
  setup = await createDevSetup({
    dir: join(dir, "dev"),
    brokerPort: await freePort(),
    x509Port: await freePort(),
    x509User: "alice",
    streams: false,
  });
  broker = new BrokerSupervisor({ settings: brokerSettings(loadConfig(setup.brokerConfig)) });
  await broker.start();
  const m = setup.mixed!;
  const v2 = Emulator.fromConfigFile(setup.emulatorConfig, { nodes: 8, logger: quiet, jobs: false });
  const v1 = Emulator.fromConfigFile(m.x509EmulatorConfig, {
    nodes: 6,
    firstIndex: 101,
    logger: quiet,
    jobs: false,
  });
  emulators.push(v2, v1);
  await v2.start();
  await v1.start();
}, 60_000);

afterAll(async () => {
  for (const e of emulators) await e.stop();
  await broker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const ping = async (config: string) => {
  const c = await Client.fromConfigFile(config, { logger: quiet });
  try {
    return (await c.ping({ windowed: true, windowMs: 500, timeoutMs: 5000 })).replies.map((r) => r.sender);
  } finally {
    await c.close();
  }
};

describe("setup dev --x509-port: a mixed fleet on one broker", () => {
  it("the broker runs its x509 edge on the port setup chose", () => {
    expect(broker.x509?.clientUrl).toBe(setup.mixed!.x509Url);
    expect(broker.x509?.up).toBe(true);
  });

  it("a v1 client on the edge reaches the 6 v1 nodes; the v2 client the 8 v2 nodes", async () => {
    expect(await ping(setup.mixed!.x509ClientConfig)).toHaveLength(6);
    expect(await ping(setup.clientConfig)).toHaveLength(8);
  });

  it("the mixed client reaches all 14 through the main port", async () => {
    const senders = await ping(setup.mixed!.mixedClientConfig);
    expect(new Set(senders).size).toBe(14);
  });

  it("the CLI writes the same files and says how to use them; --security x509 refuses it", () => {
    const d = join(dir, "cli");
    const r = chorus(["setup", "dev", "--dir", d, "--x509-port", "4333"], {}, 60_000);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain("x509 edge: tls://127.0.0.1:4333");
    for (const f of [
      "x509-client.conf",
      "x509-emulator.conf",
      "mixed-client.conf",
      "credentials/x509-edge.creds",
    ])
      expect(existsSync(join(d, f)), f).toBe(true);
    const refused = chorus([
      "setup",
      "dev",
      "--security",
      "x509",
      "--dir",
      join(dir, "v1"),
      "--x509-port",
      "4333",
    ]);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/does not take --x509-port/);
  });
});
