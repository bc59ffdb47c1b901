// Cost of autonomous agents at fleet scale: N emulated nodes (default 1 000) with 5
// watchers each, against an idle emulator (the same nodes, no machines) in the same run,
// on the same secured broker. Each configuration runs in its own child process (so the
// heap of one does not count against the other) and reports:
//   - CPU: process.cpuUsage() (user + system) over a measuring window, after start-up
//     and the first checks have settled
//   - memory: RSS and V8 heap used after a full GC, once settled
// The 5 watchers per node: one Scout check (the emulator's built-in: a nagios
// `heartbeat` watcher and a `fault` expression watcher, both every --interval), and a
// machine of 3 watchers that cycles idle -> busy -> idle: an expression watcher (every
// --interval), a 20 s timer, and a file watcher (stat every --interval). Every transition
// and watcher state is published as a CloudEvent, as a server's are.
// Not part of the tests.
// Run: bench/machines.sh [--nodes 1000] [--window 30] [--interval 10s] [--runs 2]
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { pino } from "pino";
import { Emulator } from "../src/apps/emulator/index.js";
import { startSecureFleet } from "../test/helpers/fleet.js";

const { values: opt } = parseArgs({
  options: {
    nodes: { type: "string", default: "1000" },
    window: { type: "string", default: "30" },
    interval: { type: "string", default: "10s" },
    runs: { type: "string", default: "2" },
    // internal: a child measuring one configuration
    child: { type: "string" },
    config: { type: "string" },
    dir: { type: "string" },
  },
});
const NODES = Number(opt.nodes);
const WINDOW_S = Number(opt.window);
const WATCHERS_PER_NODE = 5;

interface Figures {
  mode: "idle" | "machines";
  nodes: number;
  watchers: number;
  transitions: number;
  events: number;
  /** CPU seconds (user + system) over the window */
  cpuS: number;
  windowS: number;
  rssMiB: number;
  heapMiB: number;
  startMs: number;
}

const MACHINE = (interval: string) => `name: bench
version: 1.0.0
initial_state: idle
transitions:
  - { name: work, from: [idle], destination: busy }
  - { name: rest, from: [busy], destination: idle }
watchers:
  - name: load
    type: expression
    state_match: [idle]
    interval: ${interval}
    success_transition: work
    properties:
      success_when: "facts.cores >= 1"
  - name: cooldown
    type: timer
    state_match: [busy]
    fail_transition: rest
    properties:
      timer: 20s
  - name: marker
    type: file
    interval: ${interval}
    properties:
      path: marker
      gather_initial_state: true
`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const gc = () => (globalThis as { gc?: () => void }).gc?.();
const MiB = 1024 * 1024;

async function child(mode: "idle" | "machines", config: string, dir: string): Promise<void> {
  const t0 = Date.now();
  const em = Emulator.fromConfigFile(config, {
    nodes: NODES,
    workers: 0,
    logger: pino({ level: "error" }, pino.destination(2)),
    jobs: false,
    ...(mode === "machines" && {
      machines: { directory: dir, scoutChecks: 1, checkInterval: opt.interval },
    }),
  });
  await em.start();
  const startMs = Date.now() - t0;
  // first checks, first transitions, first events: then measure the steady state
  await sleep(5_000);
  gc();
  await sleep(500);
  const before = process.cpuUsage();
  const wall = Date.now();
  await sleep(WINDOW_S * 1000);
  const used = process.cpuUsage(before);
  const windowS = (Date.now() - wall) / 1000;
  gc();
  await sleep(200);
  const mem = process.memoryUsage();
  const ms = await em.machinesStats();
  const out: Figures = {
    mode,
    nodes: em.size,
    watchers: ms?.watchers ?? 0,
    transitions: ms?.transitions ?? 0,
    events: ms?.events.sent ?? 0,
    cpuS: (used.user + used.system) / 1e6,
    windowS,
    rssMiB: mem.rss / MiB,
    heapMiB: mem.heapUsed / MiB,
    startMs,
  };
  await em.stop();
  process.stdout.write(`${JSON.stringify(out)}\n`);
  process.exit(0);
}

