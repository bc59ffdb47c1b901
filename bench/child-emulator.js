import { pino } from "pino";
import { Emulator } from "../dist/apps/emulator/index.js";
import { now, procMem, serveParent, sleep } from "./lib.js";

let em;
serveParent({
  async start(m) {
    const t0 = now();
    em = Emulator.fromConfigFile(m.config, {
      nodes: m.nodes,
      logger: pino({ level: "warn" }, pino.destination(2)),
      ...(m.workers !== undefined && { workers: m.workers }),
    });
    await em.start();
    return { startMs: now() - t0, workers: em.workers, size: em.size };
  },
  async mem() {
    // settle, collect garbage in every thread that can, then read the process RSS
    await em?.collectGarbage();
    await sleep(500);
    return procMem();
  },
  async stats() {
    return { shards: await em.shardStats() };
  },
  async stop() {
    await em?.stop();
  },
});
