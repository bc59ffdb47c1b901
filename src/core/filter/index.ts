export { FilterError, type FilterErrorCode } from "./errors.js";
export {
  MAX_REGEX_LENGTH,
  MAX_REGEX_PROGRAM,
  type SafeRegex,
  compileRegex,
  regexProblem,
  isSafeRegex,
  isSlashRegex,
} from "./regex.js";
export { FACT_OPERATORS, type FactOperator, parseFactFilter, lookupFact, matchFact } from "./facts.js";
export { type NodeInfo, matchFilter, matchIdentity, matchClasses, matchAgents } from "./match.js";
export {
  parseIdentityFilter,
  parseClassFilter,
  parseAgentFilter,
  parseCombinedFilter,
  buildFilter,
} from "./build.js";
export {
  ExpressionError,
  DYNAMIC,
  compileExpression,
  compileValue,
  looseEqual,
  regexTest,
  truthy,
  contains,
  type ExprEnv,
  type ExprFunction,
} from "./expr.js";
export {
  NODE_ENV,
  COMMON_FUNCTIONS,
  compileCompound,
  parseCompoundFilter,
  matchCompound,
} from "./compound.js";
export { parseSemVer, compareSemVer, compileSemVerRange, semverSatisfies, type SemVer } from "./semver.js";
