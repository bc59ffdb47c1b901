export {
  MAX_PAYLOAD_BYTES,
  MESSAGE_DEFAULTS,
  PRIORITIES,
  SubmissionError,
  buildMessage,
  isExpired,
  parseMessage,
  type Priority,
  type SpooledMessage,
  type SubmitRequest,
} from "./message.js";
export { SPOOL_DEFAULTS, Spool, type SpoolOptions, type SpoolSigner, type SpoolStats } from "./spool.js";
export { parseSize, submissionSettings, type SubmissionSettings } from "./settings.js";
