export * from "./errors.js";
export * from "./keys.js";
export * from "./tokens.js";
export * from "./provider.js";
