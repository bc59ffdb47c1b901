/** Protocol identifiers carried in the `protocol` field of each v2 layer. */
export const PROTOCOL_V2 = {
  transport: "io.choria.protocol.v2.transport",
  secureRequest: "io.choria.protocol.v2.secure_request",
  request: "io.choria.protocol.v2.request",
  secureReply: "io.choria.protocol.v2.secure_reply",
  reply: "io.choria.protocol.v2.reply",
} as const;

/** Inputs larger than this are refused before any parsing (4 MiB, a little above NATS' usual max_payload). */
export const MAX_MESSAGE_BYTES: number = 4 * 1024 * 1024;

/** Version 1 (x509) protocol identifiers (codec in v1.ts). */
export const PROTOCOL_V1 = {
  transport: "choria:transport:1",
  secureRequest: "choria:secure:request:1",
  request: "choria:request:1",
  secureReply: "choria:secure:reply:1",
  reply: "choria:reply:1",
} as const;

/** What go-choria reports for a protocol field it does not know. */
export const PROTOCOL_UNKNOWN = "io.choria.protocol.unknown";
