import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closeNats, connectNats, type NatsConnection } from "../../../src/core/connector/index.js";
import { createBucket, openBucket } from "../../../src/services/streams/index.js";
import {
  PlaybookError,
  openDataStore,
  openDataStores,
  type DataStore,
  type DataStoreDef,
} from "../../../src/services/playbooks/index.js";
import { startNats, type TestNats } from "../../helpers/nats.js";

let nats: TestNats;
let nc: NatsConnection;
let dir: string;
const jsStore = mkdtempSync(join(tmpdir(), "chorus-pbdata-js-"));

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "chorus-pbdata-"));
  nats = await startNats(`jetstream { store_dir: "${jsStore}" }`);
  nc = await connectNats({ servers: [nats.url], name: "playbook-data-test", reconnect: false });
});

afterAll(async () => {
  if (nc) await closeNats(nc);
  await nats?.stop();
  rmSync(dir, { recursive: true, force: true });
  rmSync(jsStore, { recursive: true, force: true });
});

/** write, read back, overwrite, delete, read nothing: what every store must do. */
async function roundTrip(s: DataStore, key: string, value: unknown): Promise<void> {
  expect(await s.read(key)).toBeUndefined();
  await s.write(key, value);
  expect(await s.read(key)).toEqual(value);
  await s.write(key, "second");
  expect(await s.read(key)).toBe("second");
  await s.delete(key);
  expect(await s.read(key)).toBeUndefined();
}

async function rejection(p: Promise<unknown>): Promise<PlaybookError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PlaybookError);
  return err as PlaybookError;
}

describe("memory store", () => {
  it("round trips structured values and keeps its own copy", async () => {
    const s = await openDataStore("mem", { type: "memory" }, {});
    await roundTrip(s, "k", { a: [1, 2], b: "x" });
    const v = { n: 1 };
    await s.write("v", v);
    v.n = 2;
    expect(await s.read("v")).toEqual({ n: 1 });
  });
});

describe("environment store", () => {
  it("reads and writes prefixed variables of the given environment", async () => {
    const env: NodeJS.ProcessEnv = { APP_version: "1.0" };
    const s = await openDataStore("env", { type: "environment", prefix: "APP_" }, { env });
    expect(await s.read("version")).toBe("1.0");
    await roundTrip(s, "colour", "blue");
    await s.write("count", 3);
    expect(env.APP_count).toBe("3");
  });

  it("writes process.env by default, so shell tasks of the run see it", async () => {
    const s = await openDataStore("env", { type: "environment", prefix: "CHORUS_PBTEST_" }, {});
    await s.write("x", "y");
    expect(process.env.CHORUS_PBTEST_x).toBe("y");
    await s.delete("x");
    expect(process.env.CHORUS_PBTEST_x).toBeUndefined();
  });
});

