// services/aaa: the AAA service (login, request signer, auditors); its one public entry.
export {
  AaaConfigError,
  loadAaaConfig,
  parseAaaConfig,
  type AaaConfig,
  type BasicJwtConfig,
  type UserEntry,
  type UserlistConfig,
} from "./config.js";
export {
  FailureWindow,
  PROOF_MAX_AGE_S,
  UserlistAuthenticator,
  hashPassword,
  parseUsers,
  type LoginOutcome,
  type LoginRequest,
  type UserlistOptions,
} from "./userlist.js";
export { AaaMetrics } from "./metrics.js";
export { LOGIN_PATH, MAX_BODY_BYTES, SIGN_PATH, buildAaaHttp, type AaaHttpOptions } from "./http.js";
export { REQUEST_DENIED, SIGNER_AGENT, signAction, startSignerAgent } from "./agent.js";
export { AaaService, type AaaServiceOptions } from "./service.js";
export {
  RequestSigner,
  UNVERIFIED_CALLER,
  type SignInput,
  type SignOutcome,
  type SignerAuthorizer,
  type SignerAuthzDecision,
  type SignerAuthzInput,
  type SignerLog,
  type SignerMetricsHooks,
  type SignerOptions,
} from "./signer.js";
export {
  FileAuditor,
  JetStreamAuditor,
  auditMessageId,
  type AuditRecord,
  type Auditor,
  type FileAuditorOptions,
  type JetStreamAuditorOptions,
} from "./auditors.js";
