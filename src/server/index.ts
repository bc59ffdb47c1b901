export {
  RequestDecoder,
  type DecodeRejection,
  type DecodeResult,
  type DecodedRequest,
  type DecoderSecurity,
  type DecoderStats,
  type RequestDecoderOptions,
} from "./decoder.js";
export { MAX_REQUEST_TTL, NodeRuntime, type NodeEvents, type NodeRuntimeOptions } from "./node.js";
export { ReplayGuard, type ReplayGuardOptions, type ReplayGuardStats, type ReplayVerdict } from "./replay.js";
export { AgentRegistry, ServerError, type RegisterOptions } from "./registry.js";
export {
  Server,
  type AgentReloadResult,
  type ServerOptions,
  type ServerProvisioning,
  type ServerSecurity,
} from "./server.js";
export {
  ProvisionAgent,
  ProvisionError,
  ProvisioningSecurity,
  choriaProvisionDDL,
  createRsaCsr,
  provisioningBrokers,
  provisioningDecision,
  renderConfig,
  renewalTime,
  serveConfigFile,
  setConfigKey,
  writeFileAtomic,
  type CsrSubject,
  type GeneratedCsr,
  type ProvisionAgentOptions,
  type ProvisionAgentStats,
  type ProvisionTuning,
  type ProvisioningDecision,
  type ServeOptions,
  type ServeOutcome,
  type ServerExitRequest,
} from "./provision/index.js";
export {
  agentDirs,
  defineActions,
  scanAgentDirs,
  type AgentLoadProblem,
  type AgentModule,
  type AgentScan,
  type LoadedAgent,
  type ScanOptions,
} from "./agents-loader.js";
export {
  EXTERNAL_PROTOCOLS,
  ExternalAgentError,
  activationCheck,
  externalAgentHandlers,
  externalKillMs,
  runExternal,
  type ExternalAgentOptions,
  type ExternalRunOptions,
  type ExternalRunResult,
} from "./external.js";
export { AuditLog, auditTime, type AuditEntry, type AuditLogOptions, type Auditor } from "./audit.js";
export {
  ActionPolicyAuthorizer,
  PolicyError,
  authorizerFromSettings,
  compileRule,
  evaluatePolicy,
  isCompoundStatement,
  parseGroups,
  parsePolicy,
  readGroups,
  type ActionPolicyOptions,
  type ActionPolicyStats,
  type GroupWarning,
  type PolicyFields,
  type PolicyWarning,
  type Policy,
  type PolicyDecision,
  type PolicyRule,
  type PolicySubject,
} from "./authz/index.js";
export { StatusFileWriter, instanceStatus, type InstanceStatus, type StatusFileOptions } from "./status.js";
export { ServerMetrics, type ServerMetricsOptions } from "./metrics.js";
export { RateLimitedLog } from "./ratelog.js";
export { ClassesSource, loadClasses, loadFacts } from "./facts.js";
export {
  DataError,
  DataRegistry,
  EXTERNAL_DATA_PROTOCOL,
  loadExternalDataPlugins,
  loadModuleDataPlugins,
  parseDataDdl,
  type DataDdl,
  type DataLoadProblem,
  type DataNode,
  type DataPlugin,
} from "./data/index.js";
export {
  DROP_REASONS,
  NodeStats,
  REJECT_REASONS,
  type DropReason,
  type NodeDropReason,
  type RejectReason,
  type ServerStats,
} from "./stats.js";
export {
  ActionReply,
  allowAll,
  type ActionRequest,
  type AgentDefinition,
  type AgentHandler,
  type Authorizer,
  type AuthzDecision,
  type HostInfo,
  type NodeCredential,
  type NodeReply,
  type RawAgentHandler,
} from "./types.js";
export { CHORUS_VERSION } from "../core/util/index.js";
export {
  DISCOVERY_DDL,
  JOB_AGENT,
  JobAgent,
  choriaUtilActions,
  discoveryHandler,
  jobManagerCommand,
  jobsSettings,
  localInvoker,
  registerBuiltinAgents,
  registerChoriaUtil,
  registerDiscovery,
  registerJobAgent,
  registerRpcutil,
  rpcutilActions,
  type JobAgentOptions,
  type JobAgentStats,
  type JobHost,
  type JobsSettings,
} from "./agents/index.js";
export {
  AaasvcAuthorizer,
  actionListAuthorizer,
  cedarAuthorizer,
  cedarContext,
  cedarPolicyProblem,
  evaluateAgentList,
  type AaasvcAuthorizerOptions,
  type AuthzInput,
  type CedarAuthorizer,
  type ClaimsAuthorizer,
} from "./authz/index.js";
