export {
  DDLError,
  actionNames,
  builtinDDL,
  builtinDDLNames,
  findAction,
  loadDDL,
  parseDDL,
  type ActionDDL,
  type AgentDDL,
  type AgentMetadata,
  type AggregateDDL,
  type InputDDL,
  type InputType,
  type OutputDDL,
} from "./ddl.js";
export {
  InputError,
  applyOutputDefaults,
  coerceInputs,
  formatIssues,
  validateInputs,
  type InputIssue,
} from "./inputs.js";
