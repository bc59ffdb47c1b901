// Worker-thread entry for a sharded emulator: one shard of the fleet with its own
// connections, nodes and RequestDecoder. Runs only from the built dist/ (plain JS).
import { parentPort, workerData } from "node:worker_threads";
import { pino } from "pino";
import {
  ChoriaSecurity,
  FileSecurity,
  verifyStats,
  type ChoriaSecurityOptions,
} from "../../core/security/index.js";
import { AgentRegistry, RequestDecoder, registerBuiltinAgents } from "../../server/index.js";
import { emulatedFacts, emulatedIdentity } from "./facts.js";
import type { EmulatedJobsStats } from "./jobs.js";
import type { EmulatedMachinesStats } from "./machines.js";
import type { ProvisioningStats } from "./provisioning.js";
import { FleetShard, type ShardSpec } from "./shard.js";

export interface WorkerSpec extends ShardSpec {
  /** v2 files (absent for an x509 emulator, whose files travel in `x509`) */
  security?: ChoriaSecurityOptions;
  logLevel: string;
}

/** Main thread → worker. */
export type ToWorker =
  | { type: "stats"; id: number }
  | { type: "provisioning"; id: number }
  | { type: "register"; id: number }
  | { type: "gc"; id: number }
  | { type: "stop" };

/** Worker → main thread. */
export type FromWorker =
  | { type: "progress"; done: number }
  | { type: "ready"; nodes: number }
  | { type: "error"; message: string }
  | { type: "stats"; id: number; stats: ShardStats }
  | { type: "provisioning"; id: number; stats: ProvisioningStats | undefined }
  | { type: "register"; id: number; count: number }
  | { type: "gc"; id: number }
  | { type: "stopped" };

export interface ShardStats {
  nodes: number;
  server: ReturnType<FleetShard["stats"]>;
  decoder: RequestDecoder["stats"];
  /** ed25519 verifications this thread performed (security's verifyStats) */
  verifies: number;
  /** in provisioning mode */
  provisioning?: ProvisioningStats;
  jobs?: EmulatedJobsStats;
  machines?: EmulatedMachinesStats;
}

async function main(): Promise<void> {
  const port = parentPort;
  if (!port) throw new Error("emulator worker started outside a worker thread");
  const spec = workerData as WorkerSpec;
  const post = (m: FromWorker): void => port.postMessage(m);
  const log = pino({ name: `chorus-emulator-${spec.name}`, level: spec.logLevel }, pino.destination(2));
  // The thread's own provider (same files as the main thread), so its token caches are local.
  const decoder = new RequestDecoder({
    ...(spec.x509
      ? { x509: new FileSecurity(spec.x509) }
      : { security: new ChoriaSecurity(spec.security as ChoriaSecurityOptions) }),
    cacheSize: 1_000,
  });
  const registry = new AgentRegistry();
  registerBuiltinAgents(registry);
  let shard: FleetShard;
  try {
    shard = new FleetShard(spec, {
      decoder,
      registry,
      log,
      identity: emulatedIdentity,
      facts: emulatedFacts,
      onProgress: (done) => post({ type: "progress", done }),
    });
  } catch (err) {
    post({ type: "error", message: (err as Error).message });
    return;
  }
  port.on("message", (m: ToWorker) => {
    if (m.type === "stats") {
      const provisioning = shard.provisioningStats();
      const jobs = shard.jobsStats();
      const machines = shard.machinesStats();
      post({
        type: "stats",
        id: m.id,
        stats: {
          nodes: shard.nodes.length,
          server: shard.stats(),
          decoder: decoder.stats,
          verifies: verifyStats.count,
          ...(provisioning && { provisioning }),
          ...(jobs && { jobs }),
          ...(machines && { machines }),
        },
      });
    } else if (m.type === "provisioning") {
      // cheap enough to poll: no per-node counters summed
      post({ type: "provisioning", id: m.id, stats: shard.provisioningStats() });
    } else if (m.type === "register") {
      post({ type: "register", id: m.id, count: shard.registerNow() });
    } else if (m.type === "gc") {
      // only when the process runs with --expose-gc (memory measurements)
      (globalThis as { gc?: () => void }).gc?.();
      post({ type: "gc", id: m.id });
    } else if (m.type === "stop") {
      void shard.stop().then(() => {
        post({ type: "stopped" });
        port.close();
      });
    }
  });
  try {
    await shard.createNodes();
    await shard.connect();
    post({ type: "ready", nodes: shard.nodes.length });
  } catch (err) {
    post({ type: "error", message: (err as Error).message });
  }
}

void main();
