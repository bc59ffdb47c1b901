// Reliable submission throughput: messages/s from the on-node spool into a stream
// (JetStream ack per message, files written with fsync and removed after the ack),
// against raw JetStream acked publishes of the same payloads one at a time (the same
// one-ack-per-message shape) by the same node credential, in the same run and broker.
// Not part of the tests. Run: bench/submission.sh [--messages 2000] [--runs 3] [--size 512]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { BrokerSupervisor, brokerSettings, freeLoopbackPort } from "../src/broker/index.js";
import { loadConfig } from "../src/core/config/index.js";
import { createDevSetup } from "../src/apps/setup/index.js";
import { connectAs } from "./credentials.js";
import { Spool } from "../src/services/submission/index.js";

const { values: opt } = parseArgs({
  options: {
    messages: { type: "string", default: "2000" },
    runs: { type: "string", default: "3" },
    size: { type: "string", default: "512" },
  },
});
const N = Number(opt.messages);
const RUNS = Number(opt.runs);
const SIZE = Number(opt.size);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const rate = (n: number, ms: number) => Math.round((n / ms) * 1000);

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "chorus-bench-submission-"));
  const identity = "node1.example.net";
  const setup = await createDevSetup({
    dir,
    brokerPort: await freeLoopbackPort(),
    force: true,
    serverIdentities: [identity],
  });
  const broker = new BrokerSupervisor({ settings: brokerSettings(loadConfig(setup.brokerConfig)) });
  await broker.start();
  const admin = await connectAs(setup, "broker");
  const node = await connectAs(setup, `server-${identity}`);
  const payload = Buffer.alloc(SIZE, "x");
  const results = { baseline: [] as number[], spool: [] as number[], submit: [] as number[] };
  try {
    const jsm = await jetstreamManager(admin);
    await jsm.streams.add({
      name: "SUBMISSIONS",
      subjects: [`${setup.collective}.submission.in.>`],
      duplicate_window: 120_000_000_000,
    });
    const js = jetstream(node);
    for (let run = 0; run < RUNS; run++) {
      // baseline: one awaited, acked JetStream publish per message, with a msg id
      let t = performance.now();
      for (let i = 0; i < N; i++) {
        await js.publish(`${setup.collective}.submission.in.bench.raw`, payload, {
          msgID: `raw-${run}-${i}`,
        });
      }
      results.baseline.push(rate(N, performance.now() - t));

      const spoolDir = mkdtempSync(join(tmpdir(), "chorus-bench-spool-"));
      const spool = new Spool({ dir: spoolDir, identity, collective: setup.collective, maxSpoolSize: N });
      t = performance.now();
      for (let i = 0; i < N; i++) {
        spool.submit({ subject: "bench.spool", payload, sender: "bench", reliable: true, priority: 2 });
      }
      results.submit.push(rate(N, performance.now() - t));
      t = performance.now();
      spool.start(node);
      // poll sparingly: stats() lists the spool directories
      while (spool.stats().pending[2]! > 0) await new Promise((r) => setTimeout(r, 50));
      results.spool.push(rate(N, performance.now() - t));
      await spool.stop();
      if (spool.stats().published !== N)
        throw new Error(`spool published ${spool.stats().published} of ${N}`);
      rmSync(spoolDir, { recursive: true, force: true });
    }
    const info = await jsm.streams.info("SUBMISSIONS");
    const b = median(results.baseline);
    const s = median(results.spool);
    console.log(`messages per run: ${N} x ${SIZE} bytes, runs: ${RUNS}, stream holds ${info.state.messages}`);
    console.log(`raw JetStream acked publish (sequential): ${b} msgs/s  runs ${results.baseline.join(", ")}`);
    console.log(`spool -> stream, reliable (drain):       ${s} msgs/s  runs ${results.spool.join(", ")}`);
    console.log(
      `spool submit (atomic write + fsync):     ${median(results.submit)} msgs/s  runs ${results.submit.join(", ")}`,
    );
    console.log(`spool drain / baseline: ${(s / b).toFixed(2)}`);
  } finally {
    await admin.close();
    await node.close();
    await broker.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
