// A 10 000-node asynchronous request: how soon after the last reply reaches the broker
// is the request's status complete in the receiver's store, as `chorus job status`
// (the HTTP API) reports it? Goal: within 1 s. Same run baseline: the same request to
// the same nodes as an ordinary synchronous request (the client collects the replies
// itself), so the ratio says what going through the stream and the database costs.
// Not part of the tests. Needs `npm run build` (the receivers run as `chorus receiver
// run` processes). Run: bench/async-rpc.sh [--nodes 10000] [--runs 3] [--receivers 2]
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { jetstreamManager } from "@nats-io/jetstream";
import { pino } from "pino";
import { Emulator } from "../src/apps/emulator/index.js";
import { createDevSetup } from "../src/apps/setup/index.js";
import { BrokerSupervisor, brokerSettings, freeLoopbackPort } from "../src/broker/index.js";
import { Client, ReceiverApi } from "../src/client/index.js";
import { clientSettings, loadConfig } from "../src/core/config/index.js";
import { closeNats, connectNats } from "../src/core/connector/index.js";
import { replyPrefix } from "../src/core/protocol/index.js";
import { securityFromSettings } from "../src/core/security/index.js";

const { values: opt } = parseArgs({
  options: {
    nodes: { type: "string", default: "10000" },
    runs: { type: "string", default: "3" },
    receivers: { type: "string", default: "2" },
  },
});
const NODES = Number(opt.nodes);
const RUNS = Number(opt.runs);
const RECEIVERS = Number(opt.receivers);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const fmt = (x: number) => Math.round(x).toLocaleString("en");
const quiet = pino({ level: process.env.BENCH_LOG ?? "error" }, pino.destination(2));

function chorusBin(): string {
  // bench/ts.sh runs this from a scratch build dir with the repo as the working dir;
  // the receivers run from the repo's dist
  return join(process.cwd(), "bin", "chorus.js");
}

async function waitHttp(url: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) return;
    } catch {
      // not up yet
    }
    if (Date.now() > end) throw new Error(`receiver API ${url} did not come up`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "chorus-bench-async-"));
  const setup = await createDevSetup({
    dir,
    brokerPort: await freeLoopbackPort(),
    force: true,
    serverIdentities: [],
  });
  const broker = new BrokerSupervisor({
    settings: brokerSettings(loadConfig(setup.brokerConfig)),
    logger: (level, line) => {
      if (level === "error" || level === "fatal") process.stderr.write(`nats-server: ${line}\n`);
    },
  });
  const receivers: ChildProcess[] = [];
  let emulator: Emulator | undefined;
  let client: Client | undefined;
  try {
    await broker.start();
    const apiPort = await freeLoopbackPort();
    for (let i = 0; i < RECEIVERS; i++) {
      const cfg = join(dir, `receiver-${i}.yaml`);
      writeFileSync(
        cfg,
        [
          "choria_config: receiver.conf",
          "store: sqlite:bench-receiver.db",
          "mode: stream",
          "loglevel: error",
          // one API is enough: every receiver writes the same store
          `http_listen: "${i === 0 ? `127.0.0.1:${apiPort}` : ""}"`,
          "",
        ].join("\n"),
      );
      const p = spawn(process.execPath, [chorusBin(), "receiver", "run", "--config", cfg], {
        stdio: ["ignore", "ignore", "inherit"],
      });
      receivers.push(p);
    }
    const apiUrl = `http://127.0.0.1:${apiPort}`;
    await waitHttp(apiUrl);
    const api = new ReceiverApi({ url: apiUrl });

    process.stderr.write(`starting ${NODES} emulated nodes...\n`);
    emulator = Emulator.fromConfigFile(setup.emulatorConfig, { nodes: NODES, logger: quiet });
    await emulator.start();
    client = await Client.fromConfigFile(setup.clientConfig, { logger: quiet });
    const nodes = await client.discover({ windowed: true });
    if (nodes.length !== NODES) throw new Error(`discovered ${nodes.length} of ${NODES} nodes`);

    // the stream's last message time is when the last reply reached the broker
    const s = clientSettings(loadConfig(setup.receiver.clientConfig));
    const sec = securityFromSettings(s);
    const nc = await connectNats({
      servers: s.middlewareHosts,
      name: "bench-async-observer",
      inboxPrefix: replyPrefix(s.mainCollective, sec.callerId),
      seedHex: sec.seedHex,
      ...(sec.natsJwt && { natsJwt: sec.natsJwt }),
      ...(sec.caFile && { caFile: sec.caFile }),
    });
    const jsm = await jetstreamManager(nc);

    const syncMs: number[] = [];
    const asyncTotalMs: number[] = [];
    const afterLastMs: number[] = [];
    for (let run = 1; run <= RUNS; run++) {
      const t0 = performance.now();
      const res = await client.request("rpcutil", "ping", {}, { nodes, timeoutMs: 60_000 });
      const sync = performance.now() - t0;
      if (res.stats.responses !== NODES) throw new Error(`sync: ${res.stats.responses} replies`);
      syncMs.push(sync);

      const a0 = Date.now();
      const sent = await client.requestAsync("rpcutil", "ping", {}, { nodes });
      let done = 0;
      for (;;) {
        const st = await api.status(sent.requestId).catch(() => undefined);
        if (st && st.replied >= NODES) {
          done = Date.now();
          break;
        }
        if (Date.now() - a0 > 120_000) throw new Error(`async: only ${st?.replied ?? 0} replies stored`);
        await new Promise((r) => setTimeout(r, 20));
      }
      const info = await jsm.streams.info("CHORUS_REPLIES");
      const lastTs = Date.parse(info.state.last_ts);
      asyncTotalMs.push(done - a0);
      afterLastMs.push(done - lastTs);
      process.stderr.write(
        `run ${run}: sync ${fmt(sync)} ms; async complete in the store after ${fmt(done - a0)} ms, ` +
          `${fmt(done - lastTs)} ms after the last reply reached the broker\n`,
      );
    }
    await closeNats(nc);
    const syncM = median(syncMs);
    const asyncM = median(asyncTotalMs);
    console.log(
      [
        `async request to ${fmt(NODES)} emulated nodes, ${RECEIVERS} receiver processes, SQLite, ${RUNS} runs (medians)`,
        `  baseline: synchronous request, client collects the replies  ${fmt(syncM)} ms`,
        `  async: request sent -> status complete via the HTTP API       ${fmt(asyncM)} ms  (ratio ${(syncM / asyncM).toFixed(2)})`,
        `  last reply at the broker -> status complete                   ${fmt(median(afterLastMs))} ms  (goal <= 1 000 ms)`,
      ].join("\n"),
    );
  } finally {
    await client?.close();
    await emulator?.stop();
    for (const p of receivers) p.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 500));
    await broker.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
