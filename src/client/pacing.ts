import { createHash } from "node:crypto";
import { badOption, naming, opt } from "./errors.js";

export type LimitMethod = "first" | "random";

/** A limit of N or `N%` → how many of `total` nodes to address (at least 1 of a non-empty set for a percentage). */
export function limitCount(limit: number | string, total: number): number {
  const s = String(limit).trim();
  const m = /^(\d+(?:\.\d+)?)(%?)$/.exec(s);
  if (!m)
    throw badOption(
      "limit",
      naming`${opt("limit")}: "${s}" is not a count or a percentage such as 10 or 25%`,
    );
  const n = Number(m[1]);
  if (m[2] === "%") {
    if (n <= 0 || n > 100)
      throw badOption("limit", naming`${opt("limit")}: ${s} is not a percentage between 0 and 100`);
    return total === 0 ? 0 : Math.max(1, Math.ceil((total * n) / 100));
  }
  if (!Number.isInteger(n) || n < 1)
    throw badOption("limit", naming`${opt("limit")}: ${s} is not a positive whole number`);
  return Math.min(n, total);
}

/** A deterministic PRNG (mulberry32) seeded from any string, so a limit seed repeats selections. */
export function seededRandom(seed: string): () => number {
  let a = createHash("sha256").update(seed).digest().readUInt32LE(0);
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Picks the nodes a limited request addresses. `first` keeps discovery order (the
 * quickest responders under broadcast discovery); `random` shuffles the sorted set
 * with a seeded generator, so the same seed and fleet give the same nodes.
 */
export function applyLimit(
  targets: readonly string[],
  limit: number | string,
  method: LimitMethod = "first",
  seed?: string | number,
): string[] {
  const n = limitCount(limit, targets.length);
  if (method === "first") return targets.slice(0, n);
  if (method !== "random")
    throw badOption("limitMethod", naming`${opt("limitMethod")}: "${String(method)}" is not first or random`);
  const pool = [...targets].sort();
  const rnd = seed === undefined ? Math.random : seededRandom(String(seed));
  // Partial Fisher-Yates: only the first n positions need settling.
  for (let i = 0; i < n; i++) {
    const j = i + Math.floor(rnd() * (pool.length - i));
    [pool[i], pool[j]] = [pool[j] as string, pool[i] as string];
  }
  return pool.slice(0, n);
}

/** Splits targets into the batches a paced request sends: an optional canary batch, then `size` at a time. */
export function planBatches(
  targets: readonly string[],
  size: number | undefined,
  canary: number | undefined,
): string[][] {
  const out: string[][] = [];
  let rest = [...targets];
  if (canary !== undefined) {
    if (!Number.isInteger(canary) || canary < 1)
      throw badOption("canary", naming`${opt("canary")}: ${canary} is not a positive whole number`);
    out.push(rest.slice(0, canary));
    rest = rest.slice(canary);
  }
  if (size === undefined) {
    if (rest.length > 0) out.push(rest);
    return out;
  }
  if (!Number.isInteger(size) || size < 1)
    throw badOption("batchSize", naming`${opt("batchSize")}: ${size} is not a positive whole number`);
  for (let i = 0; i < rest.length; i += size) out.push(rest.slice(i, i + size));
  return out;
}
