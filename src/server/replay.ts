/** What the replay guard says about one request id on one node. */
export type ReplayVerdict = "fresh" | "replayed" | "forgotten";

export interface ReplayGuardOptions {
  /** Upper bound on the memory the remembered ids may take, estimated (default 32 MiB). */
  maxBytes?: number;
}

export interface ReplayGuardStats {
  /** Request ids remembered now. */
  entries: number;
  /** Estimated bytes they take. */
  bytes: number;
  /** Ids forgotten before their window closed because the cache was full. */
  evicted: number;
}

interface Entry {
  /** Unix ms after which the request is outside its TTL window anyway. */
  expires: number;
  /** Bit per node slot: which nodes of this process ran it. */
  seen: Uint8Array;
  bytes: number;
}

// A Map entry, the key string and the small object around the bitset, roughly.
const ENTRY_OVERHEAD = 160;
// One (expires, id) object in the heap.
const PAIR_BYTES = 48;

interface Pair {
  expires: number;
  id: string;
}

/**
 * Remembers the request ids nodes have accepted until each request's TTL window has
 * closed, so the same signed request (or a re-signed one with the same id) runs once
 * per node. Choria has no such cache. One guard serves every node of a process: an id
 * carries a bitset indexed by node slot, so a broadcast to 50 000 emulated nodes costs
 * 6 KiB, not 50 000 entries.
 *
 * Memory is bounded: when full, the entry closest to expiry is forgotten and its window
 * end becomes a horizon; a later request whose window ends before the horizon cannot be
 * told apart from a replay and is refused ("forgotten"), so a full cache never lets a
 * replay through, and only requests about to expire anyway pay for the pressure.
 * Expiries sit in a binary heap: every operation is O(log n), also under a flood.
 */
export class ReplayGuard {
  readonly maxBytes: number;
  private readonly entries = new Map<string, Entry>();
  /** (expires, id) pairs; stale pairs (entry gone or extended) are skipped when popped. */
  private readonly heap: Pair[] = [];
  private bytes = 0;
  private evicted = 0;
  private horizon = 0;
  private slots = 0;

  constructor(opts: ReplayGuardOptions = {}) {
    this.maxBytes = Math.max(64 * 1024, opts.maxBytes ?? 32 * 1024 * 1024);
  }

  /** A slot for a node; each node using the guard takes one. */
  slot(): number {
    return this.slots++;
  }

  get stats(): ReplayGuardStats {
    return { entries: this.entries.size, bytes: this.bytes, evicted: this.evicted };
  }

  /**
   * Records that node `slot` accepts request `id` whose TTL window ends at `expires`
   * (unix ms), or says why it must not run.
   */
  check(id: string, slot: number, expires: number, now = Date.now()): ReplayVerdict {
    this.expire(now);
    const byte = slot >>> 3;
    const bit = 1 << (slot & 7);
    let e = this.entries.get(id);
    if (e) {
      if (byte < e.seen.length && ((e.seen[byte] as number) & bit) !== 0) return "replayed";
      if (byte >= e.seen.length) {
        const grown = new Uint8Array(Math.max(byte + 1, e.seen.length * 2));
        grown.set(e.seen);
        this.bytes += grown.length - e.seen.length;
        e.bytes += grown.length - e.seen.length;
        e.seen = grown;
      }
      e.seen[byte] = (e.seen[byte] as number) | bit;
      if (expires > e.expires) {
        // a re-signed copy with a longer window: remember the id that long
        e.expires = expires;
        this.push(expires, id);
      }
    } else {
      if (expires <= this.horizon) return "forgotten";
      const seen = new Uint8Array(byte + 1);
      seen[byte] = bit;
      e = { expires, seen, bytes: ENTRY_OVERHEAD + id.length * 2 + seen.length };
      this.entries.set(id, e);
      this.bytes += e.bytes;
      this.push(expires, id);
    }
    while (this.bytes > this.maxBytes && this.entries.size > 1) {
      const victim = this.popLive();
      if (!victim) break;
      this.evicted++;
      if (victim.expires > this.horizon) this.horizon = victim.expires;
      if (victim === e) return "forgotten";
    }
    return "fresh";
  }

  private expire(now: number): void {
    while (this.heap.length > 0 && (this.heap[0] as Pair).expires <= now) {
      const top = this.pop() as Pair;
      const e = this.entries.get(top.id);
      // a stale pair (the entry was extended or evicted) removes nothing
      if (e && e.expires === top.expires) this.removeEntry(top.id, e);
    }
  }

  /** Removes the live entry with the earliest expiry (skipping stale heap pairs). */
  private popLive(): Entry | undefined {
    while (this.heap.length > 0) {
      const top = this.pop() as Pair;
      const e = this.entries.get(top.id);
      if (!e || e.expires !== top.expires) continue;
      this.removeEntry(top.id, e);
      return e;
    }
    return undefined;
  }

  private removeEntry(id: string, e: Entry): void {
    this.entries.delete(id);
    this.bytes -= e.bytes;
  }

  private push(expires: number, id: string): void {
    const h = this.heap;
    this.bytes += PAIR_BYTES;
    h.push({ expires, id });
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if ((h[p] as Pair).expires <= expires) break;
      h[i] = h[p] as Pair;
      i = p;
    }
    h[i] = { expires, id };
  }

  private pop(): Pair | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (last) this.bytes -= PAIR_BYTES;
    if (h.length === 0 || !last) return top;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= h.length) break;
      const r = l + 1;
      const c = r < h.length && (h[r] as Pair).expires < (h[l] as Pair).expires ? r : l;
      if ((h[c] as Pair).expires >= last.expires) break;
      h[i] = h[c] as Pair;
      i = c;
    }
    h[i] = last;
    return top;
  }
}
