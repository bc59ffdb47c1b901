import {
  existsSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../../src/core/util/index.js";
import {
  MachineError,
  WATCHER_TYPES,
  ensureArchive,
  type WatcherDef,
  type WatcherHost,
} from "../../../src/services/machines/index.js";
import { fileServer, makeArchive } from "./archive-fixtures.js";
import { tempDir } from "./helpers.js";

interface Recorded {
  host: WatcherHost;
  successes: (string | undefined)[];
  failures: (string | undefined)[];
}

function testHost(directory: string): Recorded {
  const successes: (string | undefined)[] = [];
  const failures: (string | undefined)[] = [];
  const data: Record<string, unknown> = {};
  return {
    successes,
    failures,
    host: {
      machineName: "test",
      machineVersion: "1.0.0",
      directory,
      services: { identity: "node1.example.net" },
      state: () => "MANAGE",
      data: () => data,
      dataPut: (k, v) => (data[k] = v),
      dataDelete: (k) => delete data[k],
      success: (i) => successes.push(i),
      fail: (i) => failures.push(i),
      fire() {},
      announce() {},
      log: silentLogger,
    },
  };
}

const root = tempDir("chorus-archive-");
const served = new Map<string, string>();
let srv: Awaited<ReturnType<typeof fileServer>>;
const good = () => makeArchive(root, "demo", { "machine.yaml": "name: demo\n", "run.sh": "echo hi\n" });

beforeAll(async () => {
  srv = await fileServer(served, "bob:secret");
});
afterAll(async () => {
  await srv?.close();
  rmSync(root, { recursive: true, force: true });
});

function archiveDef(props: Record<string, unknown>): WatcherDef {
  return { name: "download", type: "archive", properties: props };
}

describe("archive watcher", () => {
  it("downloads over HTTP with basic auth, verifies, extracts and then only re-verifies", async () => {
    const a = good();
    served.set("good.tgz", a.file);
    const target = mkdtempSync(join(root, "target-"));
    const rec = testHost(root);
    const w = WATCHER_TYPES.archive!(
      archiveDef({
        source: srv.url("good.tgz"),
        checksum: a.checksum,
        target,
        creates: "demo",
        verify: "SHA256SUMS",
        verify_checksum: a.sumsChecksum,
        username: "bob",
        password: "secret",
      }),
      rec.host,
      "watchers[0]",
    );
    const before = srv.hits();
    await w.run!(new AbortController().signal);
    expect(rec.failures).toEqual([]);
    expect(rec.successes).toHaveLength(1);
    expect(readFileSync(join(target, "demo", "run.sh"), "utf8")).toBe("echo hi\n");
    expect(w.snapshot()).toMatchObject({ previous_outcome: "downloaded", creates: "demo" });
    // no temporary directories are left behind
    expect(readdirSync(target)).toEqual(["demo"]);

    await w.run!(new AbortController().signal);
    expect(w.snapshot().previous_outcome).toBe("verified");
    expect(srv.hits() - before).toBe(1);
  });

  it("refuses a download whose checksum does not match and leaves the target alone", async () => {
    const a = good();
    served.set("mismatch.tgz", a.file);
    const target = mkdtempSync(join(root, "target-"));
    const rec = testHost(root);
    const w = WATCHER_TYPES.archive!(
      archiveDef({
        source: srv.url("mismatch.tgz"),
        checksum: "0".repeat(64),
        target,
        creates: "demo",
        username: "bob",
        password: "secret",
      }),
      rec.host,
      "watchers[0]",
    );
    await w.run!(new AbortController().signal);
    expect(rec.successes).toEqual([]);
    expect(rec.failures[0]).toMatch(/checksum .* does not match/);
    expect(w.snapshot().previous_outcome).toBe("error");
    expect(readdirSync(target)).toEqual([]);
  });

  it("re-fetches a tampered tree", async () => {
    const a = good();
    const target = mkdtempSync(join(root, "target-"));
    const spec = {
      source: a.file,
      checksum: a.checksum,
      target,
      creates: "demo",
      verify: "SHA256SUMS",
      verifyChecksum: a.sumsChecksum,
    };
    expect((await ensureArchive(spec)).state).toBe("downloaded");
    writeFileSync(join(target, "demo", "run.sh"), "rm -rf /\n");
    const warnings: string[] = [];
    const res = await ensureArchive(spec, { log: { info() {}, warn: (m) => warnings.push(m) } });
    expect(res.state).toBe("downloaded");
    expect(warnings[0]).toMatch(/run\.sh does not match its checksum/);
    expect(readFileSync(join(target, "demo", "run.sh"), "utf8")).toBe("echo hi\n");
    // a replaced SHA256SUMS is caught by verify_checksum
    writeFileSync(join(target, "demo", "SHA256SUMS"), "");
    expect((await ensureArchive(spec)).state).toBe("downloaded");
    expect((await ensureArchive(spec)).state).toBe("verified");
  });

  it("refuses archives with .. entries, absolute names or links, extracting nothing", async () => {
    const outside = join(root, "evil");
    writeFileSync(outside, "evil\n");
    const dotdot = makeArchive(root, "demo", { "machine.yaml": "x" }, { extra: () => ["../evil"] });
    const abs = makeArchive(root, "demo", { "machine.yaml": "x" }, { extra: () => [outside] });
    const link = makeArchive(
      root,
      "demo",
      { "machine.yaml": "x" },
      {
        extra: (b) => {
          symlinkSync("/etc/passwd", join(b, "demo", "passwd"));
          return [];
        },
      },
    );
    for (const [a, why] of [
      [dotdot, /outside the target/],
      [abs, /outside the target/],
      [link, /not a regular file or directory/],
    ] as const) {
      const target = mkdtempSync(join(root, "target-"));
      // relative to the machine directory: `build-*` is where makeArchive ran
      await expect(
        ensureArchive({ source: a.file, checksum: a.checksum, target, creates: "demo" }),
      ).rejects.toThrow(why);
      expect(readdirSync(target)).toEqual([]);
      expect(existsSync(join(target, "..", "..", "evil"))).toBe(false);
    }
  });

  it("refuses content that does not match SHA256SUMS", async () => {
    const a = makeArchive(root, "demo", { "run.sh": "echo hi\n" }, { sums: `${"1".repeat(64)}  run.sh\n` });
    const target = mkdtempSync(join(root, "target-"));
    await expect(
      ensureArchive({
        source: a.file,
        checksum: a.checksum,
        target,
        creates: "demo",
        verify: "SHA256SUMS",
        verifyChecksum: a.sumsChecksum,
      }),
    ).rejects.toThrow(/run\.sh does not match its checksum/);
    expect(readdirSync(target)).toEqual([]);
  });

  it("checks properties, naming the path", () => {
    const rec = testHost(root);
    const mk = (p: Record<string, unknown>) => () =>
      WATCHER_TYPES.archive!(archiveDef(p), rec.host, "watchers[2]");
    const base = { source: "http://x/a.tgz", checksum: "a".repeat(64), target: "t", creates: "demo" };
    expect(mk({ ...base, checksum: undefined })).toThrow("watchers[2].properties.checksum: is required");
    expect(mk({ ...base, checksum: "abc" })).toThrow(/watchers\[2\]\.properties\.checksum: must be a sha256/);
    expect(mk({ ...base, creates: "../x" })).toThrow(/properties\.creates/);
    expect(mk({ ...base, verify: "SHA256SUMS" })).toThrow(/verify_checksum: is required/);
    expect(mk({ ...base, username: "bob" })).toThrow(/password: is required/);
    expect(mk({ ...base, source: "ftp://x/a.tgz" })).toThrow(MachineError);
  });
});
