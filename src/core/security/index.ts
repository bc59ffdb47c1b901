export * from "./errors.js";
export * from "./keys.js";
export * from "./tokens.js";
export * from "./provider.js";
export * from "./nkeys.js";
export * from "./nats.js";
export * from "./x509.js";
export {
  ed25519,
  ed25519Backends,
  type Ed25519Backend,
  type SigningKey,
  type VerifyingKey,
} from "./ed25519.js";
export * from "./provisioning.js";
export * from "./filesec.js";
