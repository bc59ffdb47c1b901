import { ChorusError } from "../../core/protocol/errors.js";

/** A provisioner configuration problem; the message names the key as the file spells it. */
export class ProvisionerConfigError extends ChorusError {}

export type HelperErrorCode = "spawn" | "timeout" | "exit" | "empty" | "garbage" | "too_large" | "invalid";

/** The helper could not be run or answered something unusable. */
export class HelperError extends ChorusError {
  declare readonly code: HelperErrorCode;
  constructor(code: HelperErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

export type ProvisionErrorCode =
  /** the node did not answer an RPC (after its retries) */
  | "no_reply"
  /** the node answered an RPC with a failure status */
  | "rpc_failed"
  /** the node's provisioning token, key proof or CSR did not check out */
  | "untrusted"
  /** the node's identity or CSR names something the deny list refuses */
  | "denied"
  /** minting the server token, NATS user or certificate failed */
  | "mint"
  /** the helper failed (see the cause, a HelperError) */
  | "helper"
  /** the node left provisioning mode or restarted part way through */
  | "state"
  /** the service is stopping */
  | "stopped";

/** Provisioning one node failed; `code` says at which kind of step. */
export class ProvisionError extends ChorusError {
  declare readonly code: ProvisionErrorCode;
  constructor(code: ProvisionErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
