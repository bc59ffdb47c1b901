/**
 * Sampling for the replicator: copy a message for a tracked value (a node name, say) only
 * when that value's data is due again, and notice values that went quiet.
 *
 * Public API:
 * - `new Sampler(o: SamplingOptions)`: throws ReplicatorError("config") on bad options.
 * - `valueOf(msg)`: `{ value, force }`, the tracking value ("" when none) and whether
 *   inspect_force_field is present.
 * - `decide(msg)`: `{ copy, value }`, records the sighting; call `copied(value)` once the
 *   copy is stored on the target.
 * - `on(event, cb)`: "new" | "timeout" | "recover" | "expire" with (value, item snapshot);
 *   a timeout repeats on every scrub until `markAdvised(value)`.
 * - `scrub()`, `save()`, `load()`, `start()`, `stop()`: maintenance and the state file
 *   (Choria's JSON shape `{"Items":{value:{seen,copied,advised,size}}}`).
 * - gossip: `drainGossip()` gives the items seen since the last drain, `adopt()` takes one
 *   from a peer; `encodeGossip()` / `decodeGossip()` are the wire form.
 * - `get(value)`, `size`, `counters`.
 * Times are milliseconds since the epoch; 0 means never.
 */
import { existsSync, readFileSync, rmSync } from "node:fs";
import { lookupFact } from "../../core/filter/index.js";
import { silentLogger, writeFileAtomicSync, type Logger } from "../../core/util/index.js";
import { ReplicatorError } from "./errors.js";

export interface SamplingOptions {
  /** config stream name (labels, logs) */
  stream: string;
  replicator: string;
  /** gjson-style path into a JSON payload */
  inspectField?: string;
  /** present in the payload => copy regardless (needs inspectField) */
  inspectForceField?: string;
  inspectHeader?: string;
  /** -1 the whole subject, N > 0 the 1-based token, 0/undefined off */
  inspectSubjectToken?: number;
  /** how often a value's data is copied (Choria's inspect_duration) */
  inspectDurationMs: number;
  /** unseen this long => timeout advisory */
  warnDurationMs: number;
  /** a size change of this many bytes or more copies at once */
  sizeTrigger?: number;
  stateFile?: string;
  now?: () => number;
  /** [0, 1), for the copy deadline splay */
  random?: () => number;
  /** scrub and save period of start(); default 10 s as Choria */
  scrubIntervalMs?: number;
  logger?: Logger;
}

export interface TrackedItem {
  seen: number;
  copied: number;
  advised: boolean;
  size: number;
}

export type SamplingEvent = "new" | "timeout" | "recover" | "expire";
export type SamplingListener = (value: string, item: TrackedItem) => void;

/** The parts of a NATS message sampling looks at (a nats.js Msg/JsMsg fits). */
export interface SampledMessage {
  subject: string;
  data: Uint8Array;
  headers?: { get(k: string): string } | undefined;
}

export interface SamplingCounters {
  /** messages without a tracking value (always copied) */
  withoutValue: number;
  /** messages copied because of inspect_force_field */
  forced: number;
  /** items taken from peers */
  adopted: number;
  /** state file writes that failed */
  saveErrors: number;
}

const decoder = new TextDecoder();
/** Go's zero time.Time, which Choria writes for "never" */
const GO_ZERO_TIME = "0001-01-01T00:00:00Z";

/** The `n`th (1-based) dot-separated token, "" when the subject is shorter; no split array. */
function subjectToken(subject: string, n: number): string {
  let start = 0;
  for (let i = 1; i < n; i++) {
    const dot = subject.indexOf(".", start);
    if (dot < 0) return "";
    start = dot + 1;
  }
  const end = subject.indexOf(".", start);
  return end < 0 ? subject.slice(start) : subject.slice(start, end);
}

/** gjson's String() of a value: scalars as text, null as "", objects and arrays as JSON. */
function asText(v: unknown): string {
  switch (typeof v) {
    case "string":
      return v;
    case "number":
    case "boolean":
      return String(v);
    case "undefined":
      return "";
    default:
      return v === null ? "" : JSON.stringify(v);
  }
}

