export { ChorusError, ProtocolError, type ProtocolErrorCode } from "./errors.js";
export { PROTOCOL_V2, MAX_MESSAGE_BYTES } from "./constants.js";
export type { Transport, TransportHeaders, SecureRequest, Request, SecureReply, Reply } from "./types.js";
export { type FactFilter, type Filter, emptyFilter, isEmptyFilter } from "./filter.js";
export { newRequestId, nowNanos, ksuidFromParts, parseKsuid, KSUID_EPOCH } from "./ksuid.js";
export { replySubject, replyPrefix, broadcastSubject, serviceSubject, directSubject } from "./subjects.js";
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
