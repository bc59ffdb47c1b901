import { afterEach, describe, expect, it } from "vitest";
import { Machine, parseManifest } from "../../../src/services/machines/index.js";
import { recordingServices, sleep, waitFor } from "./helpers.js";

const running: Machine[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((m) => m.stop()));
});

const manifest = () =>
  parseManifest(
    `
name: gate
version: 1.0.0
initial_state: closed
transitions:
  - name: open
    from: [closed]
    destination: opened
  - name: close
    from: [opened]
    destination: closed
watchers:
  - name: opener
    type: expression
    state_match: [closed]
    success_transition: open
    interval: 1s
    properties:
      success_when: data.level >= 3 && facts.role == "web"
  - name: closer
    type: expression
    state_match: [opened]
    fail_transition: close
    interval: 1s
    properties:
      fail_when: data.level < 3
`,
    "machine.yaml",
  );

describe("expression watcher", () => {
  it("fires on machine data and facts, every interval", async () => {
    const rec = recordingServices({ facts: () => ({ role: "web" }) });
    const m = new Machine({ manifest: manifest(), directory: ".", services: rec.services, source: "spec" });
    running.push(m);
    m.dataPut("level", 1);
    m.start();
    await sleep(300);
    expect(m.state()).toBe("closed");
    m.dataPut("level", 5);
    await waitFor(() => m.state() === "opened", 2500);
    m.dataPut("level", 0);
    await waitFor(() => m.state() === "closed", 2500);
    expect(rec.transitions.map((t) => `${t.transition}:${t.info}`)).toEqual([
      "open:success_when matched",
      "close:fail_when matched",
    ]);
    expect(m.watcherSnapshots()[1]!.state).toEqual({ previous_outcome: "skipped" });
  });

  it("does not open for another role", async () => {
    const rec = recordingServices({ facts: () => ({ role: "db" }) });
    const m = new Machine({ manifest: manifest(), directory: ".", services: rec.services, source: "spec" });
    running.push(m);
    m.dataPut("level", 5);
    m.start();
    await sleep(300);
    expect(m.state()).toBe("closed");
    expect(m.watcherSnapshots()[0]!.state).toEqual({ previous_outcome: "no_match" });
  });
});
