import { MachineError } from "../errors.js";
import type { Watcher, WatcherFactory } from "../types.js";
import { WatcherProps } from "./properties.js";

/**
 * `timer`: starts when the machine enters a state the watcher is active in (restarts on
 * every such state change), cancelled by leaving; when it runs out it fires the
 * fail_transition, as go-choria's does (which refuses a success_transition).
 */
export const timerWatcher: WatcherFactory = (def, host, path) => {
  const p = new WatcherProps(def, path, ["timer", "splay"]);
  if (!p.has("timer")) throw p.error("timer", "is required");
  if (def.success_transition) {
    throw new MachineError(
      "bad_watcher",
      `${path}.success_transition: a timer watcher only fires its fail_transition`,
    );
  }
  // go-choria's floor is one second
  let timerMs = Math.max(1000, p.duration("timer", 0));
  // splay picks one random length, once, so a fleet of machines spreads out
  if (p.bool("splay")) timerMs = Math.floor(Math.random() * timerMs);
  let handle: NodeJS.Timeout | undefined;
  let expires = 0;

  const stopTimer = (): void => {
    if (handle === undefined) return;
    clearTimeout(handle);
    handle = undefined;
    host.announce();
  };

  const w: Watcher = {
    def,
    type: "timer",
    stateChanged(_state, active) {
      if (!active) {
        stopTimer();
        return;
      }
      clearTimeout(handle);
      expires = Date.now() + timerMs;
      handle = setTimeout(() => {
        handle = undefined;
        host.announce();
        host.fail("timer expired");
      }, timerMs);
      host.announce();
    },
    snapshot: () => ({
      state: handle !== undefined ? "running" : "stopped",
      // go-choria reports the configured length as a Go duration (nanoseconds)
      timer: timerMs * 1e6,
      ...(handle !== undefined ? { remaining_ms: Math.max(0, expires - Date.now()) } : {}),
    }),
    close() {
      clearTimeout(handle);
      handle = undefined;
    },
  };
  return w;
};
