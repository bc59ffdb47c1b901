import { ChorusError } from "../../core/protocol/errors.js";

export type MachineErrorCode =
  /** machine.yaml does not parse or does not validate (the message names the path) */
  | "bad_manifest"
  /** a watcher's properties are wrong (the message names watchers[i].properties.key) */
  | "bad_watcher"
  /** a transition that does not exist or is not valid from the current state */
  | "bad_transition"
  /** no machine (or check) of that name, instance or path */
  | "not_found"
  /** a machine spec from KV that is malformed, unsigned, forged or signed by another key */
  | "bad_spec"
  /** a file or directory could not be read or written */
  | "io";

/** Raised by the machine engine, watchers and specs; `code` is stable for callers and counters. */
export class MachineError extends ChorusError {
  declare readonly code: MachineErrorCode;
  constructor(code: MachineErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
