import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { loadManifestFile } from "../../../src/services/machines/manifest.js";
import { Machine } from "../../../src/services/machines/machine.js";
import { MachineError } from "../../../src/services/machines/errors.js";
import {
  isScoutMachine,
  loadScoutChecks,
  materializeScoutChecks,
  SCOUT_CHECK_MARKER,
  scoutCheckManifest,
  scoutCheckState,
  scoutCheckWire,
  scoutTransition,
  scoutTransitionChecks,
  type ScoutCheckDefinition,
} from "../../../src/services/machines/scout.js";
import type { TransitionEventData } from "../../../src/services/machines/types.js";

let dir: string;
const machines: Machine[] = [];
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "chorus-scout-"));
});
afterEach(async () => {
  await Promise.all(machines.splice(0).map((m) => m.stop()));
  rmSync(dir, { recursive: true, force: true });
});

function startCheck(def: ScoutCheckDefinition, metrics?: Registry) {
  const m = new Machine({
    manifest: scoutCheckManifest(def),
    directory: dir,
    services: { identity: "node1", ...(metrics ? { metrics } : {}) },
    splayMs: 0,
  });
  const events: TransitionEventData[] = [];
  m.onTransition((e) => events.push(e));
  machines.push(m);
  m.start();
  return { m, events, path: () => events.map((e) => `${e.from_state}>${e.transition}>${e.to_state}`) };
}

const lines = (f: string) => (existsSync(f) ? readFileSync(f, "utf8").split("\n").filter(Boolean).length : 0);

describe("scout check manifests", () => {
  it("builds go-choria's check machine with defaults", () => {
    const m = scoutCheckManifest({
      name: "mailq",
      plugin: "/usr/lib/nagios/plugins/check_mailq",
      arguments: "-w 5 -c 10",
      remediate_command: "/usr/local/bin/runq.sh",
    });
    expect(m.initial_state).toBe("UNKNOWN");
    const check = m.watchers.find((w) => w.name === "check")!;
    expect(check).toMatchObject({
      type: "nagios",
      interval: "5m",
      state_match: ["UNKNOWN", "OK", "WARNING", "CRITICAL"],
      properties: { plugin: "/usr/lib/nagios/plugins/check_mailq -w 5 -c 10", timeout: "10s" },
    });
    expect(m.watchers.find((w) => w.name === "remediate")).toMatchObject({
      type: "exec",
      interval: "15m",
      state_match: ["CRITICAL"],
      success_transition: "UNKNOWN",
      properties: { command: "/usr/local/bin/runq.sh" },
    });
    const t = Object.fromEntries(m.transitions.map((x) => [x.name, x]));
    expect(t.RESUME).toMatchObject({ from: ["MAINTENANCE"], destination: "FORCE_CHECK" });
    expect(t.FORCE_CHECK!.from).not.toContain("MAINTENANCE");
    expect(t.MAINTENANCE!.from).toContain("FORCE_CHECK");
    expect(isScoutMachine({ manifest: m })).toBe(true);
    // no remediation command: no remediate watcher
    expect(scoutCheckManifest({ name: "hb", builtin: "heartbeat" }).watchers).toHaveLength(1);
  });

  it.each([
    [{ name: "xy" }, "scout check xy: plugin or builtin is required"],
    [{ name: "1bad", builtin: "heartbeat" }, "scout check 1bad.name:"],
    [{ name: "ab", plugin: "p", builtin: "heartbeat" }, "set plugin or builtin, not both"],
    [{ name: "ab", plugin: "p", timeout: "ages" }, "scout check ab.timeout: invalid duration"],
    [
      { name: "ab", plugin: "p", check_interval: "100ms" },
      "scout check ab.check_interval: must be at least 500ms",
    ],
    [
      { name: "ab", plugin: "p", remediate_states: ["BROKEN"] },
      "scout check ab.remediate_states[0]: must be one of",
    ],
    [{ name: "ab", builtin: "choria_status" }, "scout check ab.last_message: is required"],
    [{ name: "ab", builtin: "heartbeat", arguments: "-x" }, "scout check ab.arguments: only a plugin"],
  ])("refuses %j naming the field", (def, msg) => {
    expect(() => scoutCheckManifest(def as ScoutCheckDefinition)).toThrow(msg);
  });
});

