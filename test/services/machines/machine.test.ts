import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import {
  Machine,
  MachineError,
  parseManifest,
  type MachineManifest,
  type TransitionEventData,
} from "../../../src/services/machines/index.js";
import { recordingServices, sleep, tempDir, waitFor } from "./helpers.js";

const root = tempDir();
const running: Machine[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((m) => m.stop()));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** unknown -> ok | failed; a remediate watcher in failed goes back to unknown */
function remediationManifest(): MachineManifest {
  return parseManifest(
    `
name: remediator
version: 1.0.0
initial_state: unknown
transitions:
  - name: healthy
    from: [unknown]
    destination: ok
  - name: unhealthy
    from: [unknown, ok]
    destination: failed
  - name: remediated
    from: [failed]
    destination: unknown
watchers:
  - name: check
    type: exec
    state_match: [unknown, ok]
    success_transition: healthy
    fail_transition: unhealthy
    interval: 1s
    properties:
      command: test ! -f broken
  - name: remediate
    type: exec
    state_match: [failed]
    success_transition: remediated
    properties:
      # the fix works on its third attempt
      command: 'n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; [ $n -ge 3 ] && rm -f broken; exit 0'
`,
    "machine.yaml",
  );
}

function start(m: Machine): Machine {
  running.push(m);
  m.start();
  return m;
}

describe("Machine", () => {
  it("remediates a check that fails three times and returns to healthy", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, "broken"), "");
    const rec = recordingServices();
    const m = new Machine({ manifest: remediationManifest(), directory: dir, services: rec.services });
    const heard: TransitionEventData[] = [];
    m.onTransition((ev) => heard.push(ev));
    expect(m.state()).toBe("unknown");
    start(m);
    await waitFor(() => m.state() === "ok", 10_000, "state ok");
    // the check keeps running every second in ok; nothing more may fire
    await sleep(1300);
    const seq = rec.transitions.map((t) => `${t.from_state}-${t.transition}->${t.to_state}`);
    expect(seq).toEqual([
      "unknown-unhealthy->failed",
      "failed-remediated->unknown",
      "unknown-unhealthy->failed",
      "failed-remediated->unknown",
      "unknown-unhealthy->failed",
      "failed-remediated->unknown",
      "unknown-healthy->ok",
    ]);
    expect(heard).toEqual(rec.transitions);
    expect(readFileSync(join(dir, "count"), "utf8").trim()).toBe("3");
    const first = rec.transitions[0]!;
    expect(first).toMatchObject({
      identity: "node1.example.net",
      id: m.id,
      version: "1.0.0",
      machine: "remediator",
    });
    expect(first.info).toMatch(/^check: exited 1/);
    expect(rec.transitions[1]!.info).toBe("remediate");
    expect(Number.isInteger(first.timestamp)).toBe(true);
    // exec announces every run: its state carries the event envelope
    const ann = rec.states.find((s) => s.data.name === "check" && s.data.previous_outcome === "success");
    expect(ann?.type).toBe("exec");
    expect(ann?.data).toMatchObject({
      protocol: "io.choria.machine.watcher.exec.v1.state",
      identity: "node1.example.net",
      machine: "remediator",
      type: "exec",
      command: "test ! -f broken",
    });
    const snap = m.watcherSnapshots().find((w) => w.name === "check")!;
    expect(snap.state).toMatchObject({ previous_outcome: "success", previous_exit_code: 0 });
    expect(snap.state.previous_run_time as number).toBeGreaterThan(0);
  });

  it("fires a transition only when valid from the current state", () => {
    const rec = recordingServices();
    const m = new Machine({ manifest: remediationManifest(), directory: root, services: rec.services });
    expect(m.availableTransitions()).toEqual(["healthy", "unhealthy"]);
    expect(m.transition("remediated")).toBe(false);
    expect(m.transition("no_such")).toBe(false);
    expect(rec.transitions).toEqual([]);
    expect(m.transition("unhealthy", "rpc")).toBe(true);
    expect(m.state()).toBe("failed");
    expect(m.availableTransitions()).toEqual(["remediated"]);
    expect(rec.transitions).toMatchObject([
      { transition: "unhealthy", from_state: "unknown", to_state: "failed", info: "rpc" },
    ]);
  });

  it("refuses a manifest whose watcher properties are bad", () => {
    const manifest = remediationManifest();
    manifest.watchers[1]!.properties = { command: "x", timeout: "later" };
    expect(() => new Machine({ manifest, directory: root, services: { identity: "n" } })).toThrow(
      /machine\.yaml: watchers\[1\]\.properties\.timeout: invalid duration/,
    );
    expect(() => new Machine({ manifest, directory: root, services: { identity: "n" } })).toThrow(
      MachineError,
    );
  });

  it("stop kills a running command's process group and no transition follows", async () => {
    const dir = tempDir();
    const manifest = remediationManifest();
    manifest.watchers[0]!.properties = { command: "sh -c 'echo $$ > child.pid; sleep 30' ; exit 1" };
    const rec = recordingServices();
    const m = start(new Machine({ manifest, directory: dir, services: rec.services }));
    await waitFor(
      () => existsSync(join(dir, "child.pid")) && readFileSync(join(dir, "child.pid"), "utf8").trim() !== "",
    );
    const pid = Number(readFileSync(join(dir, "child.pid"), "utf8"));
    const t0 = Date.now();
    await m.stop();
    expect(Date.now() - t0).toBeLessThan(2000);
    await waitFor(
      () => {
        try {
          process.kill(pid, 0);
          return false;
        } catch {
          return true;
        }
      },
      3000,
      "grandchild to die",
    );
    expect(rec.transitions).toEqual([]);
    expect(m.transition("healthy")).toBe(false);
  });

  it("waits out splay before watchers run, and triggerWatcher runs one now", async () => {
    const dir = tempDir();
    const manifest = remediationManifest();
    manifest.watchers[0]!.interval = "1h";
    manifest.watchers[0]!.properties = { command: "echo x >> runs" };
    const m = start(new Machine({ manifest, directory: dir, services: { identity: "n" }, splayMs: 400 }));
    expect(m.startTime).toBeGreaterThan(0);
    await sleep(200);
    expect(existsSync(join(dir, "runs"))).toBe(false);
    await waitFor(() => m.state() === "ok");
    // once in unknown, once more on entering ok (both active states); the 1h interval adds none
    await waitFor(() => readFileSync(join(dir, "runs"), "utf8") === "x\nx\n", 3000, "re-run on entering ok");
    await sleep(300);
    expect(readFileSync(join(dir, "runs"), "utf8")).toBe("x\nx\n");
    await m.triggerWatcher("check");
    expect(readFileSync(join(dir, "runs"), "utf8")).toBe("x\nx\nx\n");
    await expect(m.triggerWatcher("nope")).rejects.toThrow(/no watcher named "nope"/);
  });

  it("keeps machine data in machine_data.json", () => {
    const dir = tempDir();
    const m = new Machine({ manifest: remediationManifest(), directory: dir, services: { identity: "n" } });
    m.dataPut("k", { a: 1 });
    expect(JSON.parse(readFileSync(join(dir, "machine_data.json"), "utf8"))).toEqual({ k: { a: 1 } });
    const again = new Machine({
      manifest: remediationManifest(),
      directory: dir,
      services: { identity: "n" },
    });
    expect(again.data()).toEqual({ k: { a: 1 } });
  });
});

