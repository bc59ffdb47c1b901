import { ChorusError } from "../../core/protocol/errors.js";

export type PlaybookErrorCode =
  /** the playbook does not parse or does not validate (the message names file, line and key) */
  | "bad_playbook"
  /** an input is missing or fails its type or validation */
  | "bad_input"
  /** a template refers to something that does not exist or does not render */
  | "bad_template"
  /** a node set is empty, too small, or its nodes lack an agent or version it uses */
  | "nodes"
  /** a lock is held by someone else (or could not be taken in time) */
  | "locked"
  /** a data store could not be read or written */
  | "data"
  /** a task failed (the book's failure reason) */
  | "task";

/** Raised by playbook compilation and runs; `code` is stable for callers and exit codes. */
export class PlaybookError extends ChorusError {
  declare readonly code: PlaybookErrorCode;
  constructor(code: PlaybookErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
