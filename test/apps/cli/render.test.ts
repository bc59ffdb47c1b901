import { describe, expect, it } from "vitest";
import {
  exitCodeFor,
  factReport,
  formatMs,
  INTERRUPTED_EXIT,
  nothingMatched,
  plural,
  renderDDLDoc,
  renderFactReport,
  renderDiscovered,
  renderJson,
  renderPing,
  renderPingGraph,
  renderStats,
  renderText,
  replyProgress,
  shouldDisplay,
  toChoriaJson,
} from "../../../src/apps/cli/render/index.js";
import { emptyDropCounts, type RpcResult, type RpcStats } from "../../../src/client/index.js";
import { TEST_DDL } from "../../client/fleet.js";

function stats(over: Partial<RpcStats> = {}): RpcStats {
  return {
    requestid: "2Bf6hV5oZzT8yYvFq0sD3kLmN1p",
    discovered: 3,
    responses: 2,
    ok: 1,
    failed: 1,
    noResponses: ["n3"],
    unexpected: [],
    discoverMs: 2003.4,
    publishMs: 0.42,
    requestMs: 15.25,
    startTime: new Date("2026-11-24T08:00:00.000Z"),
    dropped: emptyDropCounts(),
    ...over,
  };
}

const fixed: RpcResult = {
  agent: "testagent",
  action: "echo",
  replies: [
    {
      sender: "n1.example.net",
      statuscode: 0,
      statusmsg: "OK",
      data: { message: "hello", extra: "dflt", nested: { b: [1, 2], a: true }, zz: 3 },
      time: new Date("2026-11-24T08:00:01.500Z"),
    },
    {
      sender: "n2.example.net",
      statuscode: 4,
      statusmsg: "message is not valid",
      data: {},
      time: new Date("2026-11-24T08:00:01.600Z"),
    },
  ],
  stats: stats(),
};

describe("text rendering", () => {
  it("renders per-node blocks with DDL labels, then statistics", () => {
    const expected = [
      "n1.example.net",
      "       Message: hello",
      "   Extra Thing: dflt",
      "        nested: {",
      '                   "a": true,',
      '                   "b": [',
      "                      1,",
      "                      2",
      "                   ]",
      "                }",
      "            zz: 3",
      "",
      "n2.example.net                           Invalid Request Data",
      "    message is not valid",
      "",
      "---- request statistics ----",
      "           Discovered: 3",
      "            Responses: 2",
      "                   OK: 1",
      "               Failed: 1",
      "         No responses: 1",
      " Unexpected responses: 0",
      "       Discovery time: 2003 ms",
      "         Publish time: 0.4 ms",
      "         Request time: 15.3 ms",
      "",
      "No responses from: 1",
      "",
      "    n3",
      "",
    ].join("\n");
    expect(renderText(fixed, TEST_DDL)).toBe(expected);
  });

  it("follows --display and the DDL display hint", () => {
    const onlyFailed = renderText(fixed, TEST_DDL, "failed");
    expect(onlyFailed).toContain("n2.example.net");
    expect(onlyFailed).not.toContain("n1.example.net");
    const none = renderText(fixed, TEST_DDL, "none");
    expect(none.startsWith("---- request statistics ----")).toBe(true);
    // "fail" declares display: failed
    const failAction = { ...fixed, action: "fail" };
    expect(renderText(failAction, TEST_DDL)).not.toContain("n1.example.net");
    expect(renderText(failAction, TEST_DDL)).toContain("n2.example.net");
  });

  it("shouldDisplay covers each mode", () => {
    expect(shouldDisplay("ddl", "always", 1)).toBe(true);
    expect(shouldDisplay("ddl", "ok", 0)).toBe(true);
    expect(shouldDisplay("ddl", "ok", 1)).toBe(false);
    expect(shouldDisplay("ddl", "failed", 0)).toBe(false);
    expect(shouldDisplay("ddl", undefined, 0)).toBe(false);
    expect(shouldDisplay("ddl", undefined, 2)).toBe(true);
    expect(shouldDisplay("all", "failed", 0)).toBe(true);
    expect(shouldDisplay("none", "always", 0)).toBe(false);
    expect(shouldDisplay("ok", "always", 1)).toBe(false);
    expect(shouldDisplay("failed", "always", 1)).toBe(true);
  });

  it("lists unexpected responders and dropped replies", () => {
    const s = renderStats(
      stats({ unexpected: ["x1", "x2", "x3", "x4"], dropped: { ...emptyDropCounts(), hash: 2 } }),
    );
    expect(s).toContain("      Dropped replies: 2 hash\n");
    expect(s).toContain("Unexpected responses from: 4\n\n    x1  x2  x3\n    x4\n");
  });

  it("leaves 'nothing matched' to the command's one stderr line (exit 1)", () => {
    const empty = {
      ...fixed,
      replies: [],
      stats: stats({ discovered: 0, responses: 0, ok: 0, failed: 0, noResponses: [] }),
    };
    expect(renderText(empty, TEST_DDL)).toMatch(/^---- request statistics ----\n/);
    expect(exitCodeFor(empty.stats)).toBe(1);
    expect(nothingMatched("req")).toBe("chorus req: no nodes matched the filter\n");
  });

  it("says a request was interrupted and names at most 20 of the nodes it was not sent to", () => {
    const skipped = Array.from({ length: 23 }, (_, i) => `s${String(i).padStart(2, "0")}`);
    const s = renderStats(stats({ interrupted: true, skipped }));
    expect(s).toContain("\nInterrupted (^C): the request was not sent to 23 nodes.\n");
    expect(s).toContain("Not sent to: 23\n");
    expect(s).toContain("    s18  s19\n    ... and 3 more");
    expect(s).not.toContain("s20");
    expect(renderStats(stats({ interrupted: true, skipped: ["s1"] }))).toContain(
      "the request was not sent to 1 node.",
    );
    expect(renderStats(stats({ interrupted: true }))).toContain(
      "\nInterrupted (^C) while waiting for replies.\n",
    );
    expect(renderStats(stats())).not.toContain("Interrupted");
  });

  it("marks an interrupted result in the JSON", () => {
    const doc = toChoriaJson({ ...fixed, stats: stats({ interrupted: true, skipped: ["s1"] }) });
    expect(doc.interrupted).toBe(true);
    expect(doc.skipped).toEqual(["s1"]);
    expect(toChoriaJson(fixed).interrupted).toBeUndefined();
  });

  it("formats milliseconds", () => {
    expect(formatMs(0.04)).toBe("0.0 ms");
    expect(formatMs(99.94)).toBe("99.9 ms");
    expect(formatMs(100.4)).toBe("100 ms");
  });
});

