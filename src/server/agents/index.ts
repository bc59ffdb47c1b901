import type { AgentRegistry } from "../registry.js";
import { registerChoriaUtil } from "./choria_util.js";
import { registerDiscovery } from "./discovery.js";
import { registerRpcutil } from "./rpcutil.js";

export { DISCOVERY_DDL, discoveryHandler, registerDiscovery } from "./discovery.js";
export { rpcutilActions, registerRpcutil } from "./rpcutil.js";
export { choriaUtilActions, registerChoriaUtil } from "./choria_util.js";
export { SCOUT_TRANSITIONS, registerScoutAgent, scoutActions, type ScoutAction } from "./scout.js";
export {
  JOB_AGENT,
  JobAgent,
  jobManagerCommand,
  jobsSettings,
  localInvoker,
  registerJobAgent,
  type JobAgentOptions,
  type JobAgentStats,
  type JobHost,
  type JobsSettings,
} from "./job.js";

/** Installs discovery, rpcutil and choria_util into a registry (a Server gets them by default). */
export function registerBuiltinAgents(registry: AgentRegistry): void {
  registerDiscovery(registry);
  registerRpcutil(registry);
  registerChoriaUtil(registry);
}
