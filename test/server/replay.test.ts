import { describe, expect, it } from "vitest";
import { ReplayGuard } from "../../src/server/index.js";

describe("ReplayGuard", () => {
  it("lets each node run an id once, within its window, and forgets it after", () => {
    const g = new ReplayGuard();
    const a = g.slot();
    const b = g.slot();
    const now = 1_000_000;
    expect(g.check("r1", a, now + 60_000, now)).toBe("fresh");
    expect(g.check("r1", a, now + 60_000, now + 1)).toBe("replayed");
    // another node of the same process runs it once too
    expect(g.check("r1", b, now + 60_000, now + 2)).toBe("fresh");
    expect(g.check("r1", b, now + 60_000, now + 3)).toBe("replayed");
    // once the window has closed the id is gone (the TTL check refuses the request anyway)
    expect(g.stats.entries).toBe(1);
    expect(g.check("r2", a, now + 120_000, now + 60_001)).toBe("fresh");
    expect(g.stats.entries).toBe(1);
  });

  it("a re-signed copy with a longer window extends how long the id is remembered", () => {
    const g = new ReplayGuard();
    const a = g.slot();
    const b = g.slot();
    const now = 0;
    expect(g.check("r", a, 1000, now)).toBe("fresh");
    expect(g.check("r", b, 50_000, now)).toBe("fresh");
    expect(g.check("r", a, 50_000, 10_000)).toBe("replayed");
  });

  it("holds a bit per node: one id across 50 000 nodes costs kilobytes", () => {
    const g = new ReplayGuard();
    const slots = Array.from({ length: 50_000 }, () => g.slot());
    for (const s of slots) expect(g.check("bcast", s, 60_000, 0)).toBe("fresh");
    expect(g.stats.bytes).toBeLessThan(16 * 1024);
    for (const s of [0, 777, 49_999]) expect(g.check("bcast", s, 60_000, 1)).toBe("replayed");
  });

  it("stays within its byte bound under a flood and never lets a forgotten id run again", () => {
    const g = new ReplayGuard({ maxBytes: 64 * 1024 });
    const s = g.slot();
    const now = 0;
    // ids with windows spread over an hour, more than fit
    for (let i = 0; i < 5000; i++) {
      const v = g.check(`id${i}`, s, now + 1000 + (i % 3600) * 1000, now);
      expect(v === "fresh" || v === "forgotten").toBe(true);
      expect(g.stats.bytes).toBeLessThanOrEqual(64 * 1024);
    }
    expect(g.stats.evicted).toBeGreaterThan(0);
    // every id offered again is refused: remembered ones as replays, evicted ones as forgotten
    for (let i = 0; i < 5000; i++) {
      expect(g.check(`id${i}`, s, now + 1000 + (i % 3600) * 1000, now + 1)).not.toBe("fresh");
    }
    // the earliest windows were evicted first: a long-lived new id is still accepted
    expect(g.check("late", s, now + 7_200_000, now + 2)).toBe("fresh");
  });
});
