import { appendFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BrokerSupervisor, brokerSettings } from "../../src/broker/index.js";
import { loadConfig } from "../../src/core/config/index.js";
import { createDevSetup, type DevSetup } from "../../src/apps/setup/index.js";
import { freePort } from "./nats.js";

export interface SecureFleet {
  setup: DevSetup;
  broker: BrokerSupervisor;
  stop(): Promise<void>;
}

/**
 * A dev trust setup in a temp dir plus a supervised, TLS + JWT-auth broker on a
 * random loopback port: the same path `chorus setup dev` + `chorus broker run` take.
 */
export async function startSecureFleet(
  opts: {
    servers?: string[];
    collective?: string;
    /** JetStream in the broker (dev setup default: on) */
    streams?: boolean;
    /** lines appended to broker.conf before the broker starts (adapters, retention...) */
    brokerConfig?: string;
    /** also the AAA service's files (`setup dev --aaa`), its HTTPS on this port */
    aaa?: { port: number };
    /** also the provisioning files (`setup dev --provisioning`) */
    provisioning?: boolean;
    /** sees the broker's log lines */
    brokerLog?: (level: string, line: string) => void;
  } = {},
): Promise<SecureFleet> {
  const dir = mkdtempSync(join(tmpdir(), "chorus-fleet-"));
  const setup = await createDevSetup({
    dir,
    brokerPort: await freePort(),
    force: true,
    ...(opts.servers && { serverIdentities: opts.servers }),
    ...(opts.collective && { collective: opts.collective }),
    ...(opts.streams !== undefined && { streams: opts.streams }),
    ...(opts.aaa && { aaa: true, aaaPort: opts.aaa.port }),
    ...(opts.provisioning && { provisioning: true }),
  });
  if (opts.brokerConfig) appendFileSync(setup.brokerConfig, `\n${opts.brokerConfig}\n`);
  const broker = new BrokerSupervisor({
    settings: brokerSettings(loadConfig(setup.brokerConfig)),
    ...(opts.brokerLog && { logger: opts.brokerLog }),
  });
  await broker.start();
  return {
    setup,
    broker,
    async stop() {
      await broker.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
