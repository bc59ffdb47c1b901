/**
 * The registry of watcher types: type name => factory. One line per type so several
 * modules can be added without clashing edits.
 */
import type { WatcherFactory } from "../types.js";
import { execWatcher } from "./exec.js";
import { expressionWatcher } from "./expression.js";
import { fileWatcher } from "./file.js";
import { timerWatcher } from "./timer.js";
import { kvWatcher } from "./kv.js";
import { archiveWatcher } from "./archive.js";
import { machinesWatcher } from "./machines.js";
import { nagiosWatcher } from "./nagios.js";
import { metricWatcher } from "./metric.js";
import { scheduleWatcher } from "./schedule.js";

export const WATCHER_TYPES: Record<string, WatcherFactory> = {
  exec: execWatcher,
  expression: expressionWatcher,
  file: fileWatcher,
  timer: timerWatcher,
  kv: kvWatcher,
  archive: archiveWatcher,
  machines: machinesWatcher,
  plugins: machinesWatcher,
  nagios: nagiosWatcher,
  metric: metricWatcher,
  schedule: scheduleWatcher,
};
