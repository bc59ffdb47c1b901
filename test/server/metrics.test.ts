import { afterAll, describe, expect, it } from "vitest";
import { ServerMetrics, type ActionPolicyStats } from "../../src/server/index.js";

describe("server metrics: action policy line counters", () => {
  const stats: ActionPolicyStats = { skippedLines: 2, widenedDenyLines: 1, skippedGroupLines: 3 };
  const m = new ServerMetrics({ port: 0, nodes: () => [], policy: () => stats, processMetrics: false });
  afterAll(() => m.stop());

  it("reports skipped, widened and group lines as read at scrape time", async () => {
    await m.start();
    const scrape = async () => (await fetch(`http://127.0.0.1:${m.port}/metrics`)).text();
    let text = await scrape();
    expect(text).toMatch(/^chorus_server_policy_lines_skipped 2$/m);
    expect(text).toMatch(/^chorus_server_policy_deny_lines_widened 1$/m);
    expect(text).toMatch(/^chorus_server_policy_group_lines_skipped 3$/m);
    stats.skippedLines = 5;
    text = await scrape();
    expect(text).toMatch(/^chorus_server_policy_lines_skipped 5$/m);
  });
});
