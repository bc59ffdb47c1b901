import { describe, expect, it, vi } from "vitest";
import { pino } from "pino";
import { Writable } from "node:stream";
import {
  Backoff,
  backoffDelay,
  lineLogger,
  logLine,
  MetricsEndpoint,
  promClient,
  shellSplit,
  silentLogger,
  sleep,
  type Logger,
} from "../../../src/core/util/index.js";

describe("sleep", () => {
  it("waits, and an abort ends the wait early", async () => {
    const t0 = Date.now();
    await sleep(30);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(25);
    const ac = new AbortController();
    const t1 = Date.now();
    setTimeout(() => ac.abort(), 10);
    await sleep(10_000, ac.signal);
    expect(Date.now() - t1).toBeLessThan(1000);
    await sleep(10_000, ac.signal); // already aborted: at once
    expect(Date.now() - t1).toBeLessThan(1000);
  });
});

describe("backoff", () => {
  it("doubles from initialMs up to maxMs and starts over after reset()", () => {
    const b = new Backoff({ initialMs: 250, maxMs: 1000 });
    expect([b.next(), b.next(), b.next(), b.next()]).toEqual([250, 500, 1000, 1000]);
    b.reset();
    expect(b.next()).toBe(250);
    expect(backoffDelay(3, { initialMs: 100, maxMs: 10_000, factor: 3 })).toBe(900);
    expect(backoffDelay(500, { initialMs: 100, maxMs: 10_000 })).toBe(10_000);
  });

  it("jitters within the given fraction", () => {
    vi.spyOn(Math, "random").mockReturnValueOnce(0).mockReturnValueOnce(0.999999);
    expect(backoffDelay(2, { initialMs: 500, maxMs: 5000, jitter: 0.2 })).toBe(800);
    expect(backoffDelay(2, { initialMs: 500, maxMs: 5000, jitter: 0.2 })).toBe(1200);
    vi.restoreAllMocks();
  });
});

describe("Logger", () => {
  it("is what pino's Logger (and a child) is", () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(chunk.toString());
        cb();
      },
    });
    const p = pino({ level: "debug" }, sink);
    const log: Logger = p.child({ component: "t" });
    log.info("plain");
    log.warn({ n: 1 }, "with fields");
    expect(lines.map((l) => JSON.parse(l) as Record<string, unknown>)).toMatchObject([
      { level: 30, msg: "plain", component: "t" },
      { level: 40, msg: "with fields", n: 1 },
    ]);
    silentLogger.error({ a: 1 }, "nothing");
  });

  it("lineLogger turns calls into one text line per entry", () => {
    const got: string[] = [];
    const log = lineLogger((level, line) => got.push(`${level} ${line}`));
    log.info("hello");
    log.error({ file: "a.conf", err: new Error("boom"), n: 2 }, "cannot load");
    expect(got).toEqual(["info hello", "error cannot load file=a.conf err=boom n=2"]);
    expect(logLine({ alone: true })).toBe("alone=true");
  });
});

describe("MetricsEndpoint", () => {
  it("serves a registry at /metrics and /choria/metrics on a free port, 404 elsewhere", async () => {
    const { Registry, Counter } = promClient();
    const registry = new Registry();
    new Counter({ name: "t_total", help: "a test counter", registers: [registry] }).inc(3);
    const ep = new MetricsEndpoint({ port: 0, registry });
    await ep.start();
    try {
      expect(ep.port).toBeGreaterThan(0);
      for (const path of ["/metrics", "/choria/metrics?x=1"]) {
        const res = await fetch(`http://127.0.0.1:${ep.port}${path}`);
        expect(res.status).toBe(200);
        expect(res.headers.get("content-type")).toBe(registry.contentType);
        expect(await res.text()).toContain("t_total 3");
      }
      expect((await fetch(`http://127.0.0.1:${ep.port}/other`)).status).toBe(404);
      // a port in use is the listen error, for the caller to word
      const clash = new MetricsEndpoint({ port: ep.port, registry });
      await expect(clash.start()).rejects.toThrow(/EADDRINUSE/);
    } finally {
      await ep.stop();
    }
    await ep.stop(); // twice is fine
  });

  it("serves what a subclass's render() makes, 500 when it fails, and words listen errors", async () => {
    let fail = false;
    class Custom extends MetricsEndpoint {
      override async render(): Promise<string> {
        if (fail) throw new Error("monitor away");
        return "custom 1\n";
      }
    }
    const registry = new (promClient().Registry)();
    const ep = new Custom({
      port: 0,
      registry,
      listenError: (err) => new Error(`stats port: ${err.message}`),
    });
    await ep.start();
    await expect(
      new MetricsEndpoint({
        port: ep.port,
        registry,
        listenError: (err) => new Error(`stats port: ${err.message}`),
      }).start(),
    ).rejects.toThrow(/^stats port: .*EADDRINUSE/);
    try {
      expect(await (await fetch(`http://127.0.0.1:${ep.port}/metrics`)).text()).toBe("custom 1\n");
      fail = true;
      const res = await fetch(`http://127.0.0.1:${ep.port}/metrics`);
      expect(res.status).toBe(500);
      expect(await res.text()).toBe("monitor away\n");
    } finally {
      await ep.stop();
    }
  });
});

describe("shellSplit", () => {
  it("splits a command line like a shell, without expansion", () => {
    expect(shellSplit(`a "b c" 'd $e' f\\ g "h\\"i"`)).toEqual(["a", "b c", "d $e", "f g", 'h"i']);
    expect(shellSplit("  ")).toEqual([]);
    expect(shellSplit(`x ""`)).toEqual(["x", ""]);
    // inside double quotes only \" and \\ are escapes, as in a POSIX shell
    expect(shellSplit(`"a\\b"`)).toEqual(["a\\b"]);
    expect(() => shellSplit("'open")).toThrow("unterminated ' quote");
  });
});
