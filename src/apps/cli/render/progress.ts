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
