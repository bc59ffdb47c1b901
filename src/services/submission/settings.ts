import { hostname } from "node:os";
import { dirname, isAbsolute, resolve } from "node:path";
import type { Config } from "../../core/config/index.js";
import { SPOOL_DEFAULTS } from "./spool.js";

/** Spool settings from a server config (Choria key names plus Chorus' disk floor). */
export interface SubmissionSettings {
  /** plugin.choria.submission.spool; unset = no spool */
  spool?: string;
  /** plugin.choria.submission.max_spool_size: messages per priority */
  maxSpoolSize: number;
  /** plugin.choria.submission.min_free_disk (Chorus-only): refuse below this many free bytes */
  minFreeBytes: number;
  identity: string;
  mainCollective: string;
}

const UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
};

/** "64MB", "1g", "500000" (bytes) -> bytes; undefined when not a size. */
export function parseSize(v: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(v);
  const unit = UNITS[(m?.[2] ?? "").toLowerCase()];
  if (!m || unit === undefined) return undefined;
  return Math.round(Number(m[1]) * unit);
}

export function submissionSettings(cfg: Config): SubmissionSettings {
  const spoolKey = "plugin.choria.submission.spool";
  const raw = cfg.get(spoolKey);
  const spool =
    raw === undefined || raw.trim() === ""
      ? undefined
      : isAbsolute(raw)
        ? raw
        : resolve(dirname(resolve(cfg.file)), raw);
  const sizeKey = "plugin.choria.submission.max_spool_size";
  const maxSpoolSize = cfg.int(sizeKey, SPOOL_DEFAULTS.maxSpoolSize);
  if (maxSpoolSize < 1) throw cfg.error(sizeKey, `${sizeKey} must be at least 1`);
  const freeKey = "plugin.choria.submission.min_free_disk";
  const freeRaw = cfg.get(freeKey);
  const minFreeBytes = freeRaw === undefined ? SPOOL_DEFAULTS.minFreeBytes : parseSize(freeRaw);
  if (minFreeBytes === undefined)
    throw cfg.error(freeKey, `${freeKey}: "${freeRaw}" is not a size (e.g. 64MB)`);
  const collectives = cfg.list("collectives", ["mcollective"]);
  return {
    ...(spool !== undefined && { spool }),
    maxSpoolSize,
    minFreeBytes,
    identity: cfg.string("identity", hostname()),
    mainCollective: cfg.string("main_collective", collectives[0] ?? "mcollective"),
  };
}
