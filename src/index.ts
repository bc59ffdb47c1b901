// Library entry: `import { Server, Client } from "chorus"`.

export { ChorusError } from "./core/protocol/errors.js";
export * as protocol from "./core/protocol/index.js";
export * as security from "./core/security/index.js";
export { ChoriaSecurity } from "./core/security/index.js";
export { loadConfig, parseConfig, Config, ConfigError } from "./core/config/index.js";
export { parseDDL, loadDDL, builtinDDL, type AgentDDL, type ActionDDL } from "./core/ddl/index.js";
export {
  Server,
  NodeRuntime,
  RequestDecoder,
  AgentRegistry,
  ActionReply,
  type ServerOptions,
  type AgentHandler,
  type ActionRequest,
  registerBuiltinAgents,
} from "./server/index.js";
export {
  Client,
  ClientError,
  type ClientOptions,
  type RequestOptions,
  type RpcResult,
} from "./client/index.js";
export { BrokerSupervisor, brokerSettings } from "./broker/index.js";
export { createDevSetup, type DevSetup } from "./apps/setup/index.js";
export { Emulator, type EmulatorOptions } from "./apps/emulator/index.js";
// Playbooks: what a .ts playbook imports from "chorus" (loadPlaybook maps it to this entry).
export {
  definePlaybook,
  rpc,
  shell,
  data,
  webhook,
  job,
  loadPlaybook,
  parsePlaybookYaml,
  validatePlaybook,
  runPlaybook,
  renderReportYaml,
  PlaybookError,
  type PlaybookReport,
  type RunPlaybookOptions,
  type Playbook,
  type PlaybookDefinition,
  type PlaybookTask,
  type InputDefinition,
  type Task,
  type NodeSetDef,
  type InputDef,
  type DataStoreDef,
} from "./services/playbooks/index.js";
