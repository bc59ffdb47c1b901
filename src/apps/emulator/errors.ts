import { ChorusError } from "../../core/protocol/errors.js";

/** Emulator failures: `usage` (bad options), `worker` (a shard thread), `provisioning` (mode setup, a node's files). */
export class EmulatorError extends ChorusError {}
