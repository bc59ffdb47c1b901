import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Machine } from "../../../src/services/machines/machine.js";
import type {
  MachineManifest,
  TransitionEventData,
  WatcherDef,
} from "../../../src/services/machines/types.js";
import { parseMetricOutput } from "../../../src/services/machines/watchers/metric.js";

let dir: string;
const machines: Machine[] = [];
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "chorus-metric-"));
});
afterEach(async () => {
  await Promise.all(machines.splice(0).map((m) => m.stop()));
  rmSync(dir, { recursive: true, force: true });
});

function start(watcher: Omit<WatcherDef, "type">, reg?: Registry, name = "power") {
  const manifest: MachineManifest = {
    name,
    version: "1.0.0",
    initial_state: "gathering",
    transitions: [
      { name: "broken", from: ["gathering"], destination: "failed" },
      { name: "retry", from: ["failed"], destination: "gathering" },
    ],
    watchers: [{ type: "metric", fail_transition: "broken", state_match: ["gathering"], ...watcher }],
  };
  const m = new Machine({
    manifest,
    directory: dir,
    services: { identity: "node1", ...(reg ? { metrics: reg } : {}) },
    splayMs: 0,
  });
  const events: TransitionEventData[] = [];
  m.onTransition((e) => events.push(e));
  machines.push(m);
  m.start();
  return { m, events };
}

const snap = (m: Machine) =>
  m.watcherSnapshots()[0]!.state as { metrics: { metrics: Record<string, number> } };

describe("metric output", () => {
  it("parses Choria's JSON format and Nagios perfdata", () => {
    expect(parseMetricOutput('{"labels":{"dc":"x"},"metrics":{"v1":1,"v2":1.5}}')).toEqual({
      labels: { format: "choria", dc: "x" },
      metrics: { v1: 1, v2: 1.5 },
    });
    expect(parseMetricOutput("OK: fine|time_since=237s;1;1;0 failed=0;;;0")).toEqual({
      labels: { format: "nagios" },
      metrics: { time_since: 237, failed: 0 },
    });
    expect(parseMetricOutput("no perfdata")).toEqual({ labels: { format: "nagios" }, metrics: {} });
    expect(() => parseMetricOutput('{"metrics":{"a":"x"}}')).toThrow("metrics.a is not a number");
    expect(() => parseMetricOutput("{broken")).toThrow();
  });
});

describe("metric watcher", () => {
  it("exports gauges per metric with the command's and the configured labels", async () => {
    const reg = new Registry();
    writeFileSync(
      join(dir, "metric.sh"),
      `#!/bin/sh\necho '{"labels":{"unique":"u"},"metrics":{"watts":42.5,"Amps":0.2}}'\n`,
      { mode: 0o755 },
    );
    const { m } = start(
      {
        name: "Kasa-Plug",
        properties: { command: "metric.sh", interval: "1s", labels: { site: "lab" }, store: true },
      },
      reg,
    );
    await expect.poll(() => snap(m).metrics.metrics.watts).toBe(42.5);
    const text = await reg.metrics();
    expect(text).toContain("# TYPE choria_machine_metric_watcher_kasa_plug_watts gauge");
    expect(text).toMatch(
      /choria_machine_metric_watcher_kasa_plug_watts\{format="choria",unique="u",site="lab",machine="power"\} 42.5/,
    );
    expect(text).toMatch(/choria_machine_metric_watcher_kasa_plug_Amps\{[^}]*\} 0.2/);
    expect(m.data().metric).toMatchObject({
      "Kasa-Plug": { labels: { unique: "u", site: "lab" }, metrics: { watts: 42.5, Amps: 0.2 } },
    });
    expect(snap(m).metrics.metrics.choria_runtime_seconds).toBeGreaterThanOrEqual(0);
    await m.stop();
    // a stopped watcher's series go away
    expect(await reg.metrics()).not.toContain("kasa_plug_watts");
  });

  it("gathers again every interval and follows the command's output", async () => {
    const reg = new Registry();
    const counter = join(dir, "n");
    writeFileSync(counter, "0");
    const { m } = start(
      {
        name: "ticks",
        properties: {
          command: `n=$(($(cat ${counter})+1)); echo $n > ${counter}; echo "OK|count=$n"`,
          interval: "1s",
        },
      },
      reg,
    );
    await expect.poll(() => snap(m).metrics.metrics.count ?? 0, { timeout: 4000 }).toBeGreaterThanOrEqual(2);
    const v = snap(m).metrics.metrics.count!;
    expect(await reg.metrics()).toContain(
      `choria_machine_metric_watcher_ticks_count{format="nagios",machine="power"} ${v}`,
    );
  });

  it("skip_prometheus keeps values out of the registry; a failing command fires fail_transition", async () => {
    const reg = new Registry();
    const { m } = start(
      { name: "quiet", properties: { command: "echo 'x|a=1'", interval: "1s", skip_prometheus: true } },
      reg,
    );
    await expect.poll(() => snap(m).metrics.metrics.a).toBe(1);
    expect(await reg.metrics()).not.toContain("choria_machine_metric_watcher_quiet");

    const bad = start(
      { name: "bad", properties: { command: "echo oops; exit 1", interval: "1s" } },
      reg,
      "other",
    );
    await expect.poll(() => bad.m.state()).toBe("failed");
    expect(bad.events.map((e) => e.transition)).toEqual(["broken"]);
  });

  it("refuses a missing command naming the key", () => {
    expect(
      () =>
        new Machine({
          manifest: {
            name: "m1",
            version: "1.0.0",
            initial_state: "aa",
            transitions: [{ name: "tt", from: ["aa"], destination: "aa" }],
            watchers: [{ name: "ww", type: "metric", properties: { interval: "1s" } }],
          },
          directory: dir,
          services: { identity: "n" },
        }),
    ).toThrow("watchers[0].properties.command: is required");
  });

  it("refuses Graphite and the http switch rather than ignoring them", () => {
    const make = (properties: Record<string, unknown>) =>
      new Machine({
        manifest: {
          name: "m1",
          version: "1.0.0",
          initial_state: "aa",
          transitions: [{ name: "tt", from: ["aa"], destination: "aa" }],
          watchers: [{ name: "ww", type: "metric", properties: { command: "true", ...properties } }],
        },
        directory: dir,
        services: { identity: "n" },
      });
    expect(() => make({ graphite_host: "g.example.net" })).toThrow(
      "watchers[0].properties.graphite_host: Graphite is not supported",
    );
    expect(() => make({ http: true })).toThrow(
      "watchers[0].properties.http: the http switch is not supported",
    );
    expect(() => make({ http: false })).not.toThrow();
  });
});
