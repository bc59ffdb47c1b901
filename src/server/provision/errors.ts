import { ChorusError } from "../../core/protocol/index.js";

/**
 * Provisioning mode and the choria_provision agent. Codes: config (the node cannot
 * tell how to provision), token, refused (a request the agent will not act on), io.
 */
export class ProvisionError extends ChorusError {}
