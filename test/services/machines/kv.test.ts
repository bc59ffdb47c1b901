import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closeNats, connectNats, type NatsConnection } from "../../../src/core/connector/index.js";
import { silentLogger } from "../../../src/core/util/index.js";
import {
  WATCHER_TYPES,
  streamsMachineGovernor,
  streamsMachineKv,
  type MachineKv,
  type WatcherDef,
  type WatcherHost,
} from "../../../src/services/machines/index.js";
import { addGovernor, createBucket } from "../../../src/services/streams/index.js";
import type { KV } from "@nats-io/kv";
import { startNats, type TestNats } from "../../helpers/nats.js";
import { waitFor } from "./helpers.js";

let nats: TestNats;
let nc: NatsConnection;
let bucket: KV;
let mkv: MachineKv;
const store = mkdtempSync(join(tmpdir(), "chorus-kvw-js-"));

beforeAll(async () => {
  nats = await startNats(`jetstream { store_dir: "${store}" }`);
  nc = await connectNats({ servers: [nats.url], name: "kv-watcher-test", reconnect: false });
  bucket = await createBucket(nc, "CFG");
  mkv = streamsMachineKv(nc);
});

afterAll(async () => {
  if (nc) await closeNats(nc);
  await nats?.stop();
  rmSync(store, { recursive: true, force: true });
});

function testHost(kv: MachineKv | undefined) {
  const data: Record<string, unknown> = {};
  const successes: (string | undefined)[] = [];
  const failures: (string | undefined)[] = [];
  const host: WatcherHost = {
    machineName: "test",
    machineVersion: "1.0.0",
    directory: "/nonexistent",
    services: { identity: "node1", ...(kv && { kv }) },
    state: () => "RUN",
    data: () => data,
    dataPut: (k, v) => (data[k] = v),
    dataDelete: (k) => delete data[k],
    success: (i) => successes.push(i),
    fail: (i) => failures.push(i),
    fire() {},
    announce() {},
    log: silentLogger,
  };
  return { host, data, successes, failures };
}

const def = (props: Record<string, unknown>): WatcherDef => ({
  name: "config",
  type: "kv",
  properties: props,
});
const signal = () => new AbortController().signal;

describe("kv watcher", () => {
  it("polls a key into machine data and fires on change, delete and (optionally) matching updates", async () => {
    const t = testHost(mkv);
    const w = WATCHER_TYPES.kv!(
      def({ bucket: "CFG", key: "web.port", on_matching_update: true }),
      t.host,
      "watchers[0]",
    );
    await w.run!(signal());
    expect(t.data).toEqual({});
    expect(t.successes).toHaveLength(0);
    expect(w.snapshot()).toEqual({ state: "unchanged", bucket: "CFG", key: "web.port", mode: "poll" });

    await bucket.put("web.port", '{"port": 8080, "tls": true}');
    await w.run!(signal());
    // go-choria's data key: <bucket>_<key>, JSON objects decoded
    expect(t.data).toEqual({ "CFG_web.port": { port: 8080, tls: true } });
    expect(t.successes).toHaveLength(1);

    await w.run!(signal());
    expect(t.successes).toHaveLength(1);
    expect(w.snapshot().state).toBe("unchanged");

    // the same value written again fires with on_matching_update
    await bucket.put("web.port", '{"tls": true, "port": 8080}');
    await w.run!(signal());
    expect(t.successes).toHaveLength(2);

    await bucket.delete("web.port");
    await w.run!(signal());
    expect(t.data).toEqual({});
    expect(t.successes).toHaveLength(3);
    expect(t.failures).toEqual([]);
  });

  it("stores plain text as a string, without the bucket prefix when asked, and fires on every get with on_successful_get", async () => {
    const t = testHost(mkv);
    await bucket.put("motd", "hello world");
    const w = WATCHER_TYPES.kv!(
      def({ bucket: "CFG", key: "motd", bucket_prefix: false, on_successful_get: true }),
      t.host,
      "watchers[0]",
    );
    await w.run!(signal());
    await w.run!(signal());
    expect(t.data).toEqual({ motd: "hello world" });
    expect(t.successes).toHaveLength(2);
  });

  it("watches a key while active and stops when inactive", async () => {
    const t = testHost(mkv);
    const w = WATCHER_TYPES.kv!(def({ bucket: "CFG", key: "flag", mode: "watch" }), t.host, "watchers[0]");
    w.stateChanged!("RUN", true);
    await bucket.put("flag", "[1, 2, 3]");
    await waitFor(() => t.data.CFG_flag !== undefined, 5000, "the watched value");
    expect(t.data.CFG_flag).toEqual([1, 2, 3]);
    expect(w.snapshot()).toMatchObject({ state: "changed", mode: "watch" });

    w.stateChanged!("IDLE", false);
    await bucket.put("flag", "off");
    await new Promise((r) => setTimeout(r, 300));
    expect(t.data.CFG_flag).toEqual([1, 2, 3]);

    // becoming active again picks up the current value
    w.stateChanged!("RUN", true);
    await waitFor(() => t.data.CFG_flag === "off", 5000, "the value written while inactive");
    await w.close?.();
  });

  it("fails (without throwing) when no Key-Value store or bucket is available", async () => {
    const none = testHost(undefined);
    const w = WATCHER_TYPES.kv!(def({ bucket: "CFG", key: "x" }), none.host, "watchers[0]");
    await w.run!(signal());
    expect(none.failures[0]).toMatch(/no Key-Value store is available/);
    expect(w.snapshot().state).toBe("error");

    const missing = testHost(mkv);
    const w2 = WATCHER_TYPES.kv!(def({ bucket: "NOPE", key: "x" }), missing.host, "watchers[0]");
    await w2.run!(signal());
    expect(missing.failures[0]).toMatch(/NOPE does not exist/);
  });

  it("checks properties, naming the path", () => {
    const t = testHost(mkv);
    const mk = (p: Record<string, unknown>) => () => WATCHER_TYPES.kv!(def(p), t.host, "watchers[3]");
    expect(mk({ key: "x" })).toThrow("watchers[3].properties.bucket: is required");
    expect(mk({ bucket: "A.B", key: "x" })).toThrow(/watchers\[3\]\.properties\.bucket/);
    expect(mk({ bucket: "A", key: "x", mode: "push" })).toThrow(/properties\.mode/);
    expect(mk({ bucket: "A" })).toThrow(/properties\.key: is required/);
    expect(mk({ bucket: "A", key: "x", hiera_config: true })).toThrow(/hiera_config/);
    expect(mk({ bucket: "A", key: "x", bogus: 1 })).toThrow(/bogus: unknown property/);
  });
});

describe("streams machine governor", () => {
  it("runs inside a slot, releases it, and times out while the governor is full", async () => {
    await addGovernor(nc, "MGOV", { capacity: 1, expireMs: 60_000, collective: "choria" });
    const gov = streamsMachineGovernor(nc, { collective: "choria", identity: "node1", events: false });
    expect(await gov.run("MGOV", 2000, async () => "first")).toBe("first");
    // the slot was given back: a second holder gets it
    let release!: () => void;
    const held = gov.run("MGOV", 2000, () => new Promise<string>((r) => (release = () => r("held"))));
    await waitFor(() => release !== undefined, 3000, "the slot to be taken");
    await expect(gov.run("MGOV", 500, async () => "never")).rejects.toThrow();
    release();
    expect(await held).toBe("held");
    expect(await gov.run("MGOV", 2000, async () => "again")).toBe("again");
  });
});