function runChild(mode: "idle" | "machines", config: string, dir: string): Promise<Figures> {
  const script = fileURLToPath(import.meta.url);
  return new Promise((resolve, reject) => {
    const p = spawn(
      process.execPath,
      [
        "--expose-gc",
        script,
        "--child",
        mode,
        "--config",
        config,
        "--dir",
        dir,
        "--nodes",
        String(NODES),
        "--window",
        String(WINDOW_S),
        "--interval",
        opt.interval as string,
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    let out = "";
    p.stdout.on("data", (d: Buffer) => (out += d.toString()));
    p.once("exit", (code) => {
      const line = out.trim().split("\n").pop() ?? "";
      if (code !== 0 || !line.startsWith("{")) reject(new Error(`${mode} child exited ${code}: ${out}`));
      else resolve(JSON.parse(line) as Figures);
    });
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const f1 = (x: number) => x.toFixed(1);
const f2 = (x: number) => x.toFixed(2);

async function main(): Promise<void> {
  if (opt.child === "idle" || opt.child === "machines") {
    return child(opt.child, opt.config as string, opt.dir as string);
  }
  const runs = Number(opt.runs);
  const fleet = await startSecureFleet();
  const dir = mkdtempSync(join(tmpdir(), "chorus-bench-machines-"));
  mkdirSync(join(dir, "bench"));
  writeFileSync(join(dir, "bench", "machine.yaml"), MACHINE(opt.interval as string));
  writeFileSync(join(dir, "bench", "marker"), "x");
  const idle: Figures[] = [];
  const busy: Figures[] = [];
  try {
    for (let r = 0; r < runs; r++) {
      // alternate so drift (thermal, the broker's own state) spreads over both
      idle.push(await runChild("idle", fleet.setup.emulatorConfig, dir));
      busy.push(await runChild("machines", fleet.setup.emulatorConfig, dir));
      console.error(`run ${r + 1}/${runs}: idle ${JSON.stringify(idle.at(-1))}`);
      console.error(`run ${r + 1}/${runs}: machines ${JSON.stringify(busy.at(-1))}`);
    }
  } finally {
    await fleet.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  const m = (xs: Figures[], k: keyof Figures) => median(xs.map((x) => x[k] as number));
  const watchers = m(busy, "watchers");
  const cpuIdle = m(idle, "cpuS") / m(idle, "windowS");
  const cpuBusy = m(busy, "cpuS") / m(busy, "windowS");
  const rssIdle = m(idle, "rssMiB");
  const rssBusy = m(busy, "rssMiB");
  const heapIdle = m(idle, "heapMiB");
  const heapBusy = m(busy, "heapMiB");
  const perW = (x: number) => x / watchers;
  console.log(
    `machines bench: ${NODES} nodes, ${WATCHERS_PER_NODE} watchers each (${watchers} watchers), interval ${opt.interval}, window ${WINDOW_S}s, runs ${runs} (medians)`,
  );
  console.log(
    `  CPU:  idle ${f1(cpuIdle * 100)}% of a core, with machines ${f1(cpuBusy * 100)}%; ratio ${f2(cpuBusy / Math.max(cpuIdle, 1e-9))}x; ` +
      `per watcher ${f2(perW(cpuBusy - cpuIdle) * 1e6)} µs CPU per second`,
  );
  console.log(
    `  RSS:  idle ${f1(rssIdle)} MiB, with machines ${f1(rssBusy)} MiB; ratio ${f2(rssBusy / rssIdle)}x; per watcher ${f2(perW(rssBusy - rssIdle) * 1024)} KiB`,
  );
  console.log(
    `  heap: idle ${f1(heapIdle)} MiB, with machines ${f1(heapBusy)} MiB; ratio ${f2(heapBusy / heapIdle)}x; per watcher ${f2(perW(heapBusy - heapIdle) * 1024)} KiB`,
  );
  console.log(
    `  activity in the window: ${m(busy, "transitions")} transitions and ${m(busy, "events")} events published since start; start-up ${Math.round(m(idle, "startMs"))} ms idle, ${Math.round(m(busy, "startMs"))} ms with machines`,
  );
}

void main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
