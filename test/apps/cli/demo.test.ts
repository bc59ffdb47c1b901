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
