export {
  ProvisionAgent,
  choriaProvisionDDL,
  type ProvisionAgentOptions,
  type ProvisionAgentStats,
  type ProvisionTuning,
  type ServerExitRequest,
} from "./agent.js";
export { createRsaCsr, type CsrSubject, type GeneratedCsr } from "./csr.js";
export { ProvisionError } from "./errors.js";
export { removeFile, renderConfig, setConfigKey, writeFileAtomic } from "./files.js";
export {
  ProvisioningSecurity,
  provisioningBrokers,
  provisioningDecision,
  renewalTime,
  type ProvisioningDecision,
} from "./mode.js";
export { serveConfigFile, type ServeOptions, type ServeOutcome } from "./serve.js";
