export { ActionPolicyAuthorizer, type ActionPolicyOptions, type ActionPolicyStats } from "./actionpolicy.js";
export {
  PolicyError,
  compileRule,
  evaluatePolicy,
  isCompoundStatement,
  parseGroups,
  parsePolicy,
  readGroups,
  type Policy,
  type GroupWarning,
  type PolicyDecision,
  type PolicyFields,
  type PolicyRule,
  type PolicySubject,
  type PolicyWarning,
} from "./policy.js";
export { authorizerFromSettings } from "./settings.js";
export { AaasvcAuthorizer, type AaasvcAuthorizerOptions } from "./aaasvc.js";
export { cedarAuthorizer, cedarContext, cedarPolicyProblem, type CedarAuthorizer } from "./cedar.js";
export { actionListAuthorizer, evaluateAgentList, type AuthzInput, type ClaimsAuthorizer } from "./claims.js";
