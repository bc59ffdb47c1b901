export {
  Emulator,
  EmulatorError,
  type EmulatorOptions,
  type EmulatorProvisioningOptions,
  type EmulatorShardStats,
} from "./emulator.js";
export { emulatedFacts, emulatedIdentity } from "./facts.js";
export {
  PROVISIONING_COLLECTIVE,
  PROVISION_COMPONENT,
  type ProvisioningSpec,
  type ProvisioningStats,
} from "./provisioning.js";
export { MemoryStore, type ProvisionStore } from "./store.js";
export { EmulatedJobs, type EmulatedJobsStats } from "./jobs.js";
export {
  EmulatedMachineHost,
  EmulatedMachines,
  emulatedScoutCheck,
  type EmulatedMachinesStats,
  type EmulatorMachinesSpec,
} from "./machines.js";
