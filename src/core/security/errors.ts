import { ChorusError } from "../protocol/errors.js";

/**
 * Codes: malformed | untrusted | bad_signature | expired | not_yet_valid |
 * bad_chain | wrong_purpose | no_fleet_management | requires_signer | bad_key | io |
 * x509: name_mismatch | caller_mismatch | not_allowed; wrong_provider.
 */
export class SecurityError extends ChorusError {}
