/**
 * Autonomous agents (Choria's "machines"): the engine, its watchers and the helpers hosts use.
 * One export line per module so helpers adding modules do not clash.
 */
export * from "./types.js";
export { MachineError, type MachineErrorCode } from "./errors.js";
export { parseGoDuration } from "./duration.js";
export { parseManifest, loadManifestFile, validateManifest, MIN_INTERVAL_MS } from "./manifest.js";
export { machineGraph } from "./graph.js";
export { WATCHER_TYPES } from "./watchers/index.js";
export { Machine, MACHINE_DATA_FILE, type MachineOptions } from "./machine.js";
export { WatcherProps } from "./watchers/properties.js";
export { MachineManager, type MachineManagerOptions } from "./manager.js";
export {
  MACHINE_TRANSITION_SUBJECT,
  watcherStateSubject,
  transitionCloudEvent,
  watcherStateCloudEvent,
  watcherStateProtocol,
  TRANSITION_PROTOCOL,
  type MachineCloudEvent,
} from "./events.js";
export { streamsMachineKv, streamsMachineGovernor, type StreamsGovernorOptions } from "./kv-adapter.js";
export {
  signMachineSpec,
  verifyMachineSpec,
  machineSpecPublicKey,
  machineMatches,
  MAX_SPEC_BYTES,
  type ManagedMachine,
} from "./spec.js";
export { ensureArchive, type ArchiveSpec, type ArchiveResult } from "./watchers/archive.js";
export {
  SCOUT_CHECK_STATES,
  SCOUT_FORCE_CHECK,
  SCOUT_MAINTENANCE,
  SCOUT_RESUME,
  SCOUT_ACTION_TRANSITIONS,
  SCOUT_CHECK_MARKER,
  validateScoutCheck,
  scoutCheckManifest,
  isScoutMachine,
  scoutCheckState,
  scoutCheckWire,
  scoutTransition,
  scoutTransitionChecks,
  loadScoutChecks,
  materializeScoutChecks,
  type ScoutAction,
  type ScoutCheckDefinition,
  type ScoutCheckState,
  type ScoutCheckWire,
  type ScoutTransitionResult,
} from "./scout.js";
export {
  parsePerfData,
  parseNagiosOutput,
  nagiosStatusOf,
  checkChoriaStatus,
  NAGIOS_STATUSES,
  NAGIOS_HISTORY,
  type NagiosStatus,
  type NagiosExecution,
  type PerfData,
} from "./watchers/nagios.js";
export { parseMetricOutput, type MetricResult } from "./watchers/metric.js";
