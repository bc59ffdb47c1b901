// services/federation: the federation broker (Choria's broker/federation), joining
// collectives on their own networks to a federation network; its one public entry.
export {
  clientSettingsOf,
  loadFederationConfig,
  parseFederationConfig,
  type FederationConfig,
  type FederationSide,
} from "./config.js";
export { FederationError, type FederationErrorCode } from "./errors.js";
export { FederationMetrics, type BadMessageReason, type FederationPath, type PathCounts } from "./metrics.js";
export { FederationBroker, type FederationBrokerOptions } from "./service.js";
export {
  collectFederationStats,
  FEDERATION_STATS_PROTOCOL,
  federationStatsSubject,
  parseFederationStats,
  type CollectedStats,
  type CollectStatsOptions,
  type FederationStats,
} from "./stats.js";
export { federationTrace, type FederationTrace, type TraceHop, type TraceOptions } from "./trace.js";
export {
  BadMessage,
  REPLY_INBOX,
  federationCollectiveSubject,
  federationRequestSubject,
  transformReply,
  transformRequest,
  type Forward,
} from "./transform.js";
