import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import {
  ReplicatorError,
  loadReplicatorConfig,
  parseLongDuration,
  targetSubject,
} from "../../../src/services/replicator/index.js";
import { replicatorConfig } from "./fixture.js";

const BIN = fileURLToPath(new URL("../../../bin/chorus.js", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "chorus-sr-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const base = `
name: CELL1
streams:
  - stream: CHORIA_EVENTS
    source_url: tls://cell1:4222
    target_url: tls://centre:4222
`;

function fails(yaml: string): string {
  try {
    replicatorConfig(yaml, dir);
  } catch (err) {
    expect(err).toBeInstanceOf(ReplicatorError);
    return (err as Error).message;
  }
  throw new Error("expected the config to be refused");
}

describe("replicator configuration", () => {
  it("reads Choria's keys, with the most specific credentials winning", () => {
    const c = replicatorConfig(
      `
name: CELL1
state_store: state
monitor_port: 9200
tls: { ca: ca.pem }
choria: { seed_file: rep.seed, jwt_file: rep.jwt, collective: cell1 }
heartbeats:
  url: tls://centre:4222
  interval: 5s
  leader_election: true
  headers: { cell: cell1 }
  subjects: [{ subject: chorus.heartbeat.cell1 }, { subject: chorus.heartbeat.other, interval: 1m }]
streams:
  - name: events
    stream: CHORIA_EVENTS
    source_url: tls://cell1:4222,tls://cell1b:4222
    target_url: tls://centre:4222?credentials=centre.creds&connect_timeout=5s
    target_tls: { ca: centre-ca.pem }
    target_stream: CELL1_EVENTS
    target_subject_prefix: cell1
    target_subject_remove: choria.
    start_delta: 1w
    max_age: 1d
    inspect_field: sender
    inspect_force_field: force
    inspect_duration: 1h
    size_trigger: 1024
    leader_election_name: cell1-a
    advisory: { subject: "choria.advisories.%s.%v", reliable: true }
`,
      dir,
    );
    const s = c.streams[0];
    expect(c.name).toBe("CELL1");
    expect(c.monitor_port).toBe(9200);
    expect(s?.source.servers).toEqual(["tls://cell1:4222", "tls://cell1b:4222"]);
    expect(s?.source.tls?.ca).toBe(join(dir, "ca.pem"));
    expect(s?.target.tls?.ca).toBe(join(dir, "centre-ca.pem"));
    expect(s?.source.choria).toEqual({
      seed_file: join(dir, "rep.seed"),
      jwt_file: join(dir, "rep.jwt"),
      collective: "cell1",
    });
    expect(s?.target.credentials).toBe(join(dir, "centre.creds"));
    expect(s?.target.connectTimeoutMs).toBe(5000);
    expect(s?.start).toEqual({ kind: "delta", ms: 7 * 86_400_000 });
    expect(s?.maxAgeMs).toBe(86_400_000);
    expect(s?.sampling).toEqual({
      inspect_field: "sender",
      inspect_force_field: "force",
      inspectDurationMs: 3_600_000,
      warnDurationMs: 1_800_000,
      size_trigger: 1024,
    });
    expect(s?.stateFile).toBe(join(dir, "state", "CHORIA_EVENTS_events.json"));
    expect(s?.advisory).toEqual({ subject: "choria.advisories.%s.%v", reliable: true });
    expect(c.heartbeats?.subjects).toEqual([
      { subject: "chorus.heartbeat.cell1", intervalMs: 5000, headers: {} },
      { subject: "chorus.heartbeat.other", intervalMs: 60_000, headers: {} },
    ]);
    expect(s?.batch).toBe(100);
  });

  it("maps subjects as Choria does: prefix, then remove, '..' collapsed", () => {
    expect(targetSubject("choria.lifecycle.event.alive.x", "cell1", "choria.")).toBe(
      "cell1.lifecycle.event.alive.x",
    );
    expect(targetSubject("a.b", "p")).toBe("p.a.b");
    expect(targetSubject("a.b.c", undefined, "b")).toBe("a.c");
  });

  it("parses Choria's long durations", () => {
    expect(parseLongDuration("1w")).toBe(604_800_000);
    expect(parseLongDuration("2d")).toBe(172_800_000);
    expect(parseLongDuration("1M")).toBe(2_592_000_000);
    expect(parseLongDuration("1Y")).toBe(31_536_000_000);
    expect(parseLongDuration("90m")).toBe(5_400_000);
    expect(parseLongDuration("soon")).toBeUndefined();
  });

  it.each([
    ["name: x\nstreams: []", /streams: must list at least one/],
    ["streams:\n  - stream: S\n    source_url: nats://a:1\n    target_url: nats://b:1", /name: is required/],
    [`${base}    bogus: 1`, /streams\[0\]\.bogus: is not a replicator setting/],
    [`${base}unknown_top: 1`, /unknown_top: is not a replicator setting/],
    ["name: x\nstreams:\n  - source_url: nats://a:1\n    target_url: nats://b:1", /stream: is required/],
    ["name: x\nstreams:\n  - stream: S\n    target_url: nats://b:1", /source_url: is required/],
    [`${base}    start_sequence: 5\n    start_at_end: true`, /only one of start_sequence/],
    [`${base}    start_time: yesterday`, /not an RFC 3339 time/],
    [`${base}    max_age: forever`, /max_age: "forever" is not a duration/],
    [`${base}    target_initiated: true`, /filter_subject: is required with target_initiated/],
    [
      `${base}    target_initiated: true\n    filter_subject: a.>\n    inspect_field: x\n    inspect_duration: 1m`,
      /sampling .* cannot be used with target_initiated/,
    ],
    [`${base}    parallel: { workers: 4 }`, /needs exactly one of subject_token and header/],
    [`${base}    parallel: { subject_token: 0 }`, /subject_token: must be/],
    [`${base}    inspect_field: a`, /inspect_duration: is required/],
    [
      `${base}    inspect_field: a\n    inspect_header: b\n    inspect_duration: 1m`,
      /only one of inspect_field/,
    ],
    [
      `${base}    inspect_field: a\n    inspect_duration: 1m\n    warn_duration: 2m`,
      /warn_duration: must be shorter/,
    ],
    [`${base}    advisory: { subject: x }`, /advisory: needs sampling/],
    [`${base.replace("tls://centre:4222", "tls://centre:4222?jwt=x")}`, /URL option jwt is not supported/],
    [`${base.replace("tls://centre:4222", "http://centre")}`, /is not a nats:\/\/ or tls:\/\/ URL/],
    [`${base}profiling: true`, /profiling: is not supported/],
    [
      `${base}  - stream: CHORIA_EVENTS\n    source_url: nats://a:1\n    target_url: nats://b:1`,
      /two streams are named choria_events/,
    ],
    [`${base}    choria: { seed_file: x }`, /needs both seed_file and jwt_file/],
    [`${base}    tls: { cert: c.pem }`, /cert and key go together/],
    [`${base}heartbeats: { url: nats://c:1 }`, /heartbeats\.subjects: must list at least one/],
  ])("refuses %# (%s)", (yaml, why) => {
    expect(fails(yaml)).toMatch(why);
  });

  it("says which file is missing or not YAML", () => {
    expect(() => loadReplicatorConfig(join(dir, "nope.yaml"))).toThrow(/cannot read .*nope\.yaml/);
    const bad = join(dir, "bad.yaml");
    writeFileSync(bad, "name: [unclosed");
    expect(() => loadReplicatorConfig(bad)).toThrow(/is not YAML/);
  });

  it("chorus replicator validate shows the plan, and refuses a bad config with exit 1", () => {
    const good = join(dir, "good.yaml");
    writeFileSync(
      good,
      `${base}    parallel: { subject_token: 4, workers: 32 }\n    leader_election_name: a\n`,
    );
    const ok = spawnSync(process.execPath, [BIN, "replicator", "validate", "--config", good], {
      encoding: "utf8",
    });
    expect(ok.status).toBe(0);
    expect(ok.stdout).toMatch(
      /choria_events: CHORIA_EVENTS on tls:\/\/cell1:4222 -> CHORIA_EVENTS on tls:\/\/centre:4222/,
    );
    expect(ok.stdout).toMatch(/parallel by subject token 4, 32 keys at once/);
    const badCfg = join(dir, "badcfg.yaml");
    writeFileSync(badCfg, `${base}    parallel: yes\n`);
    const no = spawnSync(process.execPath, [BIN, "replicator", "run", "--config", badCfg], {
      encoding: "utf8",
    });
    expect(no.status).toBe(1);
    expect(no.stderr).toMatch(/^chorus replicator: streams\[0\]\.parallel: must be a map/);
  });
});
