import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Ajv } from "ajv";
import { Registry } from "prom-client";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { silentLogger } from "../../../src/core/util/index.js";
import { MachineError } from "../../../src/services/machines/errors.js";
import { Machine } from "../../../src/services/machines/machine.js";
import type { MachineHostServices, WatcherDef, WatcherHost } from "../../../src/services/machines/types.js";
import {
  checkChoriaStatus,
  nagiosWatcher,
  parseNagiosOutput,
  parsePerfData,
} from "../../../src/services/machines/watchers/nagios.js";
import { recordingServices, waitFor } from "./helpers.js";

/** A WatcherHost that records what the watcher asked for. */
function makeHost(directory: string, services: Partial<MachineHostServices> = {}) {
  const fired: string[] = [];
  let announced = 0;
  let state = "UNKNOWN";
  const host: WatcherHost = {
    machineName: "check_m",
    machineVersion: "1.0.0",
    directory,
    services: { identity: "node1", ...services },
    state: () => state,
    data: () => ({}),
    dataPut: () => undefined,
    dataDelete: () => undefined,
    success: () => undefined,
    fail: () => undefined,
    fire: (t) => {
      fired.push(t);
      state = t;
    },
    announce: () => {
      announced++;
    },
    log: silentLogger,
  };
  return {
    host,
    fired,
    announced: () => announced,
    setState: (s: string) => (state = s),
  };
}

const def = (properties: Record<string, unknown>, extra: Partial<WatcherDef> = {}): WatcherDef => ({
  name: "check",
  type: "nagios",
  properties,
  ...extra,
});

const run = (w: { run?: (s: AbortSignal) => Promise<void> }) => w.run!(new AbortController().signal);

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "chorus-nagios-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe("perfdata parsing", () => {
  it("parses value, unit, thresholds, min and max", () => {
    expect(parsePerfData("time=0.5s;1;2;0;10 load=3")).toEqual([
      { label: "time", value: 0.5, unit: "s", warning: "1", critical: "2", min: 0, max: 10 },
      { label: "load", value: 3, unit: "" },
    ]);
  });

  it("handles quoted labels with spaces and escaped quotes", () => {
    expect(parsePerfData("'disk used'=80%;90;95 'it''s'=1c")).toEqual([
      { label: "disk_used", value: 80, unit: "%", warning: "90", critical: "95" },
      { label: "it's", value: 1, unit: "c" },
    ]);
  });

  it("skips garbage and unknown values but keeps the good items", () => {
    expect(parsePerfData("garbage x= =5 y=U z=abc ok=-1.5e2MB 'unterminated=3")).toEqual([
      { label: "ok", value: -150, unit: "MB" },
    ]);
  });

  it("splits text from perfdata, including long output lines", () => {
    expect(parseNagiosOutput("OK: all good")).toEqual({ text: "OK: all good", perfdata: [] });
    const r = parseNagiosOutput("DISK OK | root=10%\nline two\nline three | home=20%\nvar=30%\n");
    expect(r.text).toBe("DISK OK\nline two\nline three");
    expect(r.perfdata.map((p) => [p.label, p.value])).toEqual([
      ["root", 10],
      ["home", 20],
      ["var", 30],
    ]);
  });
});

