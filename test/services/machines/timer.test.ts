import { afterEach, describe, expect, it } from "vitest";
import { Machine, parseManifest } from "../../../src/services/machines/index.js";
import { recordingServices, sleep, waitFor } from "./helpers.js";

const running: Machine[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((m) => m.stop()));
});

// a maintenance window: entering "maintenance" starts a 1s timer that ends it
const manifest = () =>
  parseManifest(
    `
name: window
version: 1.0.0
initial_state: normal
transitions:
  - name: enter
    from: [normal]
    destination: maintenance
  - name: expire
    from: [maintenance]
    destination: normal
  - name: cancel
    from: [maintenance]
    destination: normal
watchers:
  - name: window
    type: timer
    state_match: [maintenance]
    fail_transition: expire
    properties:
      timer: 1s
`,
    "machine.yaml",
  );

describe("timer watcher", () => {
  it("fires fail_transition when the timer runs out in an active state", async () => {
    const rec = recordingServices();
    const m = new Machine({ manifest: manifest(), directory: ".", services: rec.services });
    running.push(m);
    m.start();
    await sleep(1200);
    expect(rec.transitions).toEqual([]); // not active in normal: no timer
    const t0 = Date.now();
    m.transition("enter");
    expect(m.watcherSnapshots()[0]!.state).toMatchObject({ state: "running", timer: 1e9 });
    await waitFor(() => m.state() === "normal", 3000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(950);
    expect(rec.transitions.map((t) => t.transition)).toEqual(["enter", "expire"]);
    expect(rec.transitions[1]!.info).toBe("timer expired");
    expect(m.watcherSnapshots()[0]!.state).toMatchObject({ state: "stopped" });
    expect(rec.states.map((s) => s.data.state)).toEqual(["running", "stopped"]);
  });

  it("leaving the state cancels the timer", async () => {
    const rec = recordingServices();
    const m = new Machine({ manifest: manifest(), directory: ".", services: rec.services });
    running.push(m);
    m.start();
    m.transition("enter");
    await sleep(300);
    m.transition("cancel");
    await sleep(1200);
    expect(rec.transitions.map((t) => t.transition)).toEqual(["enter", "cancel"]);
  });
});