/** The payload as a JSON object or array, undefined for anything else (never throws). */
function parseJson(data: Uint8Array): Record<string, unknown> | undefined {
  // skip leading whitespace; a payload that cannot be an object is not parsed at all,
  // so plain-text streams cost no exception per message
  let i = 0;
  while (i < data.length && (data[i] === 0x20 || data[i] === 0x0a || data[i] === 0x0d || data[i] === 0x09))
    i++;
  if (i === data.length || (data[i] !== 0x7b && data[i] !== 0x5b)) return undefined;
  try {
    const v: unknown = JSON.parse(decoder.decode(data));
    return v !== null && typeof v === "object" ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function toGoTime(ms: number): string {
  return ms > 0 ? new Date(ms).toISOString() : GO_ZERO_TIME;
}

/** Go time JSON (RFC 3339, any fraction, any offset) to ms; Go's zero time and junk are 0. */
function fromGoTime(v: unknown): number | undefined {
  if (typeof v === "number") return Number.isFinite(v) && v > 0 ? v : 0;
  if (typeof v !== "string") return undefined;
  const ms = Date.parse(v);
  if (Number.isNaN(ms)) return undefined;
  return ms > 0 ? ms : 0;
}

/** One item in Choria's JSON shape (times as RFC 3339 strings, advised omitted when false). */
function itemToJson(i: TrackedItem): Record<string, unknown> {
  return {
    seen: toGoTime(i.seen),
    copied: toGoTime(i.copied),
    ...(i.advised && { advised: true }),
    size: i.size,
  };
}

/** An item from JSON (state file, gossip); undefined when it is not one. */
function itemFromJson(v: unknown): TrackedItem | undefined {
  if (v === null || typeof v !== "object" || Array.isArray(v)) return undefined;
  const o = v as Record<string, unknown>;
  const seen = fromGoTime(o.seen);
  const copied = o.copied === undefined ? 0 : fromGoTime(o.copied);
  const size = o.size === undefined ? 0 : o.size;
  if (seen === undefined || copied === undefined || typeof size !== "number" || !Number.isFinite(size))
    return undefined;
  return { seen, copied, advised: o.advised === true, size };
}

/**
 * Gossip wire form: `{"Items":{value:item}}`, the state file's shape, so one message
 * carries every value seen in the last period.
 */
export function encodeGossip(items: Record<string, TrackedItem>): Uint8Array {
  const out: Record<string, unknown> = {};
  for (const [v, i] of Object.entries(items)) out[v] = itemToJson(i);
  return new TextEncoder().encode(JSON.stringify({ Items: out }));
}

/**
 * Reads a gossip message: the batched form above, or Choria's one item per message
 * (`{seen,copied,advised,size,value}`) so a Go replicator's gossip is understood too.
 * Malformed messages and items are left out.
 */
export function decodeGossip(data: Uint8Array): Record<string, TrackedItem> {
  const doc = parseJson(data);
  const out: Record<string, TrackedItem> = {};
  if (doc === undefined || Array.isArray(doc)) return out;
  const items = doc.Items;
  if (items !== undefined) {
    if (items === null || typeof items !== "object" || Array.isArray(items)) return out;
    for (const [v, raw] of Object.entries(items)) {
      const i = itemFromJson(raw);
      if (v !== "" && i) out[v] = i;
    }
    return out;
  }
  const v = doc.value;
  const i = itemFromJson(doc);
  if (typeof v === "string" && v !== "" && i) out[v] = i;
  return out;
}

export class Sampler {
  readonly counters: SamplingCounters = { withoutValue: 0, forced: 0, adopted: 0, saveErrors: 0 };

  private readonly items = new Map<string, TrackedItem>();
  private readonly listeners: Record<SamplingEvent, SamplingListener[]> = {
    new: [],
    timeout: [],
    recover: [],
    expire: [],
  };
  /** values seen since the last drainGossip(); made by the first drain, so no cost without gossip */
  private dirty: Set<string> | undefined;
  private readonly field: string | undefined;
  private readonly forceField: string | undefined;
  private readonly header: string | undefined;
  private readonly token: number;
  private readonly interval: number;
  private readonly warn: number;
  private readonly sizeTrigger: number;
  private readonly stateFile: string | undefined;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly scrubEvery: number;
  private readonly log: Logger;
  private readonly stream: string;
  private timer: NodeJS.Timeout | undefined;
  /** set by extract(): whether the last message carried the force field */
  private lastForce = false;

  constructor(o: SamplingOptions) {
    const bad = (why: string) => new ReplicatorError("config", `sampling ${o.stream}: ${why}`);
    if (!(o.inspectDurationMs > 0)) throw bad("inspect duration must be positive");
    if (!(o.warnDurationMs >= 0)) throw bad("warn duration must not be negative");
    if (o.inspectForceField && !o.inspectField) throw bad("inspect_force_field needs inspect_field");
    const token = o.inspectSubjectToken ?? 0;
    if (!Number.isInteger(token) || token < -1) throw bad("inspect_subject_token must be -1, 0 or N > 0");
    if (!o.inspectField && !o.inspectHeader && token === 0)
      throw bad("one of inspect_field, inspect_header or inspect_subject_token is needed");
    this.field = o.inspectField || undefined;
    this.forceField = o.inspectForceField || undefined;
    this.header = o.inspectHeader || undefined;
    this.token = token;
    this.interval = o.inspectDurationMs;
    this.warn = o.warnDurationMs;
    this.sizeTrigger = o.sizeTrigger ?? 0;
    this.stateFile = o.stateFile || undefined;
    this.now = o.now ?? Date.now;
    this.random = o.random ?? Math.random;
    this.scrubEvery = o.scrubIntervalMs ?? 10_000;
    this.log = o.logger ?? silentLogger;
    this.stream = o.stream;
  }

  /** values being tracked */
  get size(): number {
    return this.items.size;
  }

  /** a copy of a tracked item */
  get(value: string): TrackedItem | undefined {
    const i = this.items.get(value);
    return i && { ...i };
  }

  on(event: SamplingEvent, cb: SamplingListener): this {
    this.listeners[event].push(cb);
    return this;
  }

  valueOf(msg: SampledMessage): { value: string; force: boolean } {
    const value = this.extract(msg);
    return { value, force: this.lastForce };
  }

  /**
   * Whether to copy `msg`, as Choria's ShouldProcess, and records the sighting. Messages
   * without a value are always copied.
   */
  decide(msg: SampledMessage): { copy: boolean; value: string } {
    const value = this.extract(msg);
    const force = this.lastForce;
    const size = msg.data.length;
    const now = this.now();
    if (value === "") this.counters.withoutValue++;
    if (force) this.counters.forced++;
    const copy = force || this.due(value, size, now);
    if (value !== "") this.seen(value, size, now);
    return { copy, value };
  }

  /** the copy of `value`'s message is stored on the target */
  copied(value: string): void {
    const i = this.items.get(value);
    if (i) i.copied = this.now();
  }

  /** a timeout advisory for `value` is on its way: no more until it recovers */
  markAdvised(value: string): void {
    const i = this.items.get(value);
    if (i) i.advised = true;
  }

  /**
   * Takes an item a peer saw. Choria overwrites; here an older sighting does not roll a
   * newer local one back (gossip can arrive late), and the later copy time wins.
   */
  adopt(value: string, item: TrackedItem): void {
    // items come off the network: take only well-formed ones
    if (
      value === "" ||
      typeof item !== "object" ||
      item === null ||
      !Number.isFinite(item.seen) ||
      !Number.isFinite(item.copied) ||
      !Number.isFinite(item.size)
    )
      return;
    this.counters.adopted++;
    const cur = this.items.get(value);
    if (!cur) {
      this.items.set(value, {
        seen: item.seen,
        copied: item.copied,
        advised: item.advised === true,
        size: item.size,
      });
      return;
    }
    if (item.seen >= cur.seen) {
      cur.seen = item.seen;
      cur.size = item.size;
      cur.advised = item.advised === true;
    }
    if (item.copied > cur.copied) cur.copied = item.copied;
  }

  /**
   * Snapshots of the items seen since the last drain. Tracking starts with the first call
   * (which returns nothing), so a sampler nobody gossips for does no extra work.
   */
  drainGossip(): Record<string, TrackedItem> {
    const out: Record<string, TrackedItem> = {};
    if (!this.dirty) {
      this.dirty = new Set();
      return out;
    }
    for (const v of this.dirty) {
      const i = this.items.get(v);
      if (i) out[v] = { ...i };
    }
    this.dirty.clear();
    return out;
  }

  /**
   * Emits "timeout" for items unseen longer than the warn duration and not advised, deletes
   * items unseen longer than the interval with "expire", except those unseen over twice
   * the interval (stale state from disk or a long pause: nobody wants that news).
   */
  scrub(): void {
    const now = this.now();
    const expireBefore = now - this.interval;
    const quietBefore = now - 2 * this.interval;
    const warnBefore = now - this.warn;
    for (const [v, i] of this.items) {
      if (i.seen < expireBefore) {
        this.items.delete(v);
        this.dirty?.delete(v);
        if (i.seen >= quietBefore) this.emit("expire", v, i);
      } else if (!i.advised && i.seen < warnBefore) {
        this.emit("timeout", v, i);
      }
    }
  }

  /** writes the live items to the state file (removes it when there are none); never throws */
  save(): boolean {
    if (!this.stateFile) return true;
    const expireBefore = this.now() - this.interval;
    const out: Record<string, unknown> = {};
    let n = 0;
    for (const [v, i] of this.items) {
      if (i.seen < expireBefore) continue;
      out[v] = itemToJson(i);
      n++;
    }
    try {
      if (n === 0) rmSync(this.stateFile, { force: true });
      else writeFileAtomicSync(this.stateFile, JSON.stringify({ Items: out }), { mkdir: true });
      return true;
    } catch (err) {
      this.counters.saveErrors++;
      this.log.warn({ stream: this.stream, file: this.stateFile, err }, "could not save sampling state");
      return false;
    }
  }

  /**
   * Reads the state file into an empty tracker. Expired items are dropped without events;
   * a missing file is no state, an unreadable or corrupt one is logged and ignored.
   */
  load(): void {
    if (!this.stateFile || this.items.size > 0 || !existsSync(this.stateFile)) return;
    let doc: unknown;
    try {
      doc = JSON.parse(readFileSync(this.stateFile, "utf8"));
    } catch (err) {
      this.log.warn({ file: this.stateFile, err }, "sampling state unreadable, starting without state");
      return;
    }
    const items = (doc as { Items?: unknown } | null)?.Items;
    if (items === null || typeof items !== "object" || Array.isArray(items)) {
      if (items !== undefined)
        this.log.warn({ file: this.stateFile }, "sampling state has no Items, starting without state");
      return;
    }
    const expireBefore = this.now() - this.interval;
    let skipped = 0;
    for (const [v, raw] of Object.entries(items as Record<string, unknown>)) {
      const i = itemFromJson(raw);
      if (v === "" || !i) skipped++;
      else if (i.seen >= expireBefore) this.items.set(v, i);
    }
    if (skipped > 0)
      this.log.warn({ file: this.stateFile, skipped }, "sampling state: malformed items skipped");
    this.log.info({ file: this.stateFile, items: this.items.size }, "sampling state loaded");
  }

  /** scrubs and saves every scrubIntervalMs (the timer does not hold the process) */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      this.scrub();
      this.save();
    }, this.scrubEvery);
    this.timer.unref();
  }

  /** stops the timer and saves once more */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.save();
  }

  /** the tracking value; sets lastForce */
  private extract(msg: SampledMessage): string {
    this.lastForce = false;
    if (this.field !== undefined) {
      const doc = parseJson(msg.data);
      if (doc === undefined) return "";
      if (this.forceField !== undefined) this.lastForce = lookupFact(doc, this.forceField) !== undefined;
      return asText(lookupFact(doc, this.field));
    }
    if (this.token === -1) return msg.subject;
    if (this.token > 0) return subjectToken(msg.subject, this.token);
    if (this.header !== undefined) return msg.headers?.get(this.header) ?? "";
    return "";
  }

  /** Choria's ShouldProcess for a value */
  private due(value: string, size: number, now: number): boolean {
    if (value === "") return true;
    const i = this.items.get(value);
    if (i === undefined || i.copied === 0) return true;
    // the deadline is splayed by up to 10% of the interval so values copied together drift apart
    const splay = Math.floor(this.random() * this.interval * 0.1);
    const deadline = now - (this.interval - 1000 - splay);
    if (i.copied < deadline) return true;
    if (i.seen === 0 || (i.size === 0 && size !== 0)) return true;
    if (this.sizeTrigger > 0 && Math.abs(i.size - size) >= this.sizeTrigger) return true;
    return i.seen < deadline;
  }

  /** Choria's RecordSeen */
  private seen(value: string, size: number, now: number): void {
    let i = this.items.get(value);
    if (i === undefined) {
      i = { seen: now, copied: 0, advised: false, size };
      this.items.set(value, i);
      this.emit("new", value, i);
    } else {
      const since = now - i.seen;
      if (i.seen !== 0 && since > this.warn && since < this.interval) {
        i.advised = false;
        this.emit("recover", value, i);
      }
      i.seen = now;
      i.size = size;
    }
    this.dirty?.add(value);
  }

  private emit(event: SamplingEvent, value: string, item: TrackedItem): void {
    const cbs = this.listeners[event];
    if (cbs.length === 0) return;
    const snap = { seen: item.seen, copied: item.copied, advised: item.advised, size: item.size };
    for (const cb of cbs) {
      try {
        cb(value, snap);
      } catch (err) {
        // a listener must not break the copy loop
        this.log.error({ event, value, err }, "sampling listener failed");
      }
    }
  }
}
