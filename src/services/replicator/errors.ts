import { ChorusError } from "../../core/protocol/errors.js";

/** Replicator configuration and runtime problems (code names what kind). */
export class ReplicatorError extends ChorusError {}
