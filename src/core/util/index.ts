// core/util: small helpers every tier uses; it imports no other Chorus module.
export { sleep, backoffDelay, Backoff, type BackoffOptions } from "./time.js";
export { silentLogger, lineLogger, logLine, type Logger, type LogFields, type LogLevel } from "./log.js";
export {
  promClient,
  MetricsEndpoint,
  ServedMetrics,
  METRICS_PATHS,
  type MetricsEndpointOptions,
} from "./metrics.js";
export {
  WorkerPool,
  serveWorkerPool,
  packBuffers,
  unpackBuffers,
  type WorkerPoolOptions,
  type BatchAnswer,
  type PackedBuffers,
} from "./pool.js";
export { CHORUS_VERSION } from "./version.js";
export { readTokenFile, writeFileAtomicSync, type AtomicWriteOptions } from "./files.js";
export { shellSplit } from "./words.js";