describe("JSON output", () => {
  it("has go-choria's req --json shape", () => {
    const doc = toChoriaJson(fixed);
    expect(Object.keys(doc)).toEqual(["agent", "action", "replies", "request_stats"]);
    expect(doc).toEqual({
      agent: "testagent",
      action: "echo",
      replies: [
        {
          sender: "n1.example.net",
          action: "echo",
          statuscode: 0,
          statusmsg: "OK",
          data: { message: "hello", extra: "dflt", nested: { b: [1, 2], a: true }, zz: 3 },
          time_utc: "2026-11-24T08:00:01.500Z",
        },
        {
          sender: "n2.example.net",
          action: "echo",
          statuscode: 4,
          statusmsg: "message is not valid",
          data: {},
          time_utc: "2026-11-24T08:00:01.600Z",
        },
      ],
      request_stats: {
        requestid: "2Bf6hV5oZzT8yYvFq0sD3kLmN1p",
        no_responses: ["n3"],
        unexpected_responses: [],
        discovered: 3,
        failed: 1,
        ok: 1,
        responses: 2,
        // Go time.Duration: integer nanoseconds
        publish_time: 420_000,
        request_time: 15_250_000,
        discover_time: 2_003_400_000,
        start_time_utc: "2026-11-24T08:00:00.000Z",
      },
    });
    const firstReply = (doc.replies as Record<string, unknown>[])[0] as Record<string, unknown>;
    expect(Object.keys(firstReply)).toEqual([
      "sender",
      "action",
      "statuscode",
      "statusmsg",
      "data",
      "time_utc",
    ]);
    expect(JSON.parse(renderJson(fixed))).toEqual(doc);
  });
});