describe("scout check machines", () => {
  it("CRITICAL runs the remediation and the next check is OK", async () => {
    const fixed = join(dir, "fixed");
    const remediations = join(dir, "remediations");
    const { m, path } = startCheck({
      name: "svc",
      plugin: `test -f ${fixed} && echo "OK: up|conns=3" && exit 0; echo "CRITICAL: down|conns=0"; exit 2`,
      check_interval: "1s",
      remediate_command: `echo run >> ${remediations}; touch ${fixed}`,
      remediate_interval: "1m",
    });
    await expect.poll(() => m.state(), { timeout: 5000 }).toBe("OK");
    expect(path()).toEqual(["UNKNOWN>CRITICAL>CRITICAL", "CRITICAL>UNKNOWN>UNKNOWN", "UNKNOWN>OK>OK"]);
    expect(lines(remediations)).toBe(1);
    const st = scoutCheckState(m);
    expect(st).toMatchObject({
      name: "svc",
      state: "OK",
      status: "OK",
      status_code: 0,
      output: "OK: up|conns=3",
    });
    expect(st.perfdata).toEqual([{ label: "conns", value: 3, unit: "" }]);
    expect(st.history.map((h) => h.status)).toEqual([2, 0]);
    const wire = scoutCheckWire(m, "node1");
    expect(wire).toMatchObject({ name: "svc", state: "OK", version: "1.0.0", start_time: m.startTime });
    expect(wire.status).toMatchObject({
      protocol: "io.choria.machine.watcher.nagios.v1.state",
      identity: "node1",
      id: m.id,
      machine: "svc",
      name: "check",
      type: "nagios",
      status: "OK",
    });
  });

  it("maintenance stops checks, resume checks at once, trigger checks now", async () => {
    const runs = join(dir, "runs");
    const reg = new Registry();
    const { m, path } = startCheck(
      { name: "disk", plugin: `echo x >> ${runs}; echo "DISK OK"`, check_interval: "1s" },
      reg,
    );
    await expect.poll(() => m.state()).toBe("OK");
    expect(await reg.metrics()).toContain('choria_machine_nagios_watcher_status{name="disk",status="OK"} 0');

    expect(scoutTransition(m, "maintenance")).toBe("transitioned");
    expect(m.state()).toBe("MAINTENANCE");
    expect(scoutTransition(m, "trigger")).toBe("skipped");
    const during = lines(runs);
    await new Promise((r) => setTimeout(r, 2500));
    expect(lines(runs)).toBe(during);
    expect(scoutCheckState(m).state).toBe("MAINTENANCE");

    expect(scoutTransition(m, "resume")).toBe("transitioned");
    await expect.poll(() => lines(runs), { timeout: 3000 }).toBeGreaterThanOrEqual(during + 1);
    await expect.poll(() => m.state()).toBe("OK");
    expect(scoutTransition(m, "resume")).toBe("skipped");
    expect(path().slice(-3)).toEqual([
      "OK>MAINTENANCE>MAINTENANCE",
      "MAINTENANCE>RESUME>FORCE_CHECK",
      "FORCE_CHECK>OK>OK",
    ]);
  });

  it("trigger runs the check immediately rather than at the next interval", async () => {
    const runs = join(dir, "runs");
    const { m } = startCheck({ name: "slow", plugin: `echo x >> ${runs}`, check_interval: "1h" });
    await expect.poll(() => m.state()).toBe("OK");
    expect(lines(runs)).toBe(1);
    const res = scoutTransitionChecks([m], [], "trigger");
    expect(res).toEqual({ transitioned: ["slow"], failed: [], skipped: [] });
    await expect.poll(() => lines(runs), { timeout: 3000 }).toBe(2);
    await expect.poll(() => m.state()).toBe("OK");
    // the check's return to OK (where it is active again) does not run it a second time
    await new Promise((r) => setTimeout(r, 300));
    expect(lines(runs)).toBe(2);
    expect(scoutCheckState(m).history).toHaveLength(2);
    expect(scoutTransitionChecks([m], ["slow", "nope"], "maintenance")).toEqual({
      transitioned: ["slow"],
      failed: ["nope"],
      skipped: [],
    });
  });
});

