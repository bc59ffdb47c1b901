// services/provisioner: the provisioner service (finds nodes in provisioning mode, queues
// them in JetStream, configures them); its one public entry.
export {
  durationMs,
  loadProvisionerConfig,
  parseProvisionerConfig,
  type ProvisionerConfig,
  type ProvisionerFeatures,
  type ProvisioningCredentials,
} from "./config.js";
export {
  HelperError,
  ProvisionError,
  ProvisionerConfigError,
  type HelperErrorCode,
  type ProvisionErrorCode,
} from "./errors.js";
export {
  HELPER_MAX_OUTPUT,
  checkHelperOutput,
  runHelper,
  type HelperInput,
  type HelperOutput,
  type HelperRunOptions,
  type ServerClaimsOverride,
} from "./helper.js";
export { ProvisionerMetrics } from "./metrics.js";
export {
  loadChainIssuer,
  mintServerCredential,
  natsAccountOf,
  natsMayPublish,
  planServerToken,
  subjectMatches,
  type MintedServerCredential,
  type ServerTokenPlan,
} from "./mint.js";
export {
  PROVISIONING_CONSUMER,
  PROVISIONING_STREAM,
  PROVISIONING_SUBJECTS,
  QueueError,
  WorkQueue,
  parseWorkItem,
  provisioningStreamConfig,
  queueSubject,
  type WorkItem,
  type WorkQueueOptions,
} from "./queue.js";
export {
  csrCommonName,
  nodeConfiguration,
  provisionNode,
  type NodeRpc,
  type ProvisionOutcome,
  type ProvisionOutcomeKind,
  type SequenceDeps,
} from "./sequence.js";
export {
  ELECTION_KEY,
  PROVISIONING_COLLECTIVE,
  ProvisionerService,
  type ProvisionerServiceOptions,
} from "./service.js";
