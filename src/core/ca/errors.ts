import { ChorusError } from "../protocol/index.js";

/**
 * - `policy`: the CA refuses the request by its rules (name, validity);
 * - `bad_csr`: the CSR is unreadable, too big, badly signed or has an unusable key;
 * - `bad_input`: an option or argument is out of range;
 * - `exists`: init found a CA (or other files) in the directory;
 * - `not_found`: no CA in the directory, or no certificate with that serial;
 * - `revoked`: the certificate is already revoked;
 * - `no_key`: the signing key is absent (moved offline) or unreadable;
 * - `bad_state`: the CA's files are damaged or were edited into an invalid shape;
 * - `io`: reading or writing the CA's files failed.
 */
export type CaErrorCode =
  "policy" | "bad_csr" | "bad_input" | "exists" | "not_found" | "revoked" | "no_key" | "bad_state" | "io";

/** Raised by the certificate authority; `code` says why. */
export class CaError extends ChorusError {
  declare readonly code: CaErrorCode;
  constructor(code: CaErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
