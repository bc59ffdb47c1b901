export {
  RequestDecoder,
  type DecodeRejection,
  type DecodeResult,
  type DecodedRequest,
  type DecoderSecurity,
  type DecoderStats,
  type RequestDecoderOptions,
} from "./decoder.js";
export { NodeRuntime, type NodeEvents, type NodeRuntimeOptions } from "./node.js";
export { AgentRegistry, ServerError, type RegisterOptions } from "./registry.js";
export { Server, addDefaultAgents, type AgentInstaller, type ServerOptions } from "./server.js";
export { ServerMetrics, type ServerMetricsOptions } from "./metrics.js";
export { RateLimitedLog, type WarnLogger } from "./ratelog.js";
export { loadClasses, loadFacts } from "./facts.js";
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
  type HostInfo,
  type NodeCredential,
  type NodeReply,
  type RawAgentHandler,
} from "./types.js";
export { CHORUS_VERSION } from "./version.js";
