import { ChorusError } from "../protocol/index.js";

export type FilterErrorCode = "bad_fact_filter" | "bad_filter" | "unsupported_compound" | "bad_compound";

export class FilterError extends ChorusError {
  declare readonly code: FilterErrorCode;
  constructor(code: FilterErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
