export { Emulator, EmulatorError, type EmulatorOptions } from "./emulator.js";
export { emulatedFacts, emulatedIdentity } from "./facts.js";
