import { stat } from "node:fs/promises";
import { isAbsolute, join } from "node:path";
import type { Watcher, WatcherFactory } from "../types.js";
import { WatcherProps } from "./properties.js";

type Outcome = "unknown" | "changed" | "unchanged" | "error";

/**
 * `file`: every interval (default 5s) and on entering an active state, checks a file: fires
 * success when it appeared or its modification time or size changed since the last check,
 * fail while it is missing. With gather_initial_state the first check only records the file.
 */
export const fileWatcher: WatcherFactory = (def, host, path) => {
  const p = new WatcherProps(def, path, [
    "path",
    "gather_initial_state",
    "contents",
    "owner",
    "group",
    "mode",
  ]);
  const rel = p.string("path", { required: true });
  const gatherInitial = p.bool("gather_initial_state");
  for (const k of ["contents", "owner", "group", "mode"]) {
    if (p.has(k)) throw p.error(k, "managing file contents is not supported by Chorus yet");
  }
  const file = (): string => (isAbsolute(rel) ? rel : join(host.directory, rel));
  let seen: { mtimeMs: number; size: number } | undefined;
  let initialised = !gatherInitial;
  let previous: Outcome = "unknown";

  const look = async (): Promise<{ mtimeMs: number; size: number } | Error> => {
    try {
      const s = await stat(file());
      return { mtimeMs: s.mtimeMs, size: s.size };
    } catch (err) {
      return err as Error;
    }
  };

  const w: Watcher = {
    def,
    type: "file",
    defaultIntervalMs: 5000,
    async run(signal) {
      const now = await look();
      if (signal.aborted) return;
      if (!initialised) {
        initialised = true;
        if (!(now instanceof Error)) seen = now;
      }
      if (now instanceof Error) {
        seen = undefined;
        previous = "error";
        host.announce();
        const missing = (now as NodeJS.ErrnoException).code === "ENOENT";
        host.fail(missing ? `${file()} does not exist` : `${file()}: ${now.message}`);
        return;
      }
      if (seen === undefined || now.mtimeMs > seen.mtimeMs || now.size !== seen.size) {
        seen = now;
        previous = "changed";
        host.announce();
        host.success(`${file()} changed`);
        return;
      }
      previous = "unchanged";
    },
    snapshot: () => ({ path: file(), previous_outcome: previous }),
  };
  return w;
};
