import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import {
  computeSummaries,
  renderJson,
  renderJsonl,
  renderPingGraph,
  renderSenders,
  renderTable,
  renderText,
  sortReplies,
} from "../../../src/apps/cli/render/index.js";
import { emptyDropCounts, type RpcResult } from "../../../src/client/index.js";
import { builtinDDL, findAction } from "../../../src/core/ddl/index.js";

const FIX = (name: string) => fileURLToPath(new URL(`../../fixtures/output/${name}`, import.meta.url));

/** Compares to a fixture; UPDATE_FIXTURES=1 rewrites it. */
function fixture(name: string, actual: string): void {
  if (process.env.UPDATE_FIXTURES) writeFileSync(FIX(name), actual);
  expect(actual).toBe(readFileSync(FIX(name), "utf8"));
}

const t = new Date("2026-01-02T03:04:05.000Z");
const result: RpcResult = {
  agent: "rpcutil",
  action: "get_fact",
  replies: [
    { sender: "web2.example", statuscode: 0, statusmsg: "OK", data: { fact: "role", value: "web" }, time: t },
    { sender: "db1.example", statuscode: 0, statusmsg: "OK", data: { fact: "role", value: "db" }, time: t },
    { sender: "web1.example", statuscode: 0, statusmsg: "OK", data: { fact: "role", value: "web" }, time: t },
    { sender: "bad1.example", statuscode: 5, statusmsg: "fact lookup failed", data: {}, time: t },
  ],
  stats: {
    requestid: "2HZ9Xq7v0yW0nF7K1ABCDEFGHIJ",
    discovered: 5,
    responses: 4,
    ok: 3,
    failed: 1,
    noResponses: ["gone.example"],
    unexpected: [],
    discoverMs: 12.3,
    publishMs: 1.2,
    requestMs: 250,
    startTime: t,
    dropped: emptyDropCounts(),
  },
};
const ddl = builtinDDL("rpcutil");
const summaries = computeSummaries(findAction(ddl, "get_fact"), result.replies);

describe("output modes", () => {
  it("text (DDL display hints, summary, statistics) matches the fixture", () => {
    fixture("get_fact.txt", renderText(sortReplies(result), ddl, "all", summaries));
  });

  it("table matches the fixture", () => {
    fixture("get_fact.table.txt", renderTable(sortReplies(result), ddl));
  });

  it("json carries replies, stats and summaries", () => {
    const doc = JSON.parse(renderJson(result, summaries));
    expect(doc.replies).toHaveLength(4);
    expect(doc.request_stats).toMatchObject({
      discovered: 5,
      ok: 3,
      failed: 1,
      no_responses: ["gone.example"],
    });
    expect(doc.request_stats.request_time).toBe(250_000_000);
    expect(doc.summaries).toEqual({ value: { function: "summary", samples: 3, counts: { web: 2, db: 1 } } });
  });

  it("jsonl and senders", () => {
    const lines = renderJsonl(result)
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => l.sender)).toEqual([
      "web2.example",
      "db1.example",
      "web1.example",
      "bad1.example",
    ]);
    expect(lines[3]).toMatchObject({
      statuscode: 5,
      statusmsg: "fact lookup failed",
      time_utc: t.toISOString(),
    });
    expect(renderSenders(sortReplies(result))).toBe(
      "bad1.example\ndb1.example\nweb1.example\nweb2.example\n",
    );
  });

  it("aggregates: summary of lists, boolean_summary, average, chart", () => {
    const action = {
      ...findAction(ddl, "get_fact")!,
      output: { n: { description: "", display_as: "N" }, b: { description: "", display_as: "B" } },
      aggregate: [
        { function: "summary", args: ["tags"] },
        { function: "boolean_summary", args: ["b"] },
        { function: "average", args: ["n", { format: "%.1f" }] },
        { function: "chart", args: ["n"] },
      ],
    };
    const replies = [1, 2, 3, 10].map((n, i) => ({
      sender: `n${i}`,
      statuscode: 0,
      statusmsg: "OK",
      data: { n, b: n > 2, tags: ["x", n > 2 ? "big" : "small"] },
      time: t,
    }));
    const s = computeSummaries(action, replies);
    expect(s[0]!.counts).toEqual({ x: 4, small: 2, big: 2 });
    expect(s[1]!.counts).toEqual({ false: 2, true: 2 });
    expect(s[2]!.average).toBe(4);
    expect(Object.values(s[3]!.counts!).reduce((a, b) => a + b, 0)).toBe(4);
    fixture(
      "aggregates.txt",
      renderText({ ...result, replies }, undefined, "none", s).split("---- request")[0]!,
    );
  });

  it("ping --graph", () => {
    const out = renderPingGraph({
      requestid: "x",
      dropped: emptyDropCounts(),
      replies: [1, 2, 2, 3, 9].map((ms, i) => ({ sender: `n${i}`, ms })),
    });
    expect(out).toContain("5 replies min/p50/p90/p99/max = 1.0/2.0/9.0/9.0/9.0 ms");
    expect(out.split("\n").filter((l) => l.includes("│"))).toHaveLength(20);
  });
});
