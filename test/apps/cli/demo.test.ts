import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { chorusAsync } from "../../helpers/cli.js";

// The README's first command runs `chorus demo`: it must do its work and then exit
// on its own (a leftover timer or worker port once kept it alive for seconds).
describe("chorus demo", () => {
  it("pings and inventories a secured emulated fleet, cleans up and exits 0", async () => {
    const r = await chorusAsync(["demo", "--nodes", "6"], {}, 60_000);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^6 replies min\/avg\/max/m);
    // every node the inventory discovered (-F os=linux) must answer, signatures verified
    const discovered = Number(/Discovered: (\d+)/.exec(r.stdout)?.[1]);
    expect(discovered).toBeGreaterThan(0);
    expect(r.stdout).toMatch(new RegExp(`OK: ${discovered}\\b`));
    // the async request's replies all stored by the receiver, and the workflow ran everywhere
    expect(r.stdout).toMatch(/: 6 \/ 6 replies stored by the receiver \(6 ok, 0 failed\), complete/);
    expect(r.stdout).toMatch(/3 steps, succeeded on 6 of 6 nodes/);
    expect(r.stdout).toContain("demo stopped");
  }, 90_000);
});

describe("chorus demo --aaa", () => {
  it("logs the admin in and every node answers a request the AAA service signed and audited", async () => {
    const r = await chorusAsync(["demo", "--nodes", "4", "--aaa"], {}, 90_000);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/\[7\/7\] AAA: chorus login as admin/);
    expect(r.stdout).toMatch(/logged in: token for up=admin until \d{4}-/);
    // discovery and the ping are both signed, so both are audited
    expect(r.stdout).toMatch(/ 4 nodes answered a request the signer checked .*; 2 audit records in /);
    expect(r.stdout).toContain("demo stopped");
  }, 120_000);
});

describe("chorus demo --overlays", () => {
  it("enrols a fleet in each of two cells, runs a job in both, and every cell's streams reach the centre", async () => {
    const r = await chorusAsync(["demo", "--overlays", "--nodes", "3"], {}, 150_000);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    for (const cell of ["cell1", "cell2"]) {
      expect(r.stdout).toContain(`${cell}: 3 of 3 nodes enrolled`);
      expect(r.stdout).toContain(`${cell}: 3 of 3 nodes answered a request the cell's AAA signed`);
      expect(r.stdout).toMatch(new RegExp(`${cell} \\S+: 3 / 3 replies at the centre`));
      for (const stream of ["CHORIA_EVENTS", "CHORIA_REGISTRATION", "CHORUS_JOBS", "CHORUS_AAA_AUDIT"])
        expect(r.stdout).toMatch(
          new RegExp(`${cell}\\s+${stream}\\s+cell\\s+(\\d+)\\s+centre\\s+\\1\\s+#+ 100%`),
        );
    }
    expect(r.stdout).toContain("overlays stopped");
  }, 180_000);
});

describe("chorus setup overlays", () => {
  it("lays out the cells and the centre and prints how to run each daemon", async () => {
    const dir = mkdtempSync(join(tmpdir(), "chorus-setup-overlays-"));
    try {
      const r = await chorusAsync(["setup", "overlays", "--dir", dir, "--cells", "3", "--force"], {}, 60_000);
      expect(r.stderr).toBe("");
      expect(r.status).toBe(0);
      expect(r.stdout).toContain("cell3 replicator:  chorus replicator run --config");
      const manifest = JSON.parse(readFileSync(join(dir, "overlays.json"), "utf8")) as { cells: unknown[] };
      expect(manifest.cells).toHaveLength(3);
      expect(readFileSync(join(dir, "cell2", "broker.conf"), "utf8")).toContain(
        "plugin.choria.adapters = registration",
      );
      const bad = await chorusAsync(["setup", "overlays", "--dir", dir, "--cells", "0"], {}, 30_000);
      expect(bad.status).toBe(1);
      expect(bad.stderr).toMatch(/^chorus setup overlays: .*--cells.*1 to 9/m);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});
