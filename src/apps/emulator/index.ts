export { Emulator, EmulatorError, type EmulatorOptions, type EmulatorShardStats } from "./emulator.js";
export { emulatedFacts, emulatedIdentity } from "./facts.js";
