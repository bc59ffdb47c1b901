export {
  DataError,
  type DataDdl,
  type DataInput,
  type DataNode,
  type DataOutput,
  type DataPlugin,
} from "./types.js";
export { DataRegistry, defaultDataRegistry } from "./registry.js";
export {
  BUILTIN_DATA_PLUGINS,
  choriaPlugin,
  fstatPlugin,
  machineStatePlugin,
  scoutPlugin,
  sysctlPlugin,
} from "./builtins.js";
export { checkQuery, ddlTimeoutMs, parseDataDdl, readDataDdl } from "./ddl.js";
export {
  EXTERNAL_DATA_PROTOCOL,
  loadExternalDataPlugins,
  loadModuleDataPlugins,
  runExternalDataPlugin,
  type DataLoadProblem,
  type DataLoadResult,
} from "./loader.js";
