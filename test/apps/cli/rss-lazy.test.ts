import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CloudEvent } from "cloudevents";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { COMMANDS } from "../../../src/apps/cli/launch.js";
import { buildProgram } from "../../../src/apps/cli/main.js";
import {
  LIFECYCLE_SOURCE,
  LIFECYCLE_TYPES,
  encodeLifecycleEvent,
  newLifecycleEvent,
  protocolFor,
} from "../../../src/services/lifecycle/index.js";
import { startSecureFleet, type SecureFleet } from "../../helpers/fleet.js";

const BIN = fileURLToPath(new URL("../../../bin/chorus.js", import.meta.url));
const NODE = "rss1.example.net";

// Code an idle `chorus server run` must not load (docs/performance.md, idle server
// memory): other commands' layers, and packages only some configurations need.
const FORBIDDEN = [
  /\/dist\/(client|broker|services\/streams|apps\/(codegen|setup|emulator|demo))\//,
  // the launcher and what it shares with every command (errors, flag parsing) may load
  /\/dist\/apps\/cli\/(?!(launch|server|errors|flags)\.js)[a-z/-]+\.js/,
  /\/node_modules\/(cli-progress|prom-client|yaml|cloudevents|@nats-io\/jetstream|@nats-io\/kv)\//,
];

// Records every ESM module (loader hook) and CommonJS file (Module._load) the
// process loads, and writes the list when it exits.
const RECORDER = `
import { register, createRequire } from "node:module";
import { writeFileSync } from "node:fs";
const out = process.env.RSS_TEST_OUT;
const seen = new Set();
const { port1, port2 } = new MessageChannel();
port1.on("message", (u) => seen.add(u));
port1.unref();
register("data:text/javascript," + encodeURIComponent(\`
let port;
export function initialize(d) { port = d.port; }
export async function load(url, ctx, next) { port.postMessage(url); return next(url, ctx); }
\`), { data: { port: port2 }, transferList: [port2] });
const Module = createRequire(import.meta.url)("module");
const orig = Module._load;
Module._load = function (request, parent, isMain) {
  try { seen.add(Module._resolveFilename(request, parent, isMain)); } catch {}
  return orig.apply(this, arguments);
};
process.on("exit", () => writeFileSync(out, [...seen].join("\\n")));
`;

describe("chorus server run: loads only what an idle node needs", () => {
  let fleet: SecureFleet;
  let dir: string;
  beforeAll(async () => {
    fleet = await startSecureFleet({ servers: [NODE] });
    dir = mkdtempSync(join(tmpdir(), "chorus-rss-"));
  }, 60_000);
  afterAll(async () => {
    await fleet?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("starts, publishes its startup event, and stops without client, emulator, codegen or optional packages", async () => {
    const hook = join(dir, "recorder.mjs");
    const out = join(dir, "modules.txt");
    writeFileSync(hook, RECORDER);
    const child = spawn(
      process.execPath,
      ["--import", hook, BIN, "server", "run", "--config", fleet.setup.serverConfigs[NODE] as string],
      { env: { ...process.env, RSS_TEST_OUT: out }, stdio: ["ignore", "pipe", "pipe"] },
    );
    let log = "";
    child.stdout.on("data", (d: Buffer) => (log += d.toString()));
    child.stderr.on("data", (d: Buffer) => (log += d.toString()));
    const exited = new Promise<number | null>((r) => child.once("exit", r));
    for (let i = 0; i < 200 && !log.includes("server started"); i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(log).toContain("server started");
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
    const loaded = readFileSync(out, "utf8").split("\n");
    // the recorder saw the server itself (so an empty list cannot pass)
    expect(loaded.some((m) => /\/dist\/server\/server\.js$/.test(m))).toBe(true);
    expect(loaded.some((m) => m.includes("/node_modules/pino/"))).toBe(true);
    expect(loaded.filter((m) => FORBIDDEN.some((re) => re.test(m)))).toEqual([]);
  }, 60_000);
});

describe("lazy CLI dispatch", () => {
  it("knows every top-level command and alias of the full program", async () => {
    const names = (await buildProgram()).commands.flatMap((c) => [c.name(), ...c.aliases()]);
    expect(Object.keys(COMMANDS).sort()).toEqual(names.sort());
  });
});

describe("lifecycle events without the cloudevents SDK", () => {
  it("encodes the same bytes the SDK did, for every event type", () => {
    for (const type of LIFECYCLE_TYPES) {
      const ev = newLifecycleEvent(type, {
        identity: "n1.example.net",
        component: "server",
        version: "1.2.3",
        newVersion: "1.2.4",
        governor: "G",
        sequence: 2,
        eventType: "exit",
        timestamp: 1_700_000_000,
      });
      const sdk = new CloudEvent({
        specversion: "1.0",
        id: ev.id,
        source: LIFECYCLE_SOURCE,
        type: protocolFor(type),
        subject: ev.identity,
        time: new Date(ev.timestamp * 1000).toISOString(),
        datacontenttype: "application/json",
        data: ev,
      });
      expect(Buffer.from(encodeLifecycleEvent(ev)).toString()).toBe(JSON.stringify(sdk));
    }
  });

  it("still refuses an event without id or identity", () => {
    const ev = newLifecycleEvent("startup", { identity: "n1", component: "server", version: "1" });
    expect(() => encodeLifecycleEvent({ ...ev, id: "" })).toThrow(/id and an identity/);
    expect(() => encodeLifecycleEvent({ ...ev, identity: "" })).toThrow(/id and an identity/);
  });
});
