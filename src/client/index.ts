export { Client, completeFilter, identityOnlyTargets } from "./client.js";
export {
  ClientError,
  type ClientErrorCode,
  type MessagePart,
  type OptionName,
  type OptionNamer,
} from "./errors.js";
export { checkRequestOptions, checkReplyTo, DEFAULT_TTL_S, type CheckedRequestOptions } from "./options.js";
export {
  FEDERATION_BATCH,
  federationCollectives,
  publishFederated,
  type FederatedPublish,
  type FederationOptions,
} from "./federation.js";
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
export { compileReplyFilter, REPLY_ENV } from "./reply-filter.js";
export { applyLimit, limitCount, planBatches, seededRandom, type LimitMethod } from "./pacing.js";
export * from "./discovery/index.js";
export {
  checkSecureRequest,
  remoteSigner,
  REMOTE_SIGNER_AGENT,
  TOKEN_WARN_WITHIN_S,
  type RemoteSignerOptions,
  type RequestSigner,
  type SignerContext,
} from "./signer.js";
export {
  login,
  loginProof,
  needsLogin,
  saveTokenFile,
  tokenExpiresAt,
  type LoginOptions,
  type LoginResult,
} from "./login.js";
export {
  ASYNC_RECORD_PROTOCOL,
  ASYNC_REPLIES_STREAM,
  DEFAULT_RECORD_TIMEOUT_MS,
  checkAsyncOptions,
  publishAsyncRecord,
  type AsyncRequestOptions,
  type AsyncRequestRecord,
  type AsyncRequestResult,
} from "./async.js";
export {
  DEFAULT_RECEIVER_API,
  RECEIVER_API_CONFIG_KEY,
  RECEIVER_TOKEN_CONFIG_KEY,
  receiverTokenFromConfig,
  ReceiverApi,
  ReceiverApiError,
  receiverApiFromConfig,
  type FollowOptions,
  type FollowResult,
  type ListRequestsOptions,
  type ReceiverApiOptions,
  type RepliesOptions,
  type RequestStatus,
  type StoredReply,
} from "./receiver-api.js";
