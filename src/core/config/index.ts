export {
  Config,
  ConfigError,
  loadConfig,
  parseBool,
  parseConfig,
  parseDuration,
  splitList,
} from "./config.js";
export {
  brokerSettings,
  clientSettings,
  machineSettings,
  provisioningSettings,
  serverSettings,
  type BrokerSettings,
  type ClientSettings,
  type MachineSettings,
  type ProvisioningSettings,
  type RequestSignerSettings,
  type CommonSettings,
  type ServerSettings,
  type X509Settings,
} from "./settings.js";
export type { AdapterSettings, BrokerStreamSettings, LeafnodeRemote } from "./settings.js";
