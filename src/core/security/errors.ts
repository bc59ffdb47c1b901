import { ChorusError } from "../protocol/errors.js";

/**
 * Codes: malformed | untrusted | bad_signature | expired | not_yet_valid |
 * bad_chain | wrong_purpose | no_fleet_management | requires_signer | bad_key | io.
 */
export class SecurityError extends ChorusError {}
