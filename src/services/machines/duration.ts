import { parseDuration } from "../../core/config/index.js";
import { MachineError } from "./errors.js";

/**
 * A Go duration ("10s", "5m", "1h30m", "500ms") in milliseconds. The manifest schema only
 * shows `^\d+[hms]$`, but go-choria parses these with Go's own parser, so machines in the
 * wild use every form Go accepts. Throws MachineError naming `path`.
 */
export function parseGoDuration(
  s: string,
  path: string,
  code: "bad_manifest" | "bad_watcher" = "bad_manifest",
): number {
  if (typeof s !== "string") {
    throw new MachineError(
      code,
      `${path}: expected a duration string such as "10s", got ${JSON.stringify(s)}`,
    );
  }
  const text = s.trim();
  if (text === "0") return 0;
  // Go wants a unit on every number; the config parser also takes a bare number as seconds
  const ms = /^\d+(\.\d+)?$/.test(text) ? undefined : parseDuration(text);
  if (ms === undefined || !Number.isFinite(ms)) {
    throw new MachineError(
      code,
      `${path}: invalid duration ${JSON.stringify(s)} (use a Go duration such as "10s", "5m", "1h")`,
    );
  }
  return Math.round(ms);
}
