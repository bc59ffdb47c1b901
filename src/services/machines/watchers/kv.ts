/**
 * The `kv` watcher (go-choria aagent/watchers/kvwatcher): copies one Choria Streams KV
 * key into machine data and fires its success_transition when the value changes.
 *
 * `mode: poll` reads the key on every interval (and on becoming active); `mode: watch`
 * (which go-choria declares but does not implement) follows the key's updates while the
 * watcher is active. Values that look like JSON objects or arrays are decoded, anything
 * else is kept as a string, as go-choria does. `hiera_config` and `query` are refused:
 * Chorus has no tiny-hiera or gjson; `republish_trigger` is ignored (polling still runs).
 */
import { isDeepStrictEqual } from "node:util";
import { MachineError } from "../errors.js";
import type { Watcher, WatcherDef, WatcherFactory, WatcherHost } from "../types.js";
import { WatcherProps } from "./properties.js";

type KvState = "unknown" | "error" | "changed" | "unchanged" | "skipped";

const NAME_RE = /^[a-zA-Z0-9_-]+$/;
const KEY_RE = /^[-/_=.a-zA-Z0-9]+$/;

const KNOWN = [
  "bucket",
  "key",
  "mode",
  "bucket_prefix",
  "on_successful_get",
  "on_matching_update",
  "republish_trigger",
  "hiera_config",
  "store_key",
  "query",
] as const;

/** Parses a KV value as go-choria does: `{...}` and `[...]` as JSON when they parse, else the text. */
export function parseKvValue(raw: Uint8Array): unknown {
  const text = Buffer.from(raw).toString("utf8");
  const t = text.trim();
  if ((t.startsWith("{") && t.endsWith("}")) || (t.startsWith("[") && t.endsWith("]"))) {
    try {
      return JSON.parse(t) as unknown;
    } catch {
      // not JSON after all: kept as text
    }
  }
  return text;
}

export interface KvProperties {
  bucket: string;
  key: string;
  mode: "poll" | "watch";
  bucketPrefix: boolean;
  storeKey?: string;
  onSuccessfulGet: boolean;
  onMatchingUpdate: boolean;
}

export function kvProperties(def: WatcherDef, path: string): KvProperties {
  const p = new WatcherProps(def, path, KNOWN);
  const bucket = p.string("bucket", { required: true });
  if (!NAME_RE.test(bucket)) throw p.error("bucket", `"${bucket}" is not a valid bucket name`);
  const mode = p.string("mode") || "poll";
  if (mode !== "poll" && mode !== "watch") throw p.error("mode", 'should be "poll" or "watch"');
  // Chorus follows one key in either mode (go-choria's bucket-wide watch was never written)
  const key = p.string("key", { required: true });
  if (!KEY_RE.test(key)) throw p.error("key", `"${key}" is not a valid key`);
  if (p.bool("hiera_config")) throw p.error("hiera_config", "hierarchical data is not supported by Chorus");
  if (p.string("query")) throw p.error("query", "gjson queries are not supported by Chorus");
  const storeKey = p.string("store_key");
  return {
    bucket,
    key,
    mode,
    bucketPrefix: p.bool("bucket_prefix", true),
    ...(storeKey && { storeKey }),
    onSuccessfulGet: p.bool("on_successful_get"),
    onMatchingUpdate: p.bool("on_matching_update"),
  };
}

/** The machine data key a value is stored under: `<bucket>_<key>` with bucket_prefix (go-choria's form). */
export function kvDataKey(p: KvProperties): string {
  const k = p.storeKey ?? p.key;
  return p.bucketPrefix ? `${p.bucket}_${k}` : k;
}

class KvWatcher implements Watcher {
  readonly type = "kv";
  private readonly p: KvProperties;
  private readonly dataKey: string;
  private state: KvState = "unknown";
  private previous: unknown;
  private previousRev = 0;
  private polling = false;
  private active = false;
  private stopWatch: (() => void) | undefined;
  private starting: Promise<void> | undefined;
  private watchRev = 0;
  private closed = false;

