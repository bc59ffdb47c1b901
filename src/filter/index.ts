export { FilterError, type FilterErrorCode } from "./errors.js";
export { FACT_OPERATORS, type FactOperator, parseFactFilter, lookupFact, matchFact } from "./facts.js";
export { type NodeInfo, matchFilter, matchIdentity, matchClasses, matchAgents } from "./match.js";
export {
  parseIdentityFilter,
  parseClassFilter,
  parseAgentFilter,
  parseCombinedFilter,
  buildFilter,
} from "./build.js";