describe("nagios watcher with plugins", () => {
  it.each([
    [0, "OK"],
    [1, "WARNING"],
    [2, "CRITICAL"],
    [3, "UNKNOWN"],
    [7, "UNKNOWN"],
  ])("exit %i fires %s and records the result", async (code, status) => {
    const h = makeHost(dir);
    const w = nagiosWatcher(
      def({ plugin: `echo "result ${code}|t=${code}s;1;2"; exit ${code}`, annotations: { team: "ops" } }),
      h.host,
      "watchers[0]",
    );
    h.setState("OK_BEFORE");
    await run(w);
    expect(h.fired).toEqual([status]);
    const s = w.snapshot();
    expect(s.status).toBe(status);
    expect(s.status_code).toBe(["OK", "WARNING", "CRITICAL", "UNKNOWN"].indexOf(status));
    expect(s.output).toBe(`result ${code}|t=${code}s;1;2`);
    expect(s.perfdata).toEqual([{ label: "t", value: code, unit: "s", warning: "1", critical: "2" }]);
    expect(s.annotations).toEqual({ team: "ops" });
    expect(s.check_time).toBeGreaterThan(Date.now() / 1000 - 60);
    const hist = s.history as { status: number; exit_code: number }[];
    expect(hist).toHaveLength(1);
    expect(hist[0]!.exit_code).toBe(code);
    expect(h.announced()).toBe(1);
  });

  it("runs the plugin in the machine directory with the machine's environment", async () => {
    writeFileSync(join(dir, "check_here.sh"), 'echo "$MACHINE_NAME $MACHINE_WATCHER_NAME $(pwd)"\n', {
      mode: 0o755,
    });
    const h = makeHost(dir);
    const w = nagiosWatcher(def({ plugin: "check_here.sh" }), h.host, "watchers[0]");
    await run(w);
    expect(w.snapshot().output).toBe(`check_m check ${dir}`);
    expect(h.fired).toEqual(["OK"]);
  });

  it("a steady result publishes no transition: the engine ignores one into the current state", async () => {
    const rec = recordingServices();
    const m = new Machine({
      manifest: {
        name: "steady",
        version: "1.0.0",
        initial_state: "UNKNOWN",
        transitions: [{ name: "OK", from: ["UNKNOWN", "OK"], destination: "OK" }],
        watchers: [{ name: "check", type: "nagios", interval: "500ms", properties: { plugin: "exit 0" } }],
      },
      directory: dir,
      services: rec.services,
    });
    try {
      m.start();
      const checks = () => (m.watcherSnapshots()[0]!.state.history as unknown[]).length;
      await waitFor(() => checks() >= 3, 5000, "three checks");
      expect(rec.transitions.map((t) => `${t.from_state}>${t.to_state}`)).toEqual(["UNKNOWN>OK"]);
    } finally {
      await m.stop();
    }
  });

  it("keeps only the last 10 results, newest last", async () => {
    const counter = join(dir, "n");
    writeFileSync(counter, "0");
    const h = makeHost(dir);
    const w = nagiosWatcher(
      def({ plugin: `n=$(($(cat ${counter})+1)); echo $n > ${counter}; echo "run $n"; exit $((n % 3))` }),
      h.host,
      "watchers[0]",
    );
    for (let i = 0; i < 13; i++) await run(w);
    const hist = w.snapshot().history as { output: string; status: number }[];
    expect(hist).toHaveLength(10);
    expect(hist.map((x) => x.output)).toEqual([4, 5, 6, 7, 8, 9, 10, 11, 12, 13].map((n) => `run ${n}`));
    expect(hist.map((x) => x.status)).toEqual([4, 5, 6, 7, 8, 9, 10, 11, 12, 13].map((n) => n % 3));
  });

  it("a plugin that runs past its timeout is killed and UNKNOWN", async () => {
    const h = makeHost(dir);
    h.setState("OK");
    const w = nagiosWatcher(
      def({ plugin: "echo started; sleep 5", timeout: "300ms" }),
      h.host,
      "watchers[0]",
    );
    const t0 = Date.now();
    await run(w);
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(h.fired).toEqual(["UNKNOWN"]);
    expect(w.snapshot().output).toMatch(/started\ntimed out after 0.3s/);
  });

  it("a missing plugin is UNKNOWN (exit 127)", async () => {
    const h = makeHost(dir);
    h.setState("OK");
    const w = nagiosWatcher(def({ plugin: "/nonexistent/check_x" }), h.host, "watchers[0]");
    await run(w);
    expect(h.fired).toEqual(["UNKNOWN"]);
    expect((w.snapshot().history as { exit_code: number }[])[0]!.exit_code).toBe(127);
  });

  it("does not re-check within the interval unless forced by FORCE_CHECK", async () => {
    const h = makeHost(dir);
    const counter = join(dir, "c");
    writeFileSync(counter, "");
    const w = nagiosWatcher(
      def({ plugin: `echo x >> ${counter}` }, { interval: "1m" }),
      h.host,
      "watchers[0]",
    );
    await run(w);
    await run(w);
    expect((w.snapshot().history as unknown[]).length).toBe(1);
    h.setState("FORCE_CHECK");
    w.stateChanged!("FORCE_CHECK", false);
    await expect.poll(() => (w.snapshot().history as unknown[]).length).toBe(2);
    expect(h.fired).toEqual(["OK", "OK"]);
  });

  it("reports the state it was moved to from outside", () => {
    const h = makeHost(dir);
    const w = nagiosWatcher(def({ plugin: "true" }), h.host, "watchers[0]");
    w.stateChanged!("CRITICAL", true);
    expect(w.snapshot().status).toBe("CRITICAL");
    w.stateChanged!("MAINTENANCE", false);
    expect(w.snapshot().status).toBe("CRITICAL");
  });

  it("sets the Prometheus gauges after a check and removes them on close", async () => {
    const reg = new Registry();
    const h = makeHost(dir, { metrics: reg });
    const w = nagiosWatcher(def({ plugin: "exit 2" }), h.host, "watchers[0]");
    await run(w);
    let text = await reg.metrics();
    expect(text).toContain('choria_machine_nagios_watcher_status{name="check_m",status="CRITICAL"} 2');
    expect(text).not.toContain('status="UNKNOWN"');
    expect(text).toContain('choria_machine_nagios_watcher_checks_count{name="check_m"} 1');
    expect(text).toMatch(/choria_machine_nagios_watcher_last_run_seconds\{name="check_m"\} \d+/);
    w.stateChanged!("OK", true);
    text = await reg.metrics();
    expect(text).toContain('choria_machine_nagios_watcher_status{name="check_m",status="OK"} 0');
    expect(text).not.toContain('status="CRITICAL"');
    await w.close!();
    expect(await reg.metrics()).not.toContain('name="check_m"');
  });
});

