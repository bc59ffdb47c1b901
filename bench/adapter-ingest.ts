// Adapter ingest rate: N nodes' registrations (one each, as a fleet publishes them)
// through the broker's jetstream adapter into a stream, against raw JetStream acked
// publishes of the same records with the same concurrency, in the same run and broker.
// Not part of the tests. Run:
//   bench/adapter-ingest.sh [--nodes 10000] [--runs 3] [--workers 10] [--ingest-workers 0]
// --workers is stream.workers (publishes in flight), --ingest-workers is ingest.workers
// (0/1 = decode on the event loop, 2+ = that many decode threads).
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { BrokerSupervisor, brokerSettings, freeLoopbackPort } from "../src/broker/index.js";
import { loadConfig } from "../src/core/config/index.js";
import { encodeRegistrationMessage, inventoryContentPayload } from "../src/services/registration/index.js";
import { loadSeedFile, sign } from "../src/core/security/index.js";
import { createDevSetup } from "../src/apps/setup/index.js";
import { connectAs } from "./credentials.js";

const { values: opt } = parseArgs({
  options: {
    nodes: { type: "string", default: "10000" },
    runs: { type: "string", default: "3" },
    workers: { type: "string", default: "10" },
    "ingest-workers": { type: "string", default: "0" },
  },
});
const N = Number(opt.nodes);
const RUNS = Number(opt.runs);
const WORKERS = Number(opt.workers);
const INGEST_WORKERS = Number(opt["ingest-workers"]);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "chorus-bench-adapter-"));
  const setup = await createDevSetup({ dir, brokerPort: await freeLoopbackPort(), force: true });
  appendFileSync(
    setup.brokerConfig,
    [
      "",
      "plugin.choria.adapters = reg",
      "plugin.choria.adapter.reg.type = jetstream",
      `plugin.choria.adapter.reg.ingest.topic = ${setup.collective}.broadcast.agent.registration`,
      "plugin.choria.adapter.reg.stream.topic = choria.registration.%s",
      `plugin.choria.adapter.reg.stream.workers = ${WORKERS}`,
      `plugin.choria.adapter.reg.ingest.workers = ${INGEST_WORKERS}`,
      `plugin.choria.adapter.reg.queue.len = ${Math.max(10_000, N)}`,
      "",
    ].join("\n"),
  );
  const broker = new BrokerSupervisor({ settings: brokerSettings(loadConfig(setup.brokerConfig)) });
  await broker.start();
  const admin = await connectAs(setup, "broker");
  const nodesNc = await connectAs(setup, "emulator");
  try {
    const jsm = await jetstreamManager(admin);
    await jsm.streams.add({
      name: "CHORIA_REGISTRATION",
      subjects: ["choria.registration.>"],
      max_msgs_per_subject: 5,
    });
    await jsm.streams.add({ name: "BASELINE", subjects: ["baseline.>"], max_msgs_per_subject: 5 });

    // One registration per node, prepared up front so only the pipeline is timed.
    const token = readFileSync(join(dir, "credentials", "emulator.jwt"), "utf8").trim();
    const seed = loadSeedFile(join(dir, "credentials", "emulator.seed")).seedHex;
    const messages = Array.from({ length: N }, (_, i) => {
      const identity = `node${i}.example.net`;
      const payload = inventoryContentPayload({
        agents: ["rpcutil", "discovery", "choria_util"],
        classes: ["base", "role::web"],
        facts: { identity, os: "linux", cpus: 4, location: `dc${i % 5}`, role: "web" },
        status: { identity, uptime: 1000 },
        collectives: [setup.collective],
        build_info: { version: "0.1.0" },
        machines: [],
      });
      return {
        identity,
        payload,
        bytes: encodeRegistrationMessage({
          payload,
          identity,
          collective: setup.collective,
          credential: { token, sign: (d) => sign(seed, d) },
        }),
      };
    });
    // the baseline stores records the size of what the adapter stores
    const records = messages.map((m) =>
      Buffer.from(
        JSON.stringify({
          protocol: "choria:adapters:jetstream:output:1",
          data: m.payload.toString(),
          sender: m.identity,
          time: 0,
          requestid: "x".repeat(27),
        }),
      ),
    );
    const adapter = broker.adapters?.adapters[0];
    if (!adapter) throw new Error("adapter did not start");
    const js = jetstream(admin);
    const base: number[] = [];
    const adapt: number[] = [];
    let drops = 0;
    // run 0 warms up the JIT, the decoders and the stream files and is not counted
    for (let run = 0; run <= RUNS; run++) {
      // raw: WORKERS publishers, each awaiting its ack, as the adapter's workers do
      let next = 0;
      let t0 = performance.now();
      await Promise.all(
        Array.from({ length: WORKERS }, async () => {
          for (let i = next++; i < N; i = next++)
            await js.publish(`baseline.${messages[i]!.identity}`, records[i]!);
        }),
      );
      base.push(N / ((performance.now() - t0) / 1000));

      const before = adapter.stats;
      t0 = performance.now();
      for (const m of messages) nodesNc.publish(`${setup.collective}.broadcast.agent.registration`, m.bytes);
      await nodesNc.flush();
      while (adapter.stats.published - before.published + (adapter.stats.dropped - before.dropped) < N) {
        await new Promise((r) => setTimeout(r, 2));
      }
      adapt.push(N / ((performance.now() - t0) / 1000));
      drops += adapter.stats.dropped - before.dropped;
      if (run === 0) {
        base.pop();
        adapt.pop();
        console.log("warm-up run done");
        continue;
      }
      console.log(
        `run ${run}: raw ${Math.round(base.at(-1)!)} msg/s, adapter ${Math.round(adapt.at(-1)!)} msg/s`,
      );
    }
    const info = await jsm.streams.info("CHORIA_REGISTRATION");
    console.log(
      JSON.stringify(
        {
          nodes: N,
          runs: RUNS,
          workers: WORKERS,
          ingest_workers: INGEST_WORKERS,
          ingest_threads: adapter.ingestPool?.size ?? 0,
          registration_bytes: messages[0]!.bytes.length,
          stored_record_bytes: records[0]!.length,
          raw_jetstream_acked_msgs_per_s: Math.round(median(base)),
          adapter_ingest_msgs_per_s: Math.round(median(adapt)),
          ratio: Number((median(adapt) / median(base)).toFixed(2)),
          adapter_drops: drops,
          adapter_bad: adapter.stats.bad,
          ingest_worker_failures: adapter.stats.ingestWorkerFailures,
          stream_messages: info.state.messages,
        },
        null,
        2,
      ),
    );
  } finally {
    await nodesNc.close();
    await admin.close();
    await broker.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
