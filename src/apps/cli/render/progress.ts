import { SingleBar } from "cli-progress";

export interface Progress {
  start(total: number): void;
  tick(): void;
  stop(): void;
}

const none: Progress = { start() {}, tick() {}, stop() {} };

/**
 * A reply progress bar on a terminal, nothing otherwise: it goes to stderr and is
 * cleared when done, so piped or captured output never sees it.
 */
export function replyProgress(stream: NodeJS.WriteStream = process.stderr, enabled = true): Progress {
  if (!enabled || !stream.isTTY) return none;
  const bar = new SingleBar({
    stream,
    format: "{bar} {value} / {total} replies",
    clearOnComplete: true,
    hideCursor: true,
    fps: 10,
  });
  let started = false;
  return {
    start(total) {
      if (total === 0) return;
      bar.start(total, 0);
      started = true;
    },
    tick() {
      if (started) bar.increment();
    },
    stop() {
      if (started) bar.stop();
      started = false;
    },
  };
}

export interface CountProgress {
  /** sets the bar to `value` of `total` with the ok and failed counts */
  update(value: number, total: number, counts: { ok: number; failed: number }): void;
  stop(): void;
}

/**
 * A bar of replies counted elsewhere (an asynchronous request's stored replies): set,
 * not ticked, with ok and failed beside it. On a terminal only, like replyProgress.
 */
export function countProgress(stream: NodeJS.WriteStream = process.stderr, enabled = true): CountProgress {
  if (!enabled || !stream.isTTY) return { update() {}, stop() {} };
  const bar = new SingleBar({
    stream,
    format: "{bar} {value} / {total} replies, {ok} ok, {failed} failed",
    clearOnComplete: false,
    hideCursor: true,
    fps: 10,
  });
  let started = false;
  return {
    update(value, total, counts) {
      if (!started) bar.start(total, value, counts);
      else {
        bar.setTotal(total);
        bar.update(value, counts);
      }
      started = true;
    },
    stop() {
      if (started) bar.stop();
      started = false;
    },
  };
}
