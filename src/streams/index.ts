export { StreamsError } from "./errors.js";
export {
  LEADER_ELECTION_BUCKET,
  MANAGED_STREAM_DEFAULTS,
  ensureManagedStreams,
  ensureStreams,
  managedStreamConfigs,
  nanos,
  type EnsureResult,
  type ManagedStreamConfig,
  type ManagedStreamsOptions,
} from "./managed.js";
export {
  KV_DEFAULTS,
  bucketStatus,
  createBucket,
  entryView,
  isStreamNotFound,
  kvOp,
  kvStreamConfig,
  listBuckets,
  openBucket,
  removeBucket,
  validateBucketName,
  type BucketOptions,
  type BucketSummary,
} from "./kv.js";
