/** Structured fields of a log entry (pino puts them in the JSON line). */
export type LogFields = Record<string, unknown>;

export type LogLevel = "debug" | "info" | "warn" | "error";

/**
 * The one logger shape Chorus modules take: pino's calling convention, a message or
 * fields then a message. A pino Logger (or child) fits as it is; so does a fake whose
 * methods take just a message, as long as the code it is given to logs messages only.
 */
export interface Logger {
  debug(fieldsOrMsg: LogFields | string, msg?: string): void;
  info(fieldsOrMsg: LogFields | string, msg?: string): void;
  warn(fieldsOrMsg: LogFields | string, msg?: string): void;
  error(fieldsOrMsg: LogFields | string, msg?: string): void;
}

/** Logs nothing: the default of modules whose caller gave no logger. */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** One text line for a log call: the message, then the fields as key=value. */
export function logLine(fieldsOrMsg: LogFields | string, msg?: string): string {
  if (typeof fieldsOrMsg === "string") return fieldsOrMsg;
  const fields = Object.entries(fieldsOrMsg).map(
    ([k, v]) => `${k}=${typeof v === "string" ? v : v instanceof Error ? v.message : JSON.stringify(v)}`,
  );
  return [msg ?? "", ...fields].filter((s) => s !== "").join(" ");
}

/** A Logger that hands each entry to `sink` as a level and one text line (stderr, a callback). */
export function lineLogger(sink: (level: LogLevel, line: string) => void): Logger {
  return {
    debug: (f, m) => sink("debug", logLine(f, m)),
    info: (f, m) => sink("info", logLine(f, m)),
    warn: (f, m) => sink("warn", logLine(f, m)),
    error: (f, m) => sink("error", logLine(f, m)),
  };
}
