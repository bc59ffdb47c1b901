export { DataError, type DataDdl, type DataOutput, type DataPlugin } from "./types.js";
export { DataRegistry } from "./registry.js";
export { choriaPlugin, fstatPlugin, sysctlPlugin, type ChoriaRuntime } from "./builtins.js";
