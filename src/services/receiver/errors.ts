import { ChorusError } from "../../core/protocol/errors.js";

/** A receiver configuration problem; the message names the key as the file spells it. */
export class ReceiverConfigError extends ChorusError {}

export type StoreErrorCode = "url" | "open" | "migrate" | "write" | "read";

/** The reply store could not be opened, migrated, written or read. */
export class StoreError extends ChorusError {
  declare readonly code: StoreErrorCode;
  constructor(code: StoreErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