describe("scout checks interrupted", () => {
  it("a trigger during a running check discards the interrupted run and checks again", async () => {
    const runs = join(dir, "runs");
    const { m, path } = startCheck({
      name: "slow",
      plugin: `sleep 0.4; echo x >> ${runs}; echo "OK: done"`,
      check_interval: "1h",
    });
    await new Promise((r) => setTimeout(r, 100));
    expect(scoutTransition(m, "trigger")).toBe("transitioned");
    await expect.poll(() => m.state(), { timeout: 3000 }).toBe("OK");
    // the killed first run left no result and no UNKNOWN transition
    expect(path()).toEqual(["UNKNOWN>FORCE_CHECK>FORCE_CHECK", "FORCE_CHECK>OK>OK"]);
    expect(lines(runs)).toBe(1);
    expect(scoutCheckState(m).history).toHaveLength(1);
  });

  it("entering maintenance during a running check does not leave maintenance", async () => {
    const { m, path } = startCheck({ name: "slow2", plugin: "sleep 0.4; exit 2", check_interval: "1h" });
    await new Promise((r) => setTimeout(r, 100));
    expect(scoutTransition(m, "maintenance")).toBe("transitioned");
    await new Promise((r) => setTimeout(r, 700));
    expect(m.state()).toBe("MAINTENANCE");
    expect(path()).toEqual(["UNKNOWN>MAINTENANCE>MAINTENANCE"]);
  });
});

describe("scout_checks.yaml", () => {
  it("loads checks from a map or a list, merging node annotations", () => {
    const f = join(dir, "scout_checks.yaml");
    writeFileSync(
      f,
      [
        "annotations: { environment: dev, team: core }",
        "checks:",
        "  heartbeat: { builtin: heartbeat, check_interval: 1m }",
        "  mailq:",
        "    plugin: /usr/lib/nagios/plugins/check_mailq",
        "    arguments: -w 5",
        "    annotations: { team: mail }",
      ].join("\n"),
    );
    expect(loadScoutChecks(f)).toEqual([
      {
        name: "heartbeat",
        builtin: "heartbeat",
        check_interval: "1m",
        annotations: { environment: "dev", team: "core" },
      },
      {
        name: "mailq",
        plugin: "/usr/lib/nagios/plugins/check_mailq",
        arguments: "-w 5",
        annotations: { environment: "dev", team: "mail" },
      },
    ]);
    writeFileSync(f, "checks:\n  - { name: a1, builtin: heartbeat }\n");
    expect(loadScoutChecks(f).map((c) => c.name)).toEqual(["a1"]);
  });

  it("names the file and key of a bad check", () => {
    const f = join(dir, "scout_checks.yaml");
    writeFileSync(f, "checks:\n  mailq:\n    plugin: x\n    timeout: forever\n");
    expect(() => loadScoutChecks(f)).toThrow(`${f}: checks.mailq.timeout: invalid duration`);
    writeFileSync(f, "checks:\n  - { name: a1, builtin: heartbeat }\n  - { name: a1, builtin: heartbeat }\n");
    expect(() => loadScoutChecks(f)).toThrow(`${f}: checks[1].name: duplicate check "a1"`);
    writeFileSync(f, "checks: [\n");
    expect(() => loadScoutChecks(f)).toThrow(/does not parse/);
    expect(() => loadScoutChecks(join(dir, "missing.yaml"))).toThrow(MachineError);
  });

  it("materializes checks as machine directories and removes only its own", () => {
    const store = join(dir, "machines");
    mkdirSync(join(store, "other"), { recursive: true });
    writeFileSync(join(store, "other", "machine.yaml"), "name: other\n");
    const defs: ScoutCheckDefinition[] = [
      { name: "hb", builtin: "heartbeat" },
      { name: "svc", plugin: "true", remediate_command: "true" },
    ];
    expect(materializeScoutChecks(defs, store)).toEqual({
      written: ["hb", "svc"],
      unchanged: [],
      removed: [],
    });
    const loaded = loadManifestFile(join(store, "svc", "machine.yaml"));
    expect(loaded).toEqual(scoutCheckManifest(defs[1]!));
    expect(materializeScoutChecks(defs, store)).toEqual({
      written: [],
      unchanged: ["hb", "svc"],
      removed: [],
    });
    expect(materializeScoutChecks([defs[0]!], store)).toEqual({
      written: [],
      unchanged: ["hb"],
      removed: ["svc"],
    });
    expect(existsSync(join(store, "svc"))).toBe(false);
    expect(existsSync(join(store, "other", "machine.yaml"))).toBe(true);
    expect(existsSync(join(store, "hb", SCOUT_CHECK_MARKER))).toBe(true);
    expect(() => materializeScoutChecks([{ name: "other", builtin: "heartbeat" }], store)).toThrow(
      /not made from a Scout check/,
    );
  });
});
