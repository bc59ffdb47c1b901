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
    expect(r.stdout).toContain("demo stopped");
  }, 90_000);
});