describe("machine CloudEvents", () => {
  it("builds transition and watcher state events as go-choria publishes them", async () => {
    const { transitionCloudEvent, watcherStateCloudEvent, watcherStateSubject, MACHINE_TRANSITION_SUBJECT } =
      await import("../../../src/services/machines/index.js");
    const data: TransitionEventData = {
      identity: "node1",
      id: "abc",
      version: "1.0.0",
      timestamp: 1_700_000_000,
      machine: "web",
      transition: "healthy",
      from_state: "unknown",
      to_state: "ok",
    };
    const ce = transitionCloudEvent(data);
    expect(ce).toMatchObject({
      specversion: "1.0",
      type: "io.choria.machine.v1.transition",
      source: "io.choria.machine",
      subject: "node1",
      datacontenttype: "application/json",
      time: "2023-11-14T22:13:20.000Z",
      data: { ...data, protocol: "io.choria.machine.v1.transition" },
    });
    expect(ce.id).toMatch(/^[0-9a-f-]{36}$/);
    const ws = watcherStateCloudEvent("exec", { identity: "node1", timestamp: 1_700_000_000, command: "x" });
    expect(ws.type).toBe("io.choria.machine.watcher.exec.v1.state");
    expect(ws.data).toMatchObject({ protocol: "io.choria.machine.watcher.exec.v1.state", command: "x" });
    expect(MACHINE_TRANSITION_SUBJECT).toBe("choria.machine.transition");
    expect(watcherStateSubject("nagios")).toBe("choria.machine.watcher.nagios.state");
  });
});

describe("a transition into the state the machine is in", () => {
  it("is accepted as go-choria's FSM does, with no event and no watcher restart", () => {
    const m = new Machine({
      manifest: parseManifest(
        `
name: same
version: 1.0.0
initial_state: on
transitions:
  - name: stay
    from: [on]
    destination: on
  - name: off
    from: [on]
    destination: off
watchers:
  - name: later
    type: timer
    fail_transition: off
    properties: { timer: 1h }
`,
        "machine.yaml",
      ),
      directory: root,
      services: recordingServices().services,
    });
    const seen: TransitionEventData[] = [];
    m.onTransition((ev) => seen.push(ev));
    expect(m.transition("stay")).toBe(true);
    expect(seen).toEqual([]);
    expect(m.transition("off")).toBe(true);
    expect(seen.map((e) => `${e.from_state}>${e.to_state}`)).toEqual(["on>off"]);
  });
});
