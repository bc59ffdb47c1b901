import { ChorusError } from "../../core/protocol/errors.js";

export type FederationErrorCode = "config" | "connect" | "no_answer";

/**
 * A federation broker configuration or start-up problem (the message names the key at
 * fault), or a traced node that did not answer.
 */
export class FederationError extends ChorusError {
  declare readonly code: FederationErrorCode;
  constructor(code: FederationErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
