// A ping of 10 000 emulated nodes spread over a 3-broker cluster (a third of the nodes
// on each broker, the client on the first: two thirds of the replies cross a TLS route)
// against the same fleet on one broker, in the same run, alternating. Figure: time from
// publishing the ping to the last of the N replies (median of the runs) and the ratio.
// Not part of the tests. Run: bench/cluster-ping.sh [--nodes 10000] [--runs 5]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { pino } from "pino";
import { Emulator } from "../src/apps/emulator/index.js";
import { createDevSetup, type DevSetup } from "../src/apps/setup/index.js";
import { BrokerSupervisor, brokerSettings, freeLoopbackPort } from "../src/broker/index.js";
import { Client } from "../src/client/index.js";
import { loadConfig } from "../src/core/config/index.js";

const { values: opt } = parseArgs({
  options: {
    nodes: { type: "string", default: "10000" },
    runs: { type: "string", default: "5" },
  },
});
const NODES = Number(opt.nodes);
const RUNS = Number(opt.runs);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const quiet = pino({ level: process.env.BENCH_LOG ?? "error" }, pino.destination(2));

interface Fleet {
  name: string;
  setup: DevSetup;
  brokers: BrokerSupervisor[];
  emulators: Emulator[];
  client?: Client;
}

async function startFleet(name: string, brokers: number): Promise<Fleet> {
  const dir = mkdtempSync(join(tmpdir(), `chorus-bench-cluster-${name}-`));
  const ports = await Promise.all(Array.from({ length: brokers * 2 }, () => freeLoopbackPort()));
  const setup = await createDevSetup({
    dir,
    brokers,
    brokerPorts: ports.slice(0, brokers),
    peerPorts: ports.slice(brokers),
    force: true,
    serverIdentities: [],
    streams: false,
  });
  const fleet: Fleet = { name, setup, brokers: [], emulators: [] };
  for (const c of setup.brokerConfigs) {
    fleet.brokers.push(
      new BrokerSupervisor({
        settings: brokerSettings(loadConfig(c)),
        logger: (level, line) => {
          // routes to peers that are not up yet are refused at start: expected, not news
          if ((level === "error" || level === "fatal") && !line.includes("connect to route"))
            process.stderr.write(`nats-server: ${line}\n`);
        },
      }),
    );
  }
  await Promise.all(fleet.brokers.map((b) => b.start()));
  // the same three emulators in both fleets; in the cluster each starts on its own broker
  const per = Math.ceil(NODES / 3);
  for (let i = 0; i < 3; i++) {
    const e = Emulator.fromConfigFile(setup.emulatorConfig, {
      nodes: Math.min(per, NODES - i * per),
      firstIndex: 1 + i * per,
      servers: [setup.brokerUrls[i % brokers] as string],
      logger: quiet,
      jobs: false,
    });
    await e.start();
    fleet.emulators.push(e);
  }
  fleet.client = await Client.fromConfigFile(setup.clientConfig, {
    servers: [setup.brokerUrl],
    logger: quiet,
  });
  return fleet;
}

async function stopFleet(f: Fleet): Promise<void> {
  await f.client?.close();
  await Promise.all(f.emulators.map((e) => e.stop()));
  await Promise.all(f.brokers.map((b) => b.stop()));
  rmSync(f.setup.dir, { recursive: true, force: true });
}

/** ms from publishing the ping to the last reply; throws unless every node answered. */
async function pingAll(f: Fleet): Promise<number> {
  const r = await (f.client as Client).ping({ windowed: true, windowMs: 500, timeoutMs: 20_000 });
  if (r.replies.length !== NODES) throw new Error(`${f.name}: ${r.replies.length} of ${NODES} replies`);
  return Math.max(...r.replies.map((x) => x.ms));
}

async function main(): Promise<void> {
  const fleets: Fleet[] = [];
  try {
    process.stderr.write(`starting ${NODES} emulated nodes on 3 brokers and ${NODES} on 1...\n`);
    fleets.push(await startFleet("cluster", 3), await startFleet("single", 1));
    const [cluster, single] = fleets as [Fleet, Fleet];
    await pingAll(cluster); // warm-up: connections, subscriptions, JIT
    await pingAll(single);
    const ms: Record<string, number[]> = { cluster: [], single: [] };
    for (let run = 0; run < RUNS; run++) {
      for (const f of run % 2 === 0 ? [cluster, single] : [single, cluster]) {
        const t = await pingAll(f);
        ms[f.name]?.push(t);
        process.stderr.write(`run ${run + 1} ${f.name}: ${t.toFixed(0)} ms\n`);
      }
    }
    const c = median(ms.cluster as number[]);
    const s = median(ms.single as number[]);
    const lines = [
      `ping of ${NODES} emulated nodes, time to the last reply, median of ${RUNS} runs`,
      `  3-broker cluster (nodes spread, client on broker 1): ${c.toFixed(0)} ms`,
      `  one broker:                                          ${s.toFixed(0)} ms`,
      `  ratio cluster / single: ${(c / s).toFixed(2)}`,
    ];
    process.stdout.write(`${lines.join("\n")}\n`);
  } finally {
    for (const f of fleets) await stopFleet(f);
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
