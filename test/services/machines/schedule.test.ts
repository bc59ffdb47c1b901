import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { silentLogger } from "../../../src/core/util/index.js";
import { Machine } from "../../../src/services/machines/machine.js";
import type {
  TransitionEventData,
  Watcher,
  WatcherDef,
  WatcherHost,
} from "../../../src/services/machines/types.js";
import { scheduleWatcher } from "../../../src/services/machines/watchers/schedule.js";

let dir: string;
const cleanup: (() => unknown)[] = [];
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "chorus-schedule-"));
});
afterEach(async () => {
  for (const c of cleanup.splice(0)) await c();
  rmSync(dir, { recursive: true, force: true });
});

const def = (properties: Record<string, unknown>): WatcherDef => ({
  name: "window",
  type: "schedule",
  success_transition: "open",
  fail_transition: "close",
  properties,
});

function handHost() {
  const calls: string[] = [];
  const host: WatcherHost = {
    machineName: "m",
    machineVersion: "1.0.0",
    directory: dir,
    services: { identity: "n" },
    state: () => "x",
    data: () => ({}),
    dataPut: () => undefined,
    dataDelete: () => undefined,
    success: () => calls.push("success"),
    fail: () => calls.push("fail"),
    fire: () => undefined,
    announce: () => undefined,
    log: silentLogger,
  };
  return { host, calls };
}

function watch(w: Watcher): Watcher {
  cleanup.push(() => w.close?.());
  return w;
}

describe("schedule watcher", () => {
  it("opens a window on schedule and closes it after the duration (real machine)", async () => {
    const m = new Machine({
      manifest: {
        name: "backups",
        version: "1.0.0",
        initial_state: "idle",
        transitions: [
          { name: "open", from: ["idle"], destination: "running" },
          { name: "close", from: ["running"], destination: "idle" },
        ],
        watchers: [def({ schedules: ["*/3 * * * * *"], duration: "1s" })],
      },
      directory: dir,
      services: { identity: "n" },
      splayMs: 0,
    });
    const events: TransitionEventData[] = [];
    m.onTransition((e) => events.push(e));
    cleanup.push(() => m.stop());
    m.start();
    expect(m.watcherSnapshots()[0]!.state).toEqual({ state: "unknown" });
    await expect.poll(() => m.state(), { timeout: 4000, interval: 50 }).toBe("running");
    const opened = Date.now();
    expect(m.watcherSnapshots()[0]!.state).toEqual({ state: "on" });
    await expect.poll(() => m.state(), { timeout: 3000, interval: 50 }).toBe("idle");
    const openFor = Date.now() - opened;
    expect(openFor).toBeGreaterThan(500);
    expect(openFor).toBeLessThan(2500);
    expect(events.map((e) => `${e.transition}:${e.to_state}`)).toEqual(["open:running", "close:idle"]);
    expect(m.watcherSnapshots()[0]!.state).toEqual({ state: "off" });
  });

  it("fires again on re-entering during an open window unless skip_trigger_on_reenter", async () => {
    for (const [skip, expected] of [
      [false, ["success", "success"]],
      [true, ["success"]],
    ] as const) {
      const { host, calls } = handHost();
      // a window every second lasting 1.5s: always on once the first opened
      const w = watch(
        scheduleWatcher(
          def({ schedules: ["* * * * * *"], duration: "1500ms", skip_trigger_on_reenter: skip }),
          host,
          "w",
        ),
      );
      w.stateChanged!("a", true);
      await expect.poll(() => calls.length, { timeout: 2500, interval: 20 }).toBe(1);
      w.stateChanged!("elsewhere", false);
      w.stateChanged!("a", true);
      expect(calls).toEqual(expected);
      await w.close?.();
    }
  });

  it("does nothing while the machine is in a state it does not match", async () => {
    const { host, calls } = handHost();
    const w = watch(scheduleWatcher(def({ schedules: ["* * * * * *"], duration: "1s" }), host, "w"));
    w.stateChanged!("other", false);
    await expect.poll(() => w.snapshot().state, { timeout: 2500, interval: 20 }).toBe("on");
    expect(calls).toEqual([]);
  });

  it.each([
    [{ duration: "1m" }, "w.properties.schedules: at least one schedule is required"],
    [
      { schedules: ["* * * * *", "bogus"], duration: "1m" },
      'w.properties.schedules[1]: invalid cron schedule "bogus"',
    ],
    [{ schedules: ["* * * * *"], duration: "1m", start_splay: "45s" }, "w.properties.start_splay:"],
    [{ schedules: "* * * * *", duration: "1m" }, "w.properties.schedules: must be a list of strings"],
  ])("refuses %j naming the key", (props, msg) => {
    expect(() => scheduleWatcher(def(props), handHost().host, "w")).toThrow(msg);
  });

  it("accepts Choria's 5-field schedules", () => {
    const w = watch(
      scheduleWatcher(def({ schedules: ["0 2 * * 1-5"], duration: "1h" }), handHost().host, "w"),
    );
    expect(w.snapshot()).toEqual({ state: "unknown" });
  });
});
