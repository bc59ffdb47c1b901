/**
 * The `schedule` watcher: cron schedules open windows of `duration`. While any window is
 * open the watcher is "on"; when the last one closes it is "off". It fires its
 * success_transition when it turns on and its fail_transition when it turns off (go-choria's
 * schedulewatcher). Overlapping windows keep it on until the last closes.
 *
 * As in go-choria: when the machine is in a state the watcher does not match, nothing fires;
 * coming back into a matching state fires again for the current window state (so a machine
 * re-entering during an open window is told "on" again) unless `skip_trigger_on_reenter`
 * is set and this window already fired. `start_splay` delays each window's start by a
 * random amount up to it (at most half the duration); the window still ends on time.
 *
 * Schedules are 5-field cron (minute precision, as Choria); 6-field with leading seconds
 * and croner's @hourly-style nicknames are accepted too.
 */
import { Cron } from "croner";
import type { Watcher, WatcherDef, WatcherFactory, WatcherHost } from "../types.js";
import { WatcherProps } from "./properties.js";

type WindowState = "unknown" | "off" | "on";

const SCHEDULE_PROPERTIES = ["schedules", "duration", "start_splay", "skip_trigger_on_reenter"] as const;

class ScheduleWatcher implements Watcher {
  readonly type = "schedule";
  private readonly specs: string[];
  private readonly durationMs: number;
  private readonly splayMs: number;
  private readonly skipOnReenter: boolean;
  private crons: Cron[] = [];
  private readonly timers = new Set<NodeJS.Timeout>();
  /** open windows; on while above 0 */
  private open = 0;
  private state: WindowState = "unknown";
  /** the state last acted upon; "skipped" while the machine is in a non-matching state */
  private previous: WindowState | "skipped" = "unknown";
  private triggered = false;
  private active = false;
  private started = false;
  private closed = false;

  constructor(
    readonly def: WatcherDef,
    private readonly host: WatcherHost,
    path: string,
  ) {
    const p = new WatcherProps(def, path, SCHEDULE_PROPERTIES);
    this.specs = p.stringList("schedules");
    if (this.specs.length === 0) throw p.error("schedules", "at least one schedule is required");
    this.specs.forEach((spec, i) => {
      try {
        // paused: only parse now; the real jobs start with the machine
        new Cron(spec, { paused: true }).stop();
      } catch (err) {
        throw p.error(`schedules[${i}]`, `invalid cron schedule "${spec}": ${(err as Error).message}`);
      }
    });
    const d = p.duration("duration", 0);
    // go-choria's default for a missing or sub-second duration
    this.durationMs = d < 1000 ? 60_000 : d;
    this.splayMs = p.duration("start_splay", 0);
    if (this.splayMs > this.durationMs / 2)
      throw p.error("start_splay", `${this.splayMs}ms is more than half the duration (${this.durationMs}ms)`);
    this.skipOnReenter = p.bool("skip_trigger_on_reenter");
  }

  stateChanged(_state: string, active: boolean): void {
    if (this.closed) return;
    if (!this.started) this.start();
    this.active = active;
    this.evaluate();
  }

  private start(): void {
    this.started = true;
    this.crons = this.specs.map(
      (spec) => new Cron(spec, { unref: true, protect: false }, () => this.fired(spec)),
    );
  }

  private fired(spec: string): void {
    if (this.closed) return;
    const sleep = this.splayMs > 0 ? Math.floor(Math.random() * this.splayMs) : 0;
    this.after(sleep, () => {
      this.host.log.info(
        { machine: this.host.machineName, watcher: this.def.name },
        `schedule ${spec} starting`,
      );
      this.open++;
      this.state = "on";
      this.evaluate();
      this.after(this.durationMs - sleep, () => {
        this.host.log.info(
          { machine: this.host.machineName, watcher: this.def.name },
          `schedule ${spec} ending`,
        );
        this.open = Math.max(0, this.open - 1);
        if (this.open === 0) this.state = "off";
        this.evaluate();
      });
    });
  }

  private after(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (!this.closed) fn();
    }, ms);
    t.unref();
    this.timers.add(t);
  }

  /** go-choria's watch(): act when the window state differs from the one last acted upon. */
  private evaluate(): void {
    if (!this.active) {
      this.previous = "skipped";
      return;
    }
    if (this.previous === this.state) return;
    this.previous = this.state;
    if (this.state === "on") {
      if (this.skipOnReenter && this.triggered) return;
      this.triggered = true;
      this.host.announce();
      this.host.success(`${this.def.name}: schedule window open`);
    } else {
      this.triggered = false;
      this.host.announce();
      this.host.fail(`${this.def.name}: schedule window ${this.state === "off" ? "closed" : "not open"}`);
    }
  }

  snapshot(): Record<string, unknown> {
    return { state: this.state };
  }

  close(): void {
    this.closed = true;
    for (const c of this.crons) c.stop();
    this.crons = [];
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }
}

export const scheduleWatcher: WatcherFactory = (def, host, path) => new ScheduleWatcher(def, host, path);
