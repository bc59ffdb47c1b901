// A WorkerPool entry for test/core/util/pool.test.ts: upper-cases each item, and
// misbehaves on request ("stall:MS" blocks the thread, "exit" ends it, "throw" throws).
import { threadId } from "node:worker_threads";
import { serveWorkerPool } from "../../../dist/core/util/index.js";

export function run(data) {
  serveWorkerPool((items) => {
    const out = [];
    for (const b of items) {
      const text = b.toString("utf8");
      if (text.startsWith("stall:"))
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Number(text.slice(6)));
      if (text === "exit") process.exit(3);
      if (text === "throw") throw new Error("thrown on purpose");
      out.push(`${data.prefix}${text.toUpperCase()}`);
    }
    return { answer: { thread: threadId, out } };
  });
}
