export { startUi, randomDevPassword, type UiOptions, type UiServer } from "./server.js";
export { FleetTable, FleetWatcher, type FleetTableOptions, type FleetWatcherOptions } from "./fleet.js";
export { LocalUsers, SessionStore, SESSION_COOKIE, sessionIdFrom, type Session } from "./auth.js";
export {
  AuditLog,
  AuditReader,
  DEFAULT_AUDIT_STREAM,
  auditEntryOf,
  type AuditPage,
  type AuditReaderOptions,
} from "./audit.js";
export type * from "./api-types.js";
