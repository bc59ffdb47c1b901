import { ChorusError } from "../core/protocol/index.js";

export type ClientErrorCode = "closed" | "bad_option" | "connect_failed" | "usage" | "discovery_failed";

/** Errors raised by the RPC client before or instead of talking to the fleet. */
export class ClientError extends ChorusError {
  declare readonly code: ClientErrorCode;
  constructor(code: ClientErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
