export {
  issueClientCredential,
  issueServerCredential,
  type ClientCredentialOptions,
  type CredentialPaths,
  type CredentialFiles,
  type IssuingAuthority,
  type ServerCredentialOptions,
} from "./credentials.js";
export { SetupError } from "./errors.js";
export { createAaaDevFiles, type AaaDevFiles, type AaaDevContext } from "./aaa.js";
export { type MixedDevFiles } from "./mixed.js";
export {
  createProvisioningDevFiles,
  type ProvisioningDevContext,
  type ProvisioningDevFiles,
} from "./provisioning.js";
export { createDevSetup, type DevSetup, type DevSetupOptions } from "./dev.js";
export {
  CLIENT_PERMISSIONS,
  SERVER_PERMISSIONS,
  createIssuerSeed,
  inspectToken,
  issueClientTokenFiles,
  issueServerTokenFiles,
  parseValidity,
  type ClientClaimOptions,
  type IssueTokenOptions,
  type TokenReport,
} from "./tokens.js";
export {
  OVERLAY_REGISTRATION,
  OVERLAY_REPLIES,
  OVERLAY_STREAMS,
  createOverlaySetup,
  type OverlayCell,
  type OverlaySetup,
  type OverlaySetupOptions,
} from "./overlays.js";
export {
  DEFAULT_CERTNAME_ALLOW_LIST,
  DEFAULT_PRIVILEGED_USERS,
  createX509Authority,
  fileSecurityKeys,
  issueX509Certificate,
  makeX509Fleet,
  type X509CertificateRequest,
  type X509Client,
  type X509Credential,
  type X509Fleet,
  type X509FleetOptions,
  type X509Server,
} from "./x509.js";
