import { mkdirSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { MachineManager, type MachineManifest } from "../../../src/services/machines/index.js";
import { recordingServices, sleep, tempDir, waitFor } from "./helpers.js";

const managers: MachineManager[] = [];
afterEach(async () => {
  await Promise.all(managers.splice(0).map((m) => m.stop()));
});

/** a machine whose exec watcher appends `word` to ran.txt every second in state "on" */
function ticker(name: string, word: string, extra: Partial<MachineManifest["watchers"][number]> = {}) {
  return {
    name,
    version: "1.0.0",
    initial_state: "on",
    transitions: [
      { name: "turn_off", from: ["on"], destination: "off" },
      { name: "turn_on", from: ["off"], destination: "on" },
    ],
    watchers: [
      {
        name: "tick",
        type: "exec",
        state_match: ["on"],
        interval: "1s",
        properties: { command: `echo ${word} >> ran.txt` },
        ...extra,
      },
    ],
  };
}

function put(root: string, sub: string, manifest: unknown): string {
  mkdirSync(join(root, sub), { recursive: true });
  const f = join(root, sub, "machine.yaml");
  writeFileSync(f, typeof manifest === "string" ? manifest : stringify(manifest));
  return f;
}

const lines = (f: string): string[] => (existsSync(f) ? readFileSync(f, "utf8").trim().split("\n") : []);

describe("MachineManager", () => {
  it("refuses a broken machine.yaml naming the path while the others run", async () => {
    const root = tempDir();
    put(root, "good", ticker("good", "g"));
    const bad = ticker("bad", "b");
    bad.watchers[0]!.interval = "often";
    const badFile = put(root, "bad", bad);
    const rec = recordingServices();
    const mgr = new MachineManager({ directory: root, services: rec.services, pollMs: 200 });
    managers.push(mgr);
    await mgr.start();
    expect(mgr.machines().map((m) => m.name)).toEqual(["good"]);
    expect(mgr.problems()).toEqual([
      {
        path: badFile,
        error: `${badFile}: watchers[0].interval: invalid duration "often" (use a Go duration such as "10s", "5m", "1h")`,
      },
    ]);
    expect(mgr.loadErrors).toBe(1);
    await waitFor(() => lines(join(root, "good", "ran.txt")).length >= 2, 4000, "good machine ticking");
    expect(existsSync(join(root, "bad", "ran.txt"))).toBe(false);
    // fixing it starts it and clears the problem
    put(root, "bad", ticker("bad", "b"));
    await waitFor(() => mgr.find({ name: "bad" }).length === 1, 3000, "fixed machine loaded");
    expect(mgr.problems()).toEqual([]);
    expect(mgr.find({ path: join(root, "bad") })[0]!.name).toBe("bad");
  });

  it("reloads a changed machine, keeps the old one when the change is broken, stops a removed one", async () => {
    const root = tempDir();
    const file = put(root, "m1", ticker("m1", "v1"));
    const mgr = new MachineManager({ directory: root, services: { identity: "n" }, pollMs: 150 });
    managers.push(mgr);
    await mgr.start();
    const first = mgr.find({ name: "m1" })[0]!;
    await waitFor(() => lines(join(root, "m1", "ran.txt")).includes("v1"));

    const v2 = ticker("m1", "v2");
    v2.version = "2.0.0";
    put(root, "m1", v2);
    await waitFor(() => mgr.find({ name: "m1" })[0]?.version === "2.0.0", 3000, "reload");
    const second = mgr.find({ name: "m1" })[0]!;
    expect(second.id).not.toBe(first.id);
    expect(first.transition("turn_off")).toBe(false); // the old one is stopped
    await waitFor(() => lines(join(root, "m1", "ran.txt")).includes("v2"));

    put(root, "m1", "name: m1\nversion: [");
    await waitFor(() => mgr.problems().length === 1, 3000, "problem reported");
    expect(mgr.problems()[0]!.path).toBe(file);
    expect(mgr.problems()[0]!.error).toMatch(/does not parse/);
    expect(mgr.find({ name: "m1" })[0]).toBe(second);
    expect(second.state()).toBe("on");

    rmSync(join(root, "m1"), { recursive: true, force: true });
    await waitFor(() => mgr.machines().length === 0, 3000, "removal");
    expect(mgr.problems()).toEqual([]);
    expect(second.transition("turn_off")).toBe(false);
  });

  it("routes subscriptions and foreign states between machines", async () => {
    const dir = tempDir();
    const mgr = new MachineManager({ services: { identity: "n" } });
    managers.push(mgr);
    await mgr.start();
    const leader = mgr.add(
      {
        name: "leader",
        version: "1.0.0",
        initial_state: "idle",
        transitions: [
          { name: "go", from: ["idle"], destination: "busy" },
          { name: "done", from: ["busy"], destination: "idle" },
        ],
        watchers: [{ name: "noop", type: "timer", state_match: ["busy"], properties: { timer: "1h" } }],
      },
      dir,
      "spec",
    );
    const follower = mgr.add(
      {
        name: "follower",
        version: "1.0.0",
        initial_state: "waiting",
        transitions: [
          {
            name: "follow",
            from: ["waiting"],
            destination: "following",
            subscribe: [{ machine_name: "leader", event: "go" }],
          },
        ],
        watchers: [
          {
            name: "work",
            type: "exec",
            foreign_state_required: { machine_name: "leader", state: "busy" },
            interval: "1h",
            properties: { command: "echo w >> work.txt" },
          },
        ],
      },
      dir,
      "spec",
    );
    await sleep(200);
    expect(existsSync(join(dir, "work.txt"))).toBe(false);
    expect(leader.transition("go")).toBe(true);
    expect(follower.state()).toBe("following");
    await waitFor(() => lines(join(dir, "work.txt")).length === 1, 3000, "foreign-state watcher ran");
    expect(mgr.find({ instance: follower.id })).toEqual([follower]);
    // replacing by name stops the old one
    const again = mgr.add({ ...follower.manifest }, dir, "spec");
    expect(mgr.machines()).toHaveLength(2);
    expect(mgr.find({ name: "follower" })).toEqual([again]);
    expect(await mgr.remove("follower")).toBe(true);
    expect(await mgr.remove("follower")).toBe(false);
    expect(mgr.machines().map((m) => m.name)).toEqual(["leader"]);
  });
});