describe("nagios builtins", () => {
  it("heartbeat is OK with the time", async () => {
    const h = makeHost(dir);
    const w = nagiosWatcher(def({ builtin: "heartbeat" }), h.host, "watchers[0]");
    await run(w);
    expect(h.fired).toEqual(["OK"]);
    const out = Number(w.snapshot().output);
    expect(Math.abs(out - Date.now() / 1000)).toBeLessThan(5);
    expect(w.snapshot().builtin).toBe("heartbeat");
    expect(w.snapshot().plugin).toBe("heartbeat");
  });

  // taken per test: a value from collection time drifts by however long earlier tests ran
  let now = 0;
  beforeEach(() => {
    now = Math.floor(Date.now() / 1000);
  });
  const status = (o: Record<string, unknown>) => ({
    identity: "node1",
    uptime: 3600,
    connected_server: "nats://127.0.0.1:4222",
    last_message: now - 10,
    provisioning_mode: false,
    stats: { total: 5, valid: 5, invalid: 0, passed: 4, filtered: 1, replies: 4, ttlexpired: 0, events: 2 },
    version: "0.1.0",
    agents: [],
    updated: now,
    ...o,
  });
  const jwt = (exp: number) =>
    `${Buffer.from('{"alg":"EdDSA"}').toString("base64url")}.${Buffer.from(JSON.stringify({ exp })).toString("base64url")}.sig`;

  it("choria_status: OK with perfdata when connected and recent", () => {
    const f = join(dir, "status.json");
    writeFileSync(f, JSON.stringify(status({})));
    const r = checkChoriaStatus({ identity: "n", statusFile: f }, { lastMessageMs: 60_000 });
    expect(r.status).toBe("OK");
    const perf = parseNagiosOutput(r.output).perfdata;
    expect(perf.find((p) => p.label === "total_msgs")?.value).toBe(5);
    expect(perf.find((p) => p.label === "filtered_msgs")?.value).toBe(1);
    expect(perf.find((p) => p.label === "uptime")?.value).toBe(3600);
  });

  it("choria_status: CRITICAL when not connected, silent too long, or token expiring", () => {
    const f = join(dir, "status.json");
    const tok = join(dir, "server.jwt");
    writeFileSync(f, JSON.stringify(status({ connected_server: "" })));
    expect(checkChoriaStatus({ identity: "n", statusFile: f }, { lastMessageMs: 60_000 }).output).toMatch(
      /^CRITICAL: Not connected/,
    );
    writeFileSync(f, JSON.stringify(status({ last_message: now - 600 })));
    expect(checkChoriaStatus({ identity: "n", statusFile: f }, { lastMessageMs: 60_000 }).output).toMatch(
      /^CRITICAL: last message at/,
    );
    // just started with no message yet: not judged until last_message has passed
    writeFileSync(f, JSON.stringify(status({ last_message: 0, uptime: 5 })));
    expect(checkChoriaStatus({ identity: "n", statusFile: f }, { lastMessageMs: 60_000 }).status).toBe("OK");
    writeFileSync(f, JSON.stringify(status({})));
    writeFileSync(tok, jwt(now + 3600));
    const svc = { identity: "n", statusFile: f, tokenFile: tok };
    expect(checkChoriaStatus(svc, { lastMessageMs: 60_000, tokenExpireMs: 7200_000 }).output).toMatch(
      /^CRITICAL: token expires/,
    );
    const ok = checkChoriaStatus(svc, { lastMessageMs: 60_000, tokenExpireMs: 1800_000 });
    expect(ok.status).toBe("OK");
    const te = parseNagiosOutput(ok.output).perfdata.find((p) => p.label === "token_expire_seconds")!;
    expect(Math.abs(te.value - 3600)).toBeLessThan(5);
    writeFileSync(f, "{not json");
    expect(checkChoriaStatus(svc, { lastMessageMs: 60_000 }).output).toMatch(/^Status file error/);
    expect(checkChoriaStatus({ identity: "n" }, { lastMessageMs: 60_000 }).status).toBe("UNKNOWN");
  });

  it("choria_status as a watcher reads services.statusFile", async () => {
    const f = join(dir, "status.json");
    writeFileSync(f, JSON.stringify(status({ connected_server: "" })));
    const h = makeHost(dir, { statusFile: f });
    const w = nagiosWatcher(def({ builtin: "choria_status", last_message: "1h" }), h.host, "watchers[0]");
    await run(w);
    expect(h.fired).toEqual(["CRITICAL"]);
  });

  it.each([
    [{}, "watchers[2].properties: plugin or builtin is required"],
    [{ plugin: "x", builtin: "heartbeat" }, "watchers[2].properties: set plugin or builtin, not both"],
    [{ builtin: "nope" }, 'watchers[2].properties.builtin: unknown builtin "nope"'],
    [{ builtin: "goss" }, "watchers[2].properties.builtin: the goss builtin is not supported"],
    [{ builtin: "choria_status" }, "watchers[2].properties.last_message: is required"],
    [{ plugin: "x", timeout: "soon" }, "watchers[2].properties.timeout: invalid duration"],
    [{ plugin: "x", annotations: ["a"] }, "watchers[2].properties.annotations: must be a map"],
    [{ plugin: "x", colour: "red" }, "watchers[2].properties.colour: unknown property"],
  ])("refuses bad properties %j naming the key", (props, msg) => {
    const h = makeHost(dir);
    let err: unknown;
    try {
      nagiosWatcher(def(props), h.host, "watchers[2]");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MachineError);
    expect((err as MachineError).code).toBe("bad_watcher");
    expect((err as Error).message).toContain(msg);
  });
});