describe("file store", () => {
  it("yaml by extension: round trip, and the file holds the mapping", async () => {
    const file = join(dir, "data.yaml");
    writeFileSync(file, "existing: 1\n");
    const s = await openDataStore("f", { type: "file", file: "data.yaml" }, { cwd: dir });
    expect(await s.read("existing")).toBe(1);
    await roundTrip(s, "list", ["a", "b"]);
    await s.write("version", "2.0");
    // a string that looks like a number stays a string in the file
    expect(readFileSync(file, "utf8")).toBe('existing: 1\nversion: "2.0"\n');
    // atomic writes leave no temporary files behind
    expect(readdirSync(dir).filter((f) => f.endsWith(".tmp"))).toEqual([]);
  });

  it("json by format, created when asked", async () => {
    const file = join(dir, "sub", "state.data");
    const s = await openDataStore("j", { type: "file", file, format: "json", create: true }, {});
    expect(existsSync(file)).toBe(true);
    await roundTrip(s, "obj", { nested: { deep: true } });
    await s.write("n", 5);
    expect(JSON.parse(readFileSync(file, "utf8"))).toEqual({ n: 5 });
  });

  it("a missing file without create, an unknown extension, a broken file: PlaybookError(data) naming it", async () => {
    const missing = await rejection(openDataStore("f", { type: "file", file: join(dir, "nope.yaml") }, {}));
    expect(missing.code).toBe("data");
    expect(missing.message).toMatch(/data store f: .*nope\.yaml does not exist \(set create: true/);

    const ext = await rejection(
      openDataStore("f", { type: "file", file: join(dir, "x.txt"), create: true }, {}),
    );
    expect(ext.message).toMatch(/set format: yaml or json/);

    const bad = join(dir, "broken.yaml");
    writeFileSync(bad, "a: 1\nb: [unclosed\nc: 3\n");
    const broken = await rejection(openDataStore("f", { type: "file", file: bad }, {}));
    expect(broken.code).toBe("data");
    expect(broken.message).toContain(`data store f: ${bad}:`);
    expect(broken.message).toMatch(/not valid YAML/);

    const badJson = join(dir, "broken.json");
    writeFileSync(badJson, '{"a": ');
    const bj = await rejection(openDataStore("f", { type: "file", file: badJson }, {}));
    expect(bj.message).toContain(`${badJson} is not valid JSON`);

    const list = join(dir, "list.yaml");
    writeFileSync(list, "- a\n- b\n");
    const notMap = await rejection(openDataStore("f", { type: "file", file: list }, {}));
    expect(notMap.message).toMatch(/must hold a mapping of keys to values, not a list/);
  });

  it("a file broken after opening fails the read, naming the file", async () => {
    const file = join(dir, "later.json");
    writeFileSync(file, "{}");
    const s = await openDataStore("f", { type: "file", file }, {});
    writeFileSync(file, "{oops");
    const err = await rejection(s.read("k"));
    expect(err.code).toBe("data");
    expect(err.message).toContain(file);
  });
});

describe("kv store (Choria Streams)", () => {
  it("round trips JSON values in an existing bucket; plain text reads as text", async () => {
    const kv = await createBucket(nc, "PB_DATA");
    const s = await openDataStore("kv", { type: "kv", bucket: "PB_DATA" }, { nc });
    await roundTrip(s, "deploy.version", { v: "1.2.3", hosts: ["a"] });
    await kv.put("plain", "not json");
    expect(await s.read("plain")).toBe("not json");
    await s.write("num", 42);
    expect((await kv.get("num"))?.string()).toBe("42");
  });

  it("creates a missing bucket with create: true, refuses without", async () => {
    const no = await rejection(openDataStore("kv", { type: "kv", bucket: "PB_NEW" }, { nc }));
    expect(no.code).toBe("data");
    expect(no.message).toMatch(/data store kv: opening bucket PB_NEW: .*does not exist \(set create: true/);
    const s = await openDataStore("kv", { type: "kv", bucket: "PB_NEW", create: true }, { nc });
    await s.write("a", "b");
    expect((await (await openBucket(nc, "PB_NEW")).get("a"))?.string()).toBe('"b"');
  });

  it("needs a broker connection; a bad key is a data error", async () => {
    const e = await rejection(openDataStore("kv", { type: "kv", bucket: "PB_DATA" }, {}));
    expect(e.message).toMatch(/needs a connection to the broker/);
    const s = await openDataStore("kv", { type: "kv", bucket: "PB_DATA" }, { nc });
    const bad = await rejection(s.write("bad key!", 1));
    expect(bad.code).toBe("data");
    expect(bad.message).toMatch(/data store kv: writing bad key!/);
  });
});

describe("shell store (Choria's protocol)", () => {
  const script = () => join(dir, "store.sh");
  beforeAll(() => {
    // a real store: one file per key, the protocol's flags and environment checked
    writeFileSync(
      script(),
      `#!/bin/sh
set -e
dir="$STORE_DIR"
[ "$2" = "$CHORIA_DATA_KEY" ] || { echo "key mismatch" >&2; exit 3; }
case "$1" in
  --read) [ "$CHORIA_DATA_ACTION" = read ] && cat "$dir/$CHORIA_DATA_KEY" 2>/dev/null || true ;;
  --write) [ "$CHORIA_DATA_ACTION" = write ] && printf '%s\\n' "$CHORIA_DATA_VALUE" > "$dir/$CHORIA_DATA_KEY" ;;
  --delete) rm -f "$dir/$CHORIA_DATA_KEY" ;;
  *) echo "bad action $1" >&2; exit 2 ;;
esac
`,
    );
    chmodSync(script(), 0o755);
  });

  it("read/write/delete through the command, stdout is the value", async () => {
    const sdir = mkdtempSync(join(dir, "shell-"));
    const s = await openDataStore(
      "sh",
      { type: "shell", command: script(), environment: { STORE_DIR: sdir } },
      {},
    );
    expect(await s.read("version")).toBeUndefined(); // no output: no value
    await s.write("version", "1.2.3");
    expect(readFileSync(join(sdir, "version"), "utf8")).toBe("1.2.3\n");
    expect(await s.read("version")).toBe("1.2.3");
    await s.write("obj", { a: 1 });
    expect(await s.read("obj")).toBe('{"a":1}');
    await s.delete("version");
    expect(existsSync(join(sdir, "version"))).toBe(false);
  });

  it("a failing command, a bad key and a timeout are data errors", async () => {
    const fail = await openDataStore("sh", { type: "shell", command: "echo broken >&2; exit 4; :" }, {});
    const e = await rejection(fail.read("k"));
    expect(e.code).toBe("data");
    expect(e.message).toMatch(/data store sh: could not read key k: .* exited 4: broken/);

    const s = await openDataStore("sh", { type: "shell", command: script() }, {});
    expect((await rejection(s.read("no/slash"))).message).toMatch(/must match/);

    const slow = await openDataStore("sh", { type: "shell", command: "sleep 5; :", timeout: "200ms" }, {});
    const t0 = Date.now();
    const te = await rejection(slow.read("k"));
    expect(te.message).toMatch(/did not finish within 200ms/);
    expect(Date.now() - t0).toBeLessThan(3000);
  });
});

describe("openDataStores", () => {
  it("opens them all, or none: an unknown type names consul/etcd's replacement", async () => {
    const ok = await openDataStores({ a: { type: "memory" }, b: { type: "environment" } }, {});
    expect(Object.keys(ok)).toEqual(["a", "b"]);
    expect(ok.b?.type).toBe("environment");
    const err = await rejection(
      openDataStores({ a: { type: "memory" }, c: { type: "consul" } as unknown as DataStoreDef }, {}),
    );
    expect(err.message).toMatch(
      /data store c: unknown type consul: Chorus has no consul or etcd store, use kv/,
    );
  });
});