  constructor(
    readonly def: WatcherDef,
    private readonly host: WatcherHost,
    path: string,
  ) {
    this.p = kvProperties(def, path);
    this.dataKey = kvDataKey(this.p);
    if (def.properties?.republish_trigger) {
      host.log.warn({ watcher: def.name }, "kv watcher: republish_trigger is not supported, polling only");
    }
  }

  stateChanged(_state: string, active: boolean): void {
    this.active = active;
    if (this.p.mode !== "watch") return;
    if (active) void this.startWatch();
    else this.endWatch();
  }

  async run(): Promise<void> {
    if (this.p.mode === "watch") {
      // a watch that could not start (no bucket yet, broker away) is retried each interval
      await this.startWatch();
      return;
    }
    if (this.polling) return;
    this.polling = true;
    try {
      this.handle(await this.poll());
    } finally {
      this.polling = false;
    }
  }

  private kv() {
    const kv = this.host.services.kv;
    if (!kv)
      throw new MachineError("io", `no Key-Value store is available to read ${this.p.bucket}.${this.p.key}`);
    return kv;
  }

  private async poll(): Promise<[KvState, string?]> {
    let entry: { value: Uint8Array; revision: number } | undefined;
    try {
      entry = await this.kv().get(this.p.bucket, this.p.key);
    } catch (err) {
      return ["error", `could not get ${this.p.bucket}.${this.p.key}: ${(err as Error).message}`];
    }
    return this.update(entry?.value, entry?.revision ?? 0);
  }

  /** go-choria's decision table: a delete, a change, an unchanged put, or nothing. */
  private update(raw: Uint8Array | undefined, revision: number): [KvState, string?] {
    if (this.previous === undefined) this.previous = this.host.data()[this.dataKey];
    if (raw === undefined) {
      if (this.previous === undefined) return ["unchanged"];
      this.host.dataDelete(this.dataKey);
      this.previous = undefined;
      this.previousRev = 0;
      return ["changed", `${this.p.bucket}.${this.p.key} was removed`];
    }
    const value = parseKvValue(raw);
    if (!isDeepStrictEqual(value, this.previous)) {
      this.host.dataPut(this.dataKey, value);
      this.previous = value;
      this.previousRev = revision;
      return ["changed", `${this.p.bucket}.${this.p.key} changed`];
    }
    // an unchanged put: only a newer revision counts, and never the first read after start
    if (this.p.onMatchingUpdate && this.previousRev > 0 && revision > this.previousRev) {
      this.previousRev = revision;
      return ["changed", `${this.p.bucket}.${this.p.key} was written with the same value`];
    }
    this.previousRev = revision;
    if (this.p.onSuccessfulGet) return ["changed", `${this.p.bucket}.${this.p.key} was read`];
    return ["unchanged"];
  }

  private handle([state, info]: [KvState, string?]): void {
    const was = this.state;
    this.state = state;
    if (state === "error") {
      this.host.log.error({ watcher: this.def.name }, `kv watcher: ${info ?? "failed"}`);
      this.host.fail(info);
    } else if (state === "changed") {
      this.host.success(info);
    }
    if (state !== was || state === "changed") this.host.announce();
  }

  private startWatch(): Promise<void> {
    if (this.stopWatch || this.closed || !this.active) return Promise.resolve();
    if (this.starting) return this.starting;
    this.starting = (async () => {
      try {
        const stop = await this.kv().watch(this.p.bucket, this.p.key, (value) => {
          if (!this.active || this.closed) return;
          // each notification is a newer write of the key
          this.handle(this.update(value, ++this.watchRev));
        });
        if (this.closed || !this.active) stop();
        else this.stopWatch = stop;
      } catch (err) {
        this.handle(["error", `could not watch ${this.p.bucket}.${this.p.key}: ${(err as Error).message}`]);
      } finally {
        this.starting = undefined;
      }
    })();
    return this.starting;
  }

  private endWatch(): void {
    this.stopWatch?.();
    this.stopWatch = undefined;
  }

  snapshot(): Record<string, unknown> {
    return { state: this.state, bucket: this.p.bucket, key: this.p.key, mode: this.p.mode };
  }

  close(): void {
    this.closed = true;
    this.endWatch();
  }
}

export const kvWatcher: WatcherFactory = (def, host, path) => new KvWatcher(def, host, path);
