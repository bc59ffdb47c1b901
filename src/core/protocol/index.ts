export { ChorusError, ProtocolError, type ProtocolErrorCode } from "./errors.js";
export { PROTOCOL_V2, PROTOCOL_V1, PROTOCOL_UNKNOWN, MAX_MESSAGE_BYTES } from "./constants.js";
export { protocolVersion } from "./version.js";
export {
  type Federable,
  type NetworkHop,
  isFederated,
  federationRequestId,
  federationReplyTo,
  federationTargets,
  setFederationRequestId,
  setFederationReplyTo,
  setFederationTargets,
  setUnfederated,
  recordNetworkHop,
  networkHops,
  seenBy,
  copyFederationData,
} from "./federation.js";
export type { Transport, TransportHeaders, SecureRequest, Request, SecureReply, Reply } from "./types.js";
export { type FactFilter, type Filter, emptyFilter, isEmptyFilter } from "./filter.js";
export { newRequestId, nowNanos, ksuidFromParts, parseKsuid, KSUID_EPOCH } from "./ksuid.js";
export {
  replySubject,
  replyPrefix,
  broadcastSubject,
  serviceSubject,
  directSubject,
  isCallerReplySubject,
  isFederationReplySubject,
  asyncReplySubject,
  asyncRecordSubject,
  ASYNC_REPLY_WILDCARD,
  ASYNC_RECORD_WILDCARD,
} from "./subjects.js";
export {
  encodeRequest,
  encodeSecureRequest,
  encodeReply,
  encodeSecureReply,
  encodeTransport,
  encodeMessage,
  decodeBase64Strict,
  decodeTransport,
  decodeSecureRequest,
  decodeRequest,
  decodeSecureReply,
  decodeReply,
  type DecodeOptions,
} from "./codec.js";
export { type RpcRequestBody, type RpcReplyBody, StatusCode } from "./mcorpc.js";
export { MAX_JSON_DEPTH, jsonDepth, jsonDepthExceeds, valueDepthExceeds } from "./depth.js";
export {
  MAX_REGEX_LENGTH,
  MAX_REGEX_PROGRAM,
  REGEX_CACHE_ENTRIES,
  REGEX_CACHE_PROGRAM,
  type SafeRegex,
  compileRegex,
  regexProblem,
  isSafeRegex,
  regexCacheStats,
} from "./regex.js";
export {
  type TransportV1,
  type TransportHeadersV1,
  type SecureRequestV1,
  type RequestV1,
  type RequestV1Fields,
  type SecureReplyV1,
  type ReplyV1,
  type ReplyV1Fields,
  newRequestIdV1,
  encodeRequestV1,
  encodeSecureRequestV1,
  encodeReplyV1,
  encodeSecureReplyV1,
  encodeTransportV1,
  decodeAnyTransport,
  decodeSecureRequestV1,
  decodeRequestV1,
  decodeSecureReplyV1,
  decodeReplyV1,
} from "./v1.js";
