import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { closeNats, connectNats, type NatsConnection } from "../../../src/core/connector/index.js";
import {
  MachineManager,
  machineSpecPublicKey,
  signMachineSpec,
  streamsMachineKv,
  type ManagedMachine,
} from "../../../src/services/machines/index.js";
import { createBucket } from "../../../src/services/streams/index.js";
import { startNats, type TestNats } from "../../helpers/nats.js";
import { fileServer, makeArchive } from "./archive-fixtures.js";
import { recordingServices, sleep, tempDir, waitFor } from "./helpers.js";

let nats: TestNats;
let nc: NatsConnection;
let srv: Awaited<ReturnType<typeof fileServer>>;
const served = new Map<string, string>();
const jsStore = mkdtempSync(join(tmpdir(), "chorus-mw-js-"));
const root = tempDir("chorus-mw-");
const seed = randomBytes(32).toString("hex");
const pub = machineSpecPublicKey(seed);
let demo: ManagedMachine;

beforeAll(async () => {
  nats = await startNats(`jetstream { store_dir: "${jsStore}" }`);
  nc = await connectNats({ servers: [nats.url], name: "machines-watcher-test", reconnect: false });
  srv = await fileServer(served);
  // a machine that records each run of its exec watcher
  const a = makeArchive(root, "demo", {
    "machine.yaml": stringify({
      name: "demo",
      version: "1.0.0",
      initial_state: "on",
      transitions: [{ name: "off", from: ["on"], destination: "off" }],
      watchers: [
        {
          name: "tick",
          type: "exec",
          state_match: ["on"],
          interval: "1s",
          properties: { command: "echo ran >> ran.txt" },
        },
      ],
    }),
  });
  served.set("demo.tgz", a.file);
  demo = {
    name: "demo",
    source: srv.url("demo.tgz"),
    checksum: a.checksum,
    verify: "SHA256SUMS",
    verify_checksum: a.sumsChecksum,
  };
});

const managers: MachineManager[] = [];
afterEach(async () => {
  await Promise.all(managers.splice(0).map((m) => m.stop()));
});

afterAll(async () => {
  await srv?.close();
  if (nc) await closeNats(nc);
  await nats?.stop();
  rmSync(jsStore, { recursive: true, force: true });
  rmSync(root, { recursive: true, force: true });
});

/** A store holding one manager machine that polls `bucket`.spec and manages machines from it. */
async function managerFor(bucket: string, type = "machines", props: Record<string, unknown> = {}) {
  const store = mkdtempSync(join(root, "store-"));
  mkdirSync(join(store, "manager"));
  writeFileSync(
    join(store, "manager", "machine.yaml"),
    stringify({
      name: "machine_manager",
      version: "1.0.0",
      initial_state: "MANAGE",
      transitions: [{ name: "enter_maintenance", from: ["MANAGE"], destination: "MAINTENANCE" }],
      watchers: [
        {
          name: "specification",
          type: "kv",
          interval: "1s",
          state_match: ["MANAGE"],
          properties: { bucket, key: "spec", bucket_prefix: false },
        },
        {
          name: "manage_machines",
          type,
          interval: "1s",
          state_match: ["MANAGE"],
          properties: { data_item: "spec", purge_unknown: true, public_key: pub, ...props },
        },
      ],
    }),
  );
  const kv = await createBucket(nc, bucket);
  const rec = recordingServices({ kv: streamsMachineKv(nc) });
  const mgr = new MachineManager({ directory: store, services: rec.services, pollMs: 200 });
  rec.services.manager = mgr;
  managers.push(mgr);
  const snapshot = () =>
    mgr
      .machines()
      .find((m) => m.name === "machine_manager")
      ?.watcherSnapshots()
      .find((w) => w.name === "manage_machines")?.state ?? {};
  return { store, kv, mgr, snapshot };
}

