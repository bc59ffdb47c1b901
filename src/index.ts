// Library entry: `import { Server, Client } from "chorus"`.
// Importing the agents module installs the built-in agents into every Server.
import "./agents/index.js";

export { ChorusError } from "./protocol/errors.js";
export * as protocol from "./protocol/index.js";
export * as security from "./security/index.js";
export { ChoriaSecurity } from "./security/index.js";
export { loadConfig, parseConfig, Config, ConfigError } from "./config/index.js";
export { parseDDL, loadDDL, builtinDDL, type AgentDDL, type ActionDDL } from "./ddl/index.js";
export {
  Server,
  NodeRuntime,
  RequestDecoder,
  AgentRegistry,
  ActionReply,
  type ServerOptions,
  type AgentHandler,
  type ActionRequest,
} from "./server/index.js";
export { registerBuiltinAgents } from "./agents/index.js";
export { Client, type ClientOptions, type RequestOptions, type RpcResult } from "./client/index.js";
export { BrokerSupervisor, brokerSettings } from "./broker/index.js";
export { createDevSetup, type DevSetup } from "./setup/index.js";
export { Emulator, type EmulatorOptions } from "./emulator/index.js";
