/** Base of every error Chorus raises on purpose; `code` is stable for callers and counters. */
export class ChorusError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

export type ProtocolErrorCode = "malformed" | "schema" | "protocol" | "too_large" | "too_deep";

/** Raised by the wire codecs; `code` tells counters why a message was dropped. */
export class ProtocolError extends ChorusError {
  declare readonly code: ProtocolErrorCode;
  constructor(code: ProtocolErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