describe("exit codes", () => {
  it.each([
    ["all ok", stats({ responses: 3, ok: 3, failed: 0, noResponses: [] }), 0],
    ["discovery found nothing", stats({ discovered: 0, responses: 0, ok: 0, failed: 0, noResponses: [] }), 1],
    ["some failed", stats({ responses: 3, ok: 2, failed: 1, noResponses: [] }), 2],
    ["some did not respond", stats({ responses: 2, ok: 2, failed: 0, noResponses: ["n3"] }), 2],
    [
      "discovered but no responses",
      stats({ responses: 0, ok: 0, failed: 0, noResponses: ["n1", "n2", "n3"] }),
      3,
    ],
    [
      "no discovery (nodes given) and no responses",
      stats({ discoverMs: 0, responses: 0, ok: 0, failed: 0, noResponses: ["n1", "n2", "n3"] }),
      4,
    ],
    [
      "no discovery but all responded",
      stats({ discoverMs: 0, responses: 3, ok: 3, failed: 0, noResponses: [] }),
      0,
    ],
    ["unexpected replies only", stats({ discovered: 0, responses: 1, ok: 1, failed: 0, noResponses: [] }), 0],
    [
      "interrupted, all sent answered OK",
      stats({ interrupted: true, responses: 3, ok: 3, failed: 0, noResponses: [] }),
      130,
    ],
    [
      "interrupted in discovery",
      stats({ interrupted: true, responses: 0, ok: 0, failed: 0, skipped: ["n1"] }),
      130,
    ],
  ])("%s → %i", (_name, s, code) => {
    expect(exitCodeFor(s)).toBe(code);
  });
});

describe("ping and discover output", () => {
  it("ping lists senders and a summary", () => {
    const text = renderPing({
      requestid: "x",
      dropped: emptyDropCounts(),
      replies: [
        { sender: "n1", ms: 1.04 },
        { sender: "n2", ms: 3 },
      ],
    });
    expect(text).toBe(
      [
        `${"n1".padEnd(40)} time=1.0 ms`,
        `${"n2".padEnd(40)} time=3.0 ms`,
        "",
        "---- ping statistics ----",
        "2 replies min/avg/max = 1.0/2.0/3.0 ms",
        "",
      ].join("\n"),
    );
    expect(
      renderPing({ requestid: "x", dropped: emptyDropCounts(), replies: [{ sender: "n1", ms: 1 }] }),
    ).toContain("1 reply min/avg/max");
    // nobody answered: the command's nothingMatched() line says it, stdout stays empty
    expect(renderPing({ requestid: "x", dropped: emptyDropCounts(), replies: [] })).toBe("");
    expect(renderPingGraph({ requestid: "x", dropped: emptyDropCounts(), replies: [] })).toBe("");
    expect(
      renderPingGraph({ requestid: "x", dropped: emptyDropCounts(), replies: [{ sender: "n1", ms: 1 }] }),
    ).toContain("1 reply min/p50");
  });

  it("discover prints sorted identities or JSON", () => {
    expect(renderDiscovered(["b", "a"], false)).toBe("a\nb\n");
    expect(JSON.parse(renderDiscovered(["b", "a"], true))).toEqual(["a", "b"]);
  });
});

describe("progress", () => {
  it("is silent when stderr is not a terminal", () => {
    let written = "";
    const fake = { isTTY: false, write: (s: string) => (written += s) } as unknown as NodeJS.WriteStream;
    const p = replyProgress(fake);
    p.start(3);
    p.tick();
    p.stop();
    expect(written).toBe("");
  });
});

describe("counts and nouns", () => {
  it("plural() writes the singular for exactly one", () => {
    expect(plural(0, "node")).toBe("0 nodes");
    expect(plural(1, "node")).toBe("1 node");
    expect(plural(2, "node")).toBe("2 nodes");
    expect(plural(1, "reply", "replies")).toBe("1 reply");
    expect(plural(3, "reply", "replies")).toBe("3 replies");
    expect(INTERRUPTED_EXIT).toBe(130);
  });

  it("fact reports say 1 time and 1 node", () => {
    const t = new Date();
    const report = factReport("os", [
      { sender: "a", statuscode: 0, statusmsg: "OK", data: { fact: "os", value: "linux" }, time: t },
      { sender: "b", statuscode: 0, statusmsg: "OK", data: { fact: "os", value: "bsd" }, time: t },
      { sender: "c", statuscode: 0, statusmsg: "OK", data: { fact: "os", value: "bsd" }, time: t },
      { sender: "d", statuscode: 0, statusmsg: "OK", data: { fact: "os", value: null }, time: t },
    ]);
    const text = renderFactReport(report);
    expect(text).toContain("found 1 time\n");
    expect(text).toContain("found 2 times\n");
    expect(text).toContain("\n  1 node without the fact\n");
    expect(text).not.toContain("(s)");
  });

  it("the DDL doc says 1 second", () => {
    const ddl = { ...TEST_DDL, metadata: { ...TEST_DDL.metadata, timeout: 1 } };
    expect(renderDDLDoc(ddl)).toContain("Timeout: 1 second\n");
    expect(renderDDLDoc({ ...ddl, metadata: { ...ddl.metadata, timeout: 10 } })).toContain(
      "Timeout: 10 seconds\n",
    );
  });
});
