export * from "./types.js";
export { PlaybookError, type PlaybookErrorCode } from "./errors.js";
export { validatePlaybook } from "./validate.js";
export { parsePlaybookYaml } from "./yaml.js";
export {
  definePlaybook,
  rpc,
  shell,
  data,
  webhook,
  job,
  type PlaybookDefinition,
  type PlaybookTask,
  type InputDefinition,
  type TemplateString,
} from "./define.js";
export { loadPlaybook } from "./load.js";
export { inputFlags, coerceInput, resolveInputs, type InputFlag } from "./inputs.js";
export { renderTemplate, templateNames } from "./templates.js";
export { openDataStore, openDataStores, KvStore, SHELL_STORE_TIMEOUT_MS, type DataDeps } from "./data.js";
export { takeLocks, lockKey, defaultOwner, LOCK_TTL_MS, type LockDeps, type LockRecord } from "./locks.js";
export { runPlaybook, type RunPlaybookOptions } from "./runner.js";
export { renderReportYaml } from "./report.js";
export { resolveNodeSets, type NodeSetEnv } from "./nodes.js";
export { runTaskOnce, runCommand, summarize, type TaskEnv, type TaskOutcome } from "./tasks.js";
