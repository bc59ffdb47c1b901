import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsConnection } from "../../../src/core/connector/index.js";
import {
  bucketStatus,
  createBucket,
  kvOp,
  kvStreamConfig,
  listBuckets,
  openBucket,
  StreamsError,
} from "../../../src/services/streams/index.js";
import { startJsBroker, type JsBroker } from "../submission/jsbroker.js";

let broker: JsBroker;
let admin: NatsConnection;
let user: NatsConnection;

beforeAll(async () => {
  broker = await startJsBroker();
  admin = await broker.connect(
    await broker.client("choria=admin", { streams_admin: true, streams_user: true }),
  );
  user = await broker.connect(await broker.client("choria=user", { streams_user: true }));
});

afterAll(async () => {
  await broker?.stop();
});

describe("KV buckets", () => {
  it("creates buckets with Choria's defaults", async () => {
    await createBucket(admin, "CONFIG");
    const jsm = await (await import("@nats-io/jetstream")).jetstreamManager(admin);
    const c = (await jsm.streams.info("KV_CONFIG")).config;
    expect(c.max_msgs_per_subject).toBe(5);
    expect(c.num_replicas).toBe(1);
    expect(c.max_msg_size).toBe(10240);
    expect(c.discard).toBe("new");
    expect(c.duplicate_window).toBe(120_000_000_000);
    expect(c.allow_rollup_hdrs).toBe(true);
    expect(c.deny_delete).toBe(true);
    expect(c.allow_direct).toBe(true);
    expect(c.storage).toBe("file");
    const s = await bucketStatus(user, "CONFIG");
    expect(s).toMatchObject({ bucket: "CONFIG", history: 5, replicas: 1, maxValueSize: 10240 });
  });

  it("caps the duplicate window at the TTL", () => {
    expect(kvStreamConfig("X", { ttlMs: 30_000 }).duplicate_window).toBe(30_000_000_000);
    expect(() => kvStreamConfig("X", { history: 0 })).toThrow(/history/);
    expect(() => kvStreamConfig("bad.name")).toThrow(StreamsError);
  });

  it("puts, gets, deletes, purges and keeps history as a streams_user", async () => {
    const kv = await openBucket(user, "CONFIG");
    for (let i = 1; i <= 7; i++) await kv.put("web.port", String(8000 + i));
    await kv.put("db.port", "5432");
    expect((await kv.get("web.port"))?.string()).toBe("8007");
    const hist: string[] = [];
    for await (const e of await kv.history({ key: "web.port" })) hist.push(e.string());
    // history 5 keeps the last five values
    expect(hist).toEqual(["8003", "8004", "8005", "8006", "8007"]);
    const keys: string[] = [];
    for await (const k of await kv.keys()) keys.push(k);
    expect(keys.sort()).toEqual(["db.port", "web.port"]);
    await kv.delete("db.port");
    expect((await kv.get("db.port"))?.operation).toBe("DEL");
    await kv.purge("web.port");
    const after: string[] = [];
    for await (const e of await kv.history({ key: "web.port" })) after.push(e.operation);
    expect(after).toEqual(["PURGE"]);
  });

  it("watches updates", async () => {
    const kv = await openBucket(user, "CONFIG");
    const it = await kv.watch({ key: "w.>", include: "updates" });
    const seen: string[] = [];
    const done = (async () => {
      for await (const e of it) {
        seen.push(`${e.key}=${e.string()}`);
        if (seen.length === 2) break;
      }
    })();
    await kv.put("w.a", "1");
    await kv.put("w.b", "2");
    await done;
    expect(seen).toEqual(["w.a=1", "w.b=2"]);
  });

  it("lists buckets", async () => {
    await createBucket(admin, "OTHER", { history: 2 });
    const names = (await listBuckets(user)).map((b) => b.bucket);
    expect(names).toEqual(expect.arrayContaining(["CONFIG", "OTHER"]));
  });

  it("says so when a bucket is missing", async () => {
    await expect(openBucket(user, "NOPE")).rejects.toMatchObject({
      code: "no_bucket",
      message: "KV bucket NOPE does not exist",
    });
    await expect(bucketStatus(user, "NOPE")).rejects.toMatchObject({ code: "no_bucket" });
  });

  it("refuses oversized values, bad keys and creation without streams_admin", async () => {
    const kv = await openBucket(user, "CONFIG");
    await expect(kvOp("put", () => kv.put("big", "x".repeat(20_000)))).rejects.toMatchObject({
      code: "too_large",
    });
    await expect(kvOp("put", () => kv.put("bad key", "x"))).rejects.toMatchObject({ code: "bad_key" });
    await expect(createBucket(user, "DENIED")).rejects.toBeInstanceOf(StreamsError);
  });

  it("refuses to redefine an existing bucket", async () => {
    await expect(createBucket(admin, "CONFIG", { history: 9 })).rejects.toMatchObject({ code: "exists" });
  });
});