describe("machines watcher", () => {
  it("installs and runs a machine from a signed spec in KV, and purges it when the spec drops it", async () => {
    const { store, kv, mgr, snapshot } = await managerFor("MACHINES1");
    await kv.put("spec", signMachineSpec([demo], seed));
    await mgr.start();

    await waitFor(() => mgr.machines().some((m) => m.name === "demo"), 10_000, "demo to be installed");
    const m = mgr.machines().find((x) => x.name === "demo")!;
    expect(m.source).toBe("spec");
    expect(m.directory).toBe(join(store, "mm", "demo"));
    // it runs: its exec watcher writes in its own directory
    await waitFor(() => existsSync(join(store, "mm", "demo", "ran.txt")), 10_000, "demo to run");
    expect(snapshot()).toMatchObject({ machines: ["demo"], previous_outcome: expect.any(String) });
    // steady state: later runs only re-verify, the machine is not restarted
    await sleep(1500);
    expect(mgr.machines().find((x) => x.name === "demo")).toBe(m);

    // a tampered machine is fetched again and restarted
    const yamlFile = join(store, "mm", "demo", "machine.yaml");
    const original = readFileSync(yamlFile, "utf8");
    writeFileSync(yamlFile, original.replace("echo ran", "echo pwned"));
    await waitFor(
      () => mgr.machines().find((x) => x.name === "demo") !== m,
      10_000,
      "demo to be reinstalled",
    );
    expect(readFileSync(yamlFile, "utf8")).toBe(original);

    await kv.put("spec", signMachineSpec([], seed));
    await waitFor(() => !mgr.machines().some((x) => x.name === "demo"), 10_000, "demo to be purged");
    await waitFor(() => !existsSync(join(store, "mm", "demo")), 5000, "demo's directory to be removed");
    // the manager machine itself keeps running
    expect(mgr.machines().map((x) => x.name)).toEqual(["machine_manager"]);
  });

  it("refuses forged specs: other key, tampered entry, unsigned; nothing is installed and the snapshot says why", async () => {
    const { store, kv, mgr, snapshot } = await managerFor("MACHINES2", "plugins", {
      manager_machine_prefix: "plugin",
    });
    await kv.put("spec", signMachineSpec([demo], randomBytes(32).toString("hex")));
    await mgr.start();
    await waitFor(
      () => /does not verify/.test(String(snapshot().error)),
      10_000,
      "the forged spec to be refused",
    );
    expect(snapshot()).toMatchObject({ previous_outcome: "error", plugins: [] });
    const data = () =>
      (mgr
        .machines()
        .find((m) => m.name === "machine_manager")
        ?.data() ?? {}) as { spec?: { plugins?: string } };
    const first = data().spec?.plugins;
    expect(first).toBeDefined();

    // a valid signature over other content, with an entry swapped in
    const good = JSON.parse(signMachineSpec([demo], seed)) as { plugins: string; signature: string };
    const evil = [{ ...demo, source: srv.url("evil.tgz") }];
    await kv.put(
      "spec",
      JSON.stringify({
        plugins: Buffer.from(JSON.stringify(evil)).toString("base64"),
        signature: good.signature,
      }),
    );
    await waitFor(
      () => data().spec?.plugins !== undefined && data().spec?.plugins !== first,
      10_000,
      "the new spec",
    );
    await sleep(1200);
    expect(String(snapshot().error)).toMatch(/does not verify/);

    await kv.put("spec", JSON.stringify({ plugins: good.plugins }));
    await waitFor(
      () => /not signed/.test(String(snapshot().error)),
      10_000,
      "the unsigned spec to be refused",
    );

    expect(mgr.machines().map((x) => x.name)).toEqual(["machine_manager"]);
    expect(existsSync(join(store, "plugin"))).toBe(false);

    // and the genuine spec then installs
    await kv.put("spec", JSON.stringify(good));
    await waitFor(() => mgr.machines().some((m) => m.name === "demo"), 10_000, "demo to be installed");
    expect(snapshot().error).toBeUndefined();
    expect(existsSync(join(store, "plugin", "demo", "machine.yaml"))).toBe(true);
  });
});
