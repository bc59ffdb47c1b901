// services/receiver: stores asynchronous replies and request records (from the
// CHORUS_REPLIES stream or a queue group) in SQLite or PostgreSQL, exactly once, and
// serves their progress over HTTP; its one public entry.
export { Batcher, type BatcherOptions, type Settle } from "./batcher.js";
export {
  DEFAULT_CONSUMER,
  DEFAULT_HTTP_LISTEN,
  DEFAULT_STORE,
  loadReceiverConfig,
  parseReceiverConfig,
  parseStoreUrl,
  type ReceiverConfig,
  type ReceiverMode,
  type StoreLocation,
} from "./config.js";
export { ReceiverConfigError, StoreError, type StoreErrorCode } from "./errors.js";
export { buildReceiverHttp, type ReceiverHttpOptions } from "./http.js";
export {
  DROP_REASONS,
  RECORD_PROTOCOL,
  REQUEST_ID_PATTERN,
  parseMessage,
  parseRecord,
  parseReply,
  type DropReason,
  type Parsed,
} from "./ingest.js";
export { ReceiverMetrics, type MessageKind } from "./metrics.js";
export {
  RECEIVER_QUEUE,
  REPLIES_STREAM,
  ReceiverService,
  repliesStreamConfig,
  type ReceiverServiceOptions,
} from "./service.js";
export {
  ReplyStore,
  type ListQuery,
  type ReplyRow,
  type RepliesQuery,
  type RequestRow,
  type RequestStatus,
  type StoredReply,
  type WriteResult,
} from "./store.js";
