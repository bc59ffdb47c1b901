export { Client, completeFilter, identityOnlyTargets } from "./client.js";
export { ClientError, type ClientErrorCode } from "./errors.js";
export { findAgentDDL } from "./ddl.js";
export {
  checkReplySignature,
  emptyDropCounts,
  issuerTrust,
  openReply,
  parseRpcReplyBody,
  TOO_DEEP_STATUSMSG,
  type DropReason,
  type OpenedReply,
  type ReplyTrust,
  type RpcReplyFields,
} from "./replies.js";
export type {
  ClientLogger,
  ClientOptions,
  DiscoverOptions,
  DropCounts,
  PingOptions,
  PingReply,
  PingResult,
  RequestMode,
  RequestOptions,
  RpcReply,
  RpcResult,
  RpcStats,
} from "./types.js";
export * from "./render.js";
export { replyProgress, type Progress } from "./progress.js";
export * from "./output.js";
export {
  computeSummaries,
  renderSummaries,
  formatValue,
  histogram,
  AGGREGATE_FUNCTIONS,
  type Summary,
  type AggregateFunction,
} from "./aggregate.js";
export { compileReplyFilter, REPLY_ENV } from "./reply-filter.js";
export { applyLimit, limitCount, planBatches, seededRandom, type LimitMethod } from "./pacing.js";
export * from "./discovery/index.js";
export { factReport, renderFactReport, renderInventory, renderDDLDoc, type FactReport } from "./reports.js";
