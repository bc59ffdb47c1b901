export { ReplicatorError } from "./errors.js";
export {
  loadReplicatorConfig,
  parseLongDuration,
  parseReplicatorConfig,
  type ChoriaCredential,
  type Endpoint,
  type HeartbeatConfig,
  type ParallelKey,
  type ReplicatorConfig,
  type SamplingConfig,
  type StartAt,
  type StreamConfig,
  type TlsFiles,
} from "./config.js";
export {
  ORIGINAL_ID_HEADER,
  SOURCE_HEADER,
  StreamCopier,
  parseSourceHeader,
  targetSubject,
  type CopierOptions,
  type CopyFilter,
} from "./copier.js";
export { Heartbeats, ORIGINATOR_HEADER, SUBJECT_HEADER } from "./heartbeat.js";
export { ReplicatorMetrics } from "./metrics.js";
export { Replicator, type ReplicatorOptions, type StreamState } from "./service.js";
export {
  Sampler,
  decodeGossip,
  encodeGossip,
  type SampledMessage,
  type SamplingCounters,
  type SamplingEvent,
  type SamplingOptions,
  type TrackedItem,
} from "./sampling.js";
export {
  ADVISORY_PROTOCOL,
  Advisor,
  advisorySubject,
  newEventId,
  wireAdvisor,
  type AdvisorOptions,
  type AgeAdvisory,
} from "./advisor.js";
export { SampledCopy, gossipSubject } from "./sampled.js";
export { AckedPublisher, type StoredAck } from "./publisher.js";
