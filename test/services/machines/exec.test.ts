import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  Machine,
  parseManifest,
  type MachineGovernor,
  type MachineManifest,
} from "../../../src/services/machines/index.js";
import { recordingServices, tempDir, waitFor } from "./helpers.js";

const running: Machine[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((m) => m.stop()));
});

function manifest(properties: Record<string, unknown>): MachineManifest {
  return parseManifest(
    JSON.stringify({
      name: "runner",
      version: "1.2.3",
      initial_state: "ready",
      transitions: [
        { name: "passed", from: ["ready"], destination: "good" },
        { name: "failed", from: ["ready"], destination: "bad" },
      ],
      watchers: [
        {
          name: "job",
          type: "exec",
          state_match: ["ready"],
          success_transition: "passed",
          fail_transition: "failed",
          properties,
        },
      ],
    }),
    "machine.json",
  );
}

function run(properties: Record<string, unknown>, extra: Parameters<typeof recordingServices>[0] = {}) {
  const dir = tempDir();
  const rec = recordingServices({ facts: () => ({ os: "linux" }), ...extra });
  const m = new Machine({ manifest: manifest(properties), directory: dir, services: rec.services });
  running.push(m);
  return { dir, rec, m };
}

describe("exec watcher", () => {
  it("runs in the machine directory with the watcher environment; data and facts files are removed after", async () => {
    const script = [
      'echo "$MACHINE_NAME $MACHINE_VERSION $WATCHER_NAME $MACHINE_WATCHER_NAME $EXTRA" > env.txt',
      'cat "$WATCHER_DATA" > data.txt; cat "$WATCHER_FACTS" > facts.txt',
      'echo "$WATCHER_DATA" > datafile.txt; pwd > pwd.txt',
    ].join("; ");
    const { dir, m } = run({ command: script, environment: ["EXTRA=x=y"] });
    m.dataPut("seed", 7);
    m.start();
    await waitFor(() => m.state() === "good");
    expect(readFileSync(join(dir, "env.txt"), "utf8")).toBe("runner 1.2.3 job job x=y\n");
    expect(JSON.parse(readFileSync(join(dir, "data.txt"), "utf8"))).toEqual({ seed: 7 });
    expect(JSON.parse(readFileSync(join(dir, "facts.txt"), "utf8"))).toEqual({ os: "linux" });
    expect(readFileSync(join(dir, "pwd.txt"), "utf8").trim()).toBe(dir);
    expect(existsSync(readFileSync(join(dir, "datafile.txt"), "utf8").trim())).toBe(false);
  });

  it("merges a JSON object printed with parse_as_data into machine data", async () => {
    const { m } = run({ command: `echo '{"version":"2.0","ok":true}'`, parse_as_data: true });
    m.start();
    await waitFor(() => m.state() === "good");
    expect(m.data()).toEqual({ version: "2.0", ok: true });
  });

  it("fails on bad parse_as_data output, a non-zero exit and a timeout", async () => {
    const a = run({ command: "echo not json", parse_as_data: true });
    a.m.start();
    await waitFor(() => a.m.state() === "bad");
    expect(a.rec.transitions[0]!.info).toMatch(/parse_as_data: output is not JSON/);

    const b = run({ command: "echo oops >&2; exit 3" });
    b.m.start();
    await waitFor(() => b.m.state() === "bad");
    expect(b.rec.transitions[0]!.info).toBe("job: exited 3: oops");
    expect(b.m.watcherSnapshots()[0]!.state).toMatchObject({
      previous_outcome: "error",
      previous_exit_code: 3,
    });

    const c = run({ command: "sleep 20", timeout: "1s" });
    const t0 = Date.now();
    c.m.start();
    await waitFor(() => c.m.state() === "bad", 4000);
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(c.rec.transitions[0]!.info).toBe("job: timed out after 1000ms");
  });

  it("suppress_success_announce announces failures only", async () => {
    const ok = run({ command: "true", suppress_success_announce: true });
    ok.m.start();
    await waitFor(() => ok.m.state() === "good");
    expect(ok.rec.states).toEqual([]);
    const bad = run({ command: "false", suppress_success_announce: true });
    bad.m.start();
    await waitFor(() => bad.m.state() === "bad");
    expect(bad.rec.states.map((s) => s.data.previous_outcome)).toEqual(["error"]);
  });

  it("uses the governor when one is named, and fails without one", async () => {
    const used: { name: string; timeoutMs: number }[] = [];
    const governor: MachineGovernor = {
      run: (name, timeoutMs, fn) => {
        used.push({ name, timeoutMs });
        return fn();
      },
    };
    const g = run({ command: "touch ran", governor: "upgrades", governor_timeout: "2m" }, { governor });
    g.m.start();
    await waitFor(() => g.m.state() === "good");
    expect(used).toEqual([{ name: "upgrades", timeoutMs: 120_000 }]);
    expect(existsSync(join(g.dir, "ran"))).toBe(true);

    const full: MachineGovernor = {
      run: () => Promise.reject(new Error("no free slot in governor upgrades within 1000ms")),
    };
    const f = run({ command: "touch ran", governor: "upgrades" }, { governor: full });
    f.m.start();
    await waitFor(() => f.m.state() === "bad");
    expect(f.rec.transitions[0]!.info).toMatch(/no free slot/);
    expect(existsSync(join(f.dir, "ran"))).toBe(false);

    const none = run({ command: "touch ran", governor: "upgrades" });
    none.m.start();
    await waitFor(() => none.m.state() === "bad");
    expect(none.rec.transitions[0]!.info).toMatch(
      /governor "upgrades" is named but this host has no governors/,
    );
  });

  it("resolves a relative command in the machine directory", async () => {
    const { dir, m } = run({ command: "./check.sh arg" });
    writeFileSync(join(dir, "check.sh"), '#!/bin/sh\necho "$1" > out.txt\n', { mode: 0o755 });
    m.start();
    await waitFor(() => m.state() === "good");
    expect(readFileSync(join(dir, "out.txt"), "utf8")).toBe("arg\n");
  });
});
