import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import type * as util from "../../../src/core/util/index.js";
import type { WorkerPoolOptions } from "../../../src/core/util/index.js";

// Worker threads load built JS: the fixture worker imports dist/core/util (npm run build).
const builtUtil = new URL("../../../dist/core/util/index.js", import.meta.url);
const WORKER = new URL("./pool-worker.mjs", import.meta.url).href;

interface Out {
  text: string;
  /** the worker thread's id, 0 when done inline */
  thread: number;
}

const upper = (b: Uint8Array): Out => ({ text: `>${Buffer.from(b).toString().toUpperCase()}`, thread: 0 });
const results = (answer: unknown): Out[] => {
  const a = answer as { thread: number; out: string[] };
  return a.out.map((text) => ({ text, thread: a.thread }));
};

async function until(what: string, cond: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe.skipIf(!existsSync(fileURLToPath(builtUtil)))("WorkerPool", () => {
  const pools: util.WorkerPool<Out>[] = [];
  afterEach(async () => {
    await Promise.all(pools.splice(0).map((p) => p.close()));
  });

  async function pool(o: Partial<WorkerPoolOptions<Out>> = {}) {
    const { WorkerPool } = (await import(builtUtil.href)) as typeof util;
    const p = new WorkerPool<Out>({
      url: WORKER,
      entry: "run",
      workerData: { prefix: ">" },
      size: 2,
      inline: upper,
      results,
      ...o,
    });
    pools.push(p);
    return p;
  }

  /** Submits every item, then waits until all are back; results in callback order. */
  async function run(p: util.WorkerPool<Out>, items: string[]): Promise<{ i: number; out: Out }[]> {
    const got: { i: number; out: Out }[] = [];
    items.forEach((s, i) => p.submit(Buffer.from(s), (out) => got.push({ i, out })));
    await p.idle();
    return got;
  }

  it("does the work in worker threads, with the same results as inline, and says when it is ready", async () => {
    const p = await pool({ ordered: true });
    await until("ready", () => p.ready === 2);
    const items = Array.from({ length: 1000 }, (_, i) => `item ${i}`);
    const got = await run(p, items);
    expect(got.map((g) => g.i)).toEqual(items.map((_, i) => i));
    expect(got.map((g) => g.out.text)).toEqual(items.map((s) => upper(Buffer.from(s)).text));
    expect(got.every((g) => g.out.thread > 0)).toBe(true);
    expect(p.byWorkers).toBe(1000);
    expect(p.inFlight).toBe(0);
  });

  it("keeps submission order when ordered, however slow one worker is", async () => {
    const p = await pool({ ordered: true, batch: 2 });
    await until("ready", () => p.ready === 2);
    // the first batch goes to one worker, which sits on it; the rest are answered first
    const got = await run(p, ["stall:300", "a", "b", "c", "d", "e"]);
    expect(got.map((g) => g.i)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(new Set(got.map((g) => g.out.thread)).size).toBe(2);
  });

  it("routes by key: the same key always goes to the same worker", async () => {
    const p = await pool({ route: (b, n) => (b[0] as number) % n });
    await until("ready", () => p.ready === 2);
    const items = Array.from({ length: 300 }, (_, i) => `${"ab"[i % 2]}${i}`);
    const got = await run(p, items);
    expect(got).toHaveLength(300);
    const threadOf = new Map<string, Set<number>>();
    for (const g of got) {
      const key = (items[g.i] as string)[0] as string;
      threadOf.set(key, (threadOf.get(key) ?? new Set()).add(g.out.thread));
      expect(g.out.text).toBe(upper(Buffer.from(items[g.i] as string)).text);
    }
    expect([...threadOf.values()].map((s) => s.size)).toEqual([1, 1]);
    expect(threadOf.get("a")).not.toEqual(threadOf.get("b"));
  });

  it("does a crashed worker's items inline, loses none, reports it and replaces the worker", async () => {
    const failures: [string, number, boolean][] = [];
    const p = await pool({ ordered: true, onFailure: (...f) => failures.push(f) });
    await until("ready", () => p.ready === 2);
    const got = await run(p, ["x", "exit", "y"]);
    expect(got.map((g) => g.out.text)).toEqual([">X", ">EXIT", ">Y"]);
    expect(failures).toEqual([["worker exited (code 3)", 3, false]]);
    expect(p.byWorkers).toBe(0);
    await until("replaced", () => p.ready === 2);
    const again = await run(p, ["z"]);
    expect(again[0]?.out.thread).toBeGreaterThan(0);
  });

  it("does the items of a worker that throws inline", async () => {
    const failures: string[] = [];
    const p = await pool({ onFailure: (why) => failures.push(why) });
    const got = await run(p, ["throw", "q"]);
    expect(got.map((g) => g.out.text).sort()).toEqual([">Q", ">THROW"]);
    expect(failures).toEqual(["worker error: thrown on purpose"]);
  });

  it("gives up on a ready worker that makes no progress", async () => {
    const failures: string[] = [];
    const p = await pool({ stallMs: 200, onFailure: (why) => failures.push(why) });
    await until("ready", () => p.ready === 2);
    const t0 = Date.now();
    const got = await run(p, ["stall:20000", "w"]);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(got.map((g) => g.out.text)).toEqual([">STALL:20000", ">W"]);
    expect(failures).toHaveLength(1);
    expect(failures[0]).toMatch(/^no progress for \d+\.\d s$/);
  });

  it("stops using threads after maxFailures and does everything inline", async () => {
    const failures: boolean[] = [];
    const p = await pool({ maxFailures: 2, onFailure: (_why, _n, disabled) => failures.push(disabled) });
    await run(p, ["exit"]);
    await until("replaced", () => p.ready === 2);
    await run(p, ["exit"]);
    expect(failures).toEqual([false, true]);
    expect(p.disabled).toBe(true);
    expect(p.size).toBe(0);
    const got = await run(p, ["late"]);
    expect(got[0]?.out).toEqual({ text: ">LATE", thread: 0 });
  });

  it("falls back to inline when the worker module cannot be loaded", async () => {
    const failures: boolean[] = [];
    const p = await pool({
      url: new URL("./no-such-worker.mjs", import.meta.url).href,
      onFailure: (_why, _n, disabled) => failures.push(disabled),
    });
    const got = await run(p, ["a", "b"]);
    expect(got.map((g) => g.out.text)).toEqual([">A", ">B"]);
    await until("disabled", () => p.disabled);
    expect(failures.at(-1)).toBe(true);
  });

  it("close() does what the workers still held inline", async () => {
    const p = await pool({ ordered: true });
    await until("ready", () => p.ready === 2);
    const got: string[] = [];
    p.submit(Buffer.from("stall:20000"), (o) => got.push(o.text));
    p.submit(Buffer.from("v"), (o) => got.push(o.text));
    await new Promise((r) => setTimeout(r, 50));
    await p.close();
    expect(got).toEqual([">STALL:20000", ">V"]);
    pools.splice(pools.indexOf(p), 1);
  });
});

describe("packBuffers", () => {
  it("packs bytes and strings into one buffer and unpacks them as views", async () => {
    const { packBuffers, unpackBuffers } = await import("../../../src/core/util/index.js");
    const p = packBuffers([Buffer.from("ab"), "çé", new Uint8Array(0), Buffer.from("xyz").subarray(1)]);
    expect(p.ends).toEqual([2, 6, 6, 8]);
    expect(unpackBuffers(p).map((b) => b.toString())).toEqual(["ab", "çé", "", "yz"]);
    expect(unpackBuffers(p)[0]?.buffer).toBe(p.buf);
  });
});
