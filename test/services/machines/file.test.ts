import { rmSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Machine, parseManifest } from "../../../src/services/machines/index.js";
import { recordingServices, sleep, tempDir, waitFor } from "./helpers.js";

const running: Machine[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((m) => m.stop()));
});

const manifest = (gather: boolean) =>
  parseManifest(
    `
name: config
version: 1.0.0
initial_state: watching
transitions:
  - name: changed
    from: [watching, missing]
    destination: updated
  - name: gone
    from: [watching, updated]
    destination: missing
watchers:
  - name: conf
    type: file
    success_transition: changed
    fail_transition: gone
    interval: 500ms
    properties:
      path: app.conf
      gather_initial_state: ${gather}
`,
    "machine.yaml",
  );

describe("file watcher", () => {
  it("fires success when the file changes or appears and fail when it goes", async () => {
    const dir = tempDir();
    const f = join(dir, "app.conf");
    writeFileSync(f, "a");
    const rec = recordingServices();
    const m = new Machine({ manifest: manifest(true), directory: dir, services: rec.services });
    running.push(m);
    m.start();
    await sleep(700);
    expect(rec.transitions).toEqual([]); // gather_initial_state: the first look only records
    writeFileSync(f, "bb");
    await waitFor(() => rec.transitions.length === 1, 2000, "change");
    rmSync(f);
    await waitFor(() => m.state() === "missing", 2000, "missing");
    writeFileSync(f, "ccc");
    const later = new Date(Date.now() + 5000);
    utimesSync(f, later, later);
    await waitFor(() => m.state() === "updated" && rec.transitions.length === 3, 2000, "reappear");
    expect(rec.transitions.map((t) => `${t.transition}:${t.info}`)).toEqual([
      `changed:${f} changed`,
      `gone:${f} does not exist`,
      `changed:${f} changed`,
    ]);
    expect(m.watcherSnapshots()[0]!.state).toMatchObject({ path: f });
  });

  it("without gather_initial_state the first look is a change", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, "app.conf"), "a");
    const rec = recordingServices();
    const m = new Machine({ manifest: manifest(false), directory: dir, services: rec.services });
    running.push(m);
    m.start();
    await waitFor(() => rec.transitions.length === 1, 2000);
    await sleep(700);
    expect(rec.transitions.map((t) => t.transition)).toEqual(["changed"]);
  });
});
