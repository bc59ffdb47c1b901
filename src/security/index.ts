export * from "./errors.js";
export * from "./keys.js";
export * from "./tokens.js";
export * from "./provider.js";
export * from "./nkeys.js";
export * from "./nats.js";
export * from "./x509.js";
