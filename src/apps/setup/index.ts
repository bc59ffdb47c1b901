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
export { createDevSetup, type DevSetup, type DevSetupOptions } from "./dev.js";
export {
  CLIENT_PERMISSIONS,
  SERVER_PERMISSIONS,
  createIssuerSeed,
  inspectToken,
  issueClientTokenFiles,
  issueServerTokenFiles,
  parseValidity,
  type IssueTokenOptions,
  type TokenReport,
} from "./tokens.js";
