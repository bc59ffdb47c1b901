import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import {
  MachineError,
  loadManifestFile,
  parseGoDuration,
  parseManifest,
  type MachineManifest,
} from "../../../src/services/machines/index.js";

const root = mkdtempSync(join(tmpdir(), "chorus-manifest-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function base(): Record<string, unknown> {
  return {
    name: "web",
    version: "1.0.0",
    initial_state: "unknown",
    transitions: [
      { name: "healthy", from: ["unknown", "failed"], destination: "ok" },
      { name: "unhealthy", from: ["unknown", "ok"], destination: "failed" },
    ],
    watchers: [
      {
        name: "check",
        type: "exec",
        state_match: ["unknown", "ok"],
        success_transition: "healthy",
        fail_transition: "unhealthy",
        interval: "10s",
        properties: { command: "./check.sh", timeout: "5s" },
      },
    ],
  };
}

/** the MachineError a manifest gets, or a failure when it is accepted */
function refusal(m: unknown, file = "machine.yaml"): MachineError {
  try {
    parseManifest(typeof m === "string" ? m : stringify(m), file);
  } catch (err) {
    expect(err).toBeInstanceOf(MachineError);
    return err as MachineError;
  }
  throw new Error("manifest was accepted");
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- edits reach freely into the document
function edit(f: (m: Record<string, any>) => void): Record<string, unknown> {
  const m = base();
  f(m);
  return m;
}

describe("parseGoDuration", () => {
  it("parses Go durations to ms", () => {
    expect(parseGoDuration("10s", "x")).toBe(10_000);
    expect(parseGoDuration("5m", "x")).toBe(300_000);
    expect(parseGoDuration("1h", "x")).toBe(3_600_000);
    expect(parseGoDuration("1m30s", "x")).toBe(90_000);
    expect(parseGoDuration("500ms", "x")).toBe(500);
    expect(parseGoDuration("1.5s", "x")).toBe(1500);
  });
  it("names the path of a bad duration", () => {
    expect(() => parseGoDuration("10 seconds", "watchers[0].interval")).toThrow(/watchers\[0\]\.interval/);
    expect(() => parseGoDuration("", "p")).toThrow(MachineError);
    expect(() => parseGoDuration("5", "p")).toThrow(/invalid duration/);
  });
});

describe("parseManifest", () => {
  it("accepts a valid manifest, YAML or JSON", () => {
    const m: MachineManifest = parseManifest(stringify(base()), "machine.yaml");
    expect(m.name).toBe("web");
    expect(m.watchers[0]!.properties).toEqual({ command: "./check.sh", timeout: "5s" });
    expect(parseManifest(JSON.stringify(base()), "machine.json").transitions).toHaveLength(2);
    // go-choria writes subscribe as a list, the published schema as one map: both load
    const one = edit((m) => (m.transitions[0].subscribe = { machine_name: "db", event: "up" }));
    expect(parseManifest(stringify(one), "machine.yaml").transitions[0]!.subscribe).toEqual({
      machine_name: "db",
      event: "up",
    });
    const list = edit((m) => (m.transitions[0].subscribe = [{ machine_name: "db", event: "up" }]));
    expect(parseManifest(stringify(list), "machine.yaml").transitions[0]!.subscribe).toHaveLength(1);
    expect(refusal(edit((m) => (m.transitions[0].subscribe = [{ machine_name: "db" }]))).message).toBe(
      "machine.yaml: transitions[0].subscribe[0].event: is required",
    );
  });

  it("loads a file and names it in errors", () => {
    const f = join(root, "machine.yaml");
    writeFileSync(f, stringify(base()));
    expect(loadManifestFile(f).initial_state).toBe("unknown");
    writeFileSync(f, "name: [unclosed");
    expect(() => loadManifestFile(f)).toThrow(f);
    expect(() => loadManifestFile(join(root, "nope.yaml"))).toThrow(/cannot read/);
  });

  it("refuses YAML that does not parse", () => {
    const e = refusal("name: web\n  bad: : indent\n- x");
    expect(e.code).toBe("bad_manifest");
    expect(e.message).toMatch(/^machine\.yaml: does not parse/);
  });

  it("refuses unknown keys at the top level, in transitions and in watchers", () => {
    expect(refusal(edit((m) => (m.extra = 1))).message).toBe("machine.yaml: extra: unknown key");
    expect(refusal(edit((m) => (m.transitions[1].to = "x"))).message).toBe(
      "machine.yaml: transitions[1].to: unknown key",
    );
    expect(refusal(edit((m) => (m.watchers[0].intervall = "1s"))).message).toBe(
      "machine.yaml: watchers[0].intervall: unknown key",
    );
  });

  it("refuses missing keys and bad names", () => {
    expect(refusal(edit((m) => delete m.initial_state)).message).toBe(
      "machine.yaml: initial_state: is required",
    );
    expect(refusal(edit((m) => (m.version = "1.0"))).message).toMatch(/^machine\.yaml: version: /);
    expect(refusal(edit((m) => (m.name = "bad name"))).message).toMatch(
      /^machine\.yaml: name: must match pattern/,
    );
  });

  it("refuses a bad duration naming the path", () => {
    const e = refusal(edit((m) => (m.watchers[0].interval = "10 seconds")));
    expect(e.message).toBe(
      'machine.yaml: watchers[0].interval: invalid duration "10 seconds" (use a Go duration such as "10s", "5m", "1h")',
    );
    expect(refusal(edit((m) => (m.watchers[0].interval = "10ms"))).message).toMatch(
      /watchers\[0\]\.interval: 10ms is too small/,
    );
    expect(refusal(edit((m) => (m.watchers[0].announce_interval = "x"))).message).toMatch(
      /watchers\[0\]\.announce_interval: invalid duration/,
    );
  });

  it("refuses an unknown transition", () => {
    const e = refusal(edit((m) => (m.watchers[0].fail_transition = "explode")));
    expect(e.message).toBe(
      'machine.yaml: watchers[0].fail_transition: unknown transition "explode" (transitions: healthy, unhealthy)',
    );
    expect(refusal(edit((m) => (m.watchers[0].success_transition = "nope"))).message).toMatch(
      /watchers\[0\]\.success_transition: unknown transition "nope"/,
    );
  });

  it("refuses an unknown state", () => {
    expect(refusal(edit((m) => (m.initial_state = "starting"))).message).toBe(
      'machine.yaml: initial_state: "starting" is not a state of any transition (states: unknown, failed, ok)',
    );
    expect(refusal(edit((m) => (m.watchers[0].state_match = ["ok", "degraded"]))).message).toBe(
      'machine.yaml: watchers[0].state_match[1]: unknown state "degraded" (states: unknown, failed, ok)',
    );
  });

  it("refuses duplicate names", () => {
    expect(
      refusal(edit((m) => m.transitions.push({ name: "healthy", from: ["ok"], destination: "unknown" })))
        .message,
    ).toBe('machine.yaml: transitions[2].name: duplicate transition name "healthy"');
    expect(refusal(edit((m) => m.watchers.push({ ...m.watchers[0] }))).message).toBe(
      'machine.yaml: watchers[1].name: duplicate watcher name "check"',
    );
  });

  it("refuses an unknown watcher type, naming the known ones", () => {
    const e = refusal(edit((m) => (m.watchers[0].type = "magic")));
    expect(e.message).toMatch(
      /^machine\.yaml: watchers\[0\]\.type: unknown watcher type "magic" \(known: .*exec.*\)$/,
    );
    expect(e.message).toMatch(/expression, file/);
  });

  it("refuses bad watcher properties with the property path", () => {
    const noCommand = refusal(edit((m) => (m.watchers[0].properties = { timeout: "5s" })));
    expect(noCommand.code).toBe("bad_watcher");
    expect(noCommand.message).toBe("machine.yaml: watchers[0].properties.command: is required");
    expect(refusal(edit((m) => (m.watchers[0].properties.timeout = "soon"))).message).toMatch(
      /^machine\.yaml: watchers\[0\]\.properties\.timeout: invalid duration "soon"/,
    );
    expect(refusal(edit((m) => (m.watchers[0].properties.environment = ["NOEQUALS"]))).message).toMatch(
      /watchers\[0\]\.properties\.environment\[0\]: must be NAME=VALUE/,
    );
    expect(refusal(edit((m) => (m.watchers[0].properties.comand = "x"))).message).toMatch(
      /watchers\[0\]\.properties\.comand: unknown property for a exec watcher/,
    );
    const expr = refusal(
      edit(
        (m) =>
          (m.watchers[0] = { name: "ex", type: "expression", properties: { success_when: "data.x ==" } }),
      ),
    );
    expect(expr.message).toMatch(/^machine\.yaml: watchers\[0\]\.properties\.success_when: /);
    const timer = refusal(
      edit(
        (m) =>
          (m.watchers[0] = {
            name: "tm",
            type: "timer",
            success_transition: "healthy",
            properties: { timer: "1s" },
          }),
      ),
    );
    expect(timer.message).toBe(
      "machine.yaml: watchers[0].success_transition: a timer watcher only fires its fail_transition",
    );
    expect(refusal(edit((m) => (m.watchers[0] = { name: "fw", type: "file", properties: {} }))).message).toBe(
      "machine.yaml: watchers[0].properties.path: is required",
    );
  });
});