describe("nagios watcher in a machine", () => {
  it("announces states that validate against Choria's nagios state schema", async () => {
    const states: Record<string, unknown>[] = [];
    const m = new Machine({
      manifest: {
        name: "svc_check",
        version: "1.0.0",
        initial_state: "UNKNOWN",
        transitions: ["OK", "WARNING", "CRITICAL", "UNKNOWN"].map((s) => ({
          name: s,
          from: ["OK", "WARNING", "CRITICAL", "UNKNOWN"],
          destination: s,
        })),
        watchers: [
          {
            name: "check",
            type: "nagios",
            interval: "1m",
            properties: { plugin: "echo 'WARN: slow|rt=1.5s;1;2;0'; exit 1", annotations: { team: "ops" } },
          },
        ],
      },
      directory: dir,
      services: {
        identity: "node1",
        events: { transition: () => undefined, watcherState: (_t, d) => void states.push(d) },
      },
      splayMs: 0,
    });
    m.start();
    try {
      await expect.poll(() => m.state()).toBe("WARNING");
      await expect.poll(() => states.length).toBeGreaterThan(0);
    } finally {
      await m.stop();
    }
    const schema = JSON.parse(
      readFileSync(
        new URL("../../../schemas/choria/machine/watcher/nagios/v1/state.json", import.meta.url),
        "utf8",
      ),
    ) as Record<string, unknown>;
    delete schema.$schema;
    delete schema.id;
    const validate = new Ajv({ strict: false, validateFormats: false }).compile(schema);
    const ev = states[0]!;
    expect(validate(ev), JSON.stringify(validate.errors)).toBe(true);
    expect(ev).toMatchObject({
      protocol: "io.choria.machine.watcher.nagios.v1.state",
      machine: "svc_check",
      name: "check",
      status: "WARNING",
      status_code: 1,
      annotations: { team: "ops" },
    });
  });
});
