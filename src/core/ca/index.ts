// core/ca: a file-backed certificate authority (root, intermediate, leaves, CRLs) for
// setup and the provisioner's pki flow.
export { CaError, type CaErrorCode } from "./errors.js";
export {
  CHORIA_CERT_DENY_LIST,
  DEFAULT_MAX_VALIDITY_DAYS,
  MAX_SANS,
  resolvePolicy,
  checkNames,
  type CaPolicy,
  type ResolvedPolicy,
  type CaSans,
} from "./policy.js";
export { REVOCATION_REASONS, type CaAlgorithm, type RevocationReason } from "./store.js";
export {
  CertificateAuthority,
  MAX_CSR_BYTES,
  normalizeSerial,
  type CaInitOptions,
  type SignOptions,
  type SignedCertificate,
  type CertificateStatus,
  type CertificateInfo,
  type CrlOptions,
  type ChainVerdict,
} from "./authority.js";
