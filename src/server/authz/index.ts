export { ActionPolicyAuthorizer, type ActionPolicyOptions } from "./actionpolicy.js";
export {
  PolicyError,
  evaluatePolicy,
  parseGroups,
  parsePolicy,
  readGroups,
  type Policy,
  type PolicyDecision,
  type PolicyRule,
  type PolicySubject,
} from "./policy.js";
export { authorizerFromSettings } from "./settings.js";
