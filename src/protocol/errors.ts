/** Base of every error Chorus raises on purpose; `code` is stable for callers and counters. */
export class ChorusError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}
