import { describe, expect, it } from "vitest";
import {
  ClientError,
  applyLimit,
  checkReplyTo,
  checkRequestOptions,
  compileReplyFilter,
  completeFilter,
  discoverOffline,
  identityOnlyTargets,
  limitCount,
  planBatches,
  type RequestOptions,
  type RpcReply,
} from "../../src/client/index.js";
import { ExpressionError } from "../../src/core/filter/index.js";
import { emptyFilter, replyPrefix } from "../../src/core/protocol/index.js";

function thrown(f: () => unknown): ClientError {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(ClientError);
    return err as ClientError;
  }
  throw new Error("nothing thrown");
}

describe("request option checks", () => {
  // The library speaks of its own options; flags are the CLI's business (test/client/cli.test.ts).
  it.each<[RequestOptions, string, string]>([
    [{ limit: 2, mode: "broadcast" }, "limit", "limit needs direct mode (not broadcast or service)"],
    [
      { canary: 1, mode: "service" },
      "canary",
      "batchSize and canary need direct mode (not broadcast or service)",
    ],
    [{ replyTo: "x", retries: 1 }, "replyTo", "replyTo cannot be combined with batchSize, canary or retries"],
    [{ retries: 1.5 }, "retries", "retries: 1.5 is not a whole number"],
    [{ ttlS: 0.5 }, "ttlS", "ttlS: 0.5 is not a whole number of seconds (at least 1)"],
    [{ limit: "abc" }, "limit", 'limit: "abc" is not a count or a percentage such as 10 or 25%'],
    [{ limit: "150%" }, "limit", "limit: 150% is not a percentage between 0 and 100"],
    [{ limit: 1, limitMethod: "x" as "first" }, "limitMethod", 'limitMethod: "x" is not first or random'],
    [{ batchSize: 0 }, "batchSize", "batchSize: 0 is not a positive whole number"],
    [{ replyTo: "a.>" }, "replyTo", 'replyTo: "a.>" is not a NATS subject without wildcards'],
    [{ mode: "x" as "direct" }, "mode", 'unknown request mode "x"'],
  ])("%j", (o, option, message) => {
    const err = thrown(() => checkRequestOptions(o));
    expect(err).toMatchObject({ code: "bad_option", option, message });
  });

  it("settles the mode and the TTL; the caller's default TTL is checked too", () => {
    expect(checkRequestOptions({})).toEqual({ mode: "direct", ttlS: 60 });
    expect(checkRequestOptions({ mode: "service", ttlS: 5 }, 30)).toEqual({ mode: "service", ttlS: 5 });
    expect(thrown(() => checkRequestOptions({}, 0)).option).toBe("ttlS");
  });

  it("a reply subject must lie in the caller's inbox", () => {
    const inbox = replyPrefix("mc", "choria=t");
    expect(() => checkReplyTo(`${inbox}.x`, "mc", "choria=t")).not.toThrow();
    expect(() => checkReplyTo(undefined, "mc", "choria=t")).not.toThrow();
    expect(thrown(() => checkReplyTo("mc.reply.other.x", "mc", "choria=t")).message).toBe(
      `replyTo: "mc.reply.other.x" is not under this caller's inbox ${inbox}.; nodes refuse any other reply subject`,
    );
  });

  it("describe() names the options the caller's way; unnamed ones keep the library's words", () => {
    const err = thrown(() => checkRequestOptions({ limit: 2, mode: "service" }));
    const flags: Record<string, string> = { limit: "--limit", "mode=service": "--service" };
    expect(err.describe((o) => flags[o])).toBe("--limit needs direct mode (not broadcast or --service)");
    expect(new ClientError("usage", "plain").describe(() => "x")).toBe("plain");
  });

  it("discovery errors name the options of the call they came from", async () => {
    const disc = (method: "flatfile" | "external", options: Record<string, string>) =>
      discoverOffline({ method, options, filter: emptyFilter(), collective: "mc", timeoutMs: 100 }).then(
        () => undefined,
        (err: ClientError) => err,
      );
    expect(await disc("flatfile", {})).toMatchObject({
      code: "bad_option",
      option: "options",
      message: "flatfile discovery needs options file=PATH",
    });
    expect(await disc("external", { command: " " })).toMatchObject({
      code: "discovery_failed",
      option: "options",
      message: "external discovery: no command (set options command=PATH)",
    });
  });
});

describe("limits and batches", () => {
  const ids = Array.from({ length: 100 }, (_, i) => `n${String(i).padStart(3, "0")}`);
  it("counts and percentages", () => {
    expect(limitCount("10", 100)).toBe(10);
    expect(limitCount("10%", 5)).toBe(1);
    expect(limitCount(500, 100)).toBe(100);
    expect(() => limitCount("x", 1)).toThrow(/^limit: /);
    expect(() => limitCount("0", 1)).toThrow(/^limit: /);
  });
  it("seeded random selection is stable and independent of input order", () => {
    const a = applyLimit(ids, 10, "random", "s1");
    expect(applyLimit([...ids].reverse(), 10, "random", "s1")).toEqual(a);
    expect(applyLimit(ids, 10, "random", "s2")).not.toEqual(a);
    expect(new Set(a).size).toBe(10);
    expect(applyLimit(ids, 3, "first")).toEqual(["n000", "n001", "n002"]);
  });
  it("canary then batches", () => {
    expect(planBatches(ids.slice(0, 7), 3, 1).map((b) => b.length)).toEqual([1, 3, 3]);
    expect(planBatches(ids.slice(0, 7), undefined, 2).map((b) => b.length)).toEqual([2, 5]);
    expect(planBatches(ids.slice(0, 7), undefined, undefined)).toHaveLength(1);
    expect(() => planBatches([], 0, undefined)).toThrow(/^batchSize: /);
  });
});

describe("reply filters", () => {
  const t = new Date("2026-01-02T03:04:05.000Z");
  const replies: RpcReply[] = [
    { sender: "web2.example", statuscode: 0, statusmsg: "OK", data: { fact: "role", value: "web" }, time: t },
    { sender: "db1.example", statuscode: 0, statusmsg: "OK", data: { fact: "role", value: "db" }, time: t },
    { sender: "web1.example", statuscode: 0, statusmsg: "OK", data: { fact: "role", value: "web" }, time: t },
    { sender: "bad1.example", statuscode: 5, statusmsg: "fact lookup failed", data: {}, time: t },
  ];
  const keep = (e: string) => replies.filter(compileReplyFilter(e)).map((r) => r.sender);
  it.each([
    ["ok()", ["web2.example", "db1.example", "web1.example"]],
    ["!ok()", ["bad1.example"]],
    ["code == 5", ["bad1.example"]],
    ["data('value') == 'web'", ["web2.example", "web1.example"]],
    ["data.value =~ /^d/", ["db1.example"]],
    ["sender() =~ /^web1/ || msg =~ 'failed'", ["web1.example", "bad1.example"]],
  ])("%s", (e, want) => {
    expect(keep(e)).toEqual(want);
  });
  it("errors point at the column", () => {
    expect(() => compileReplyFilter("ok() && data('x') =")).toThrow(ExpressionError);
    expect(() => compileReplyFilter("ok() && data('x') =")).toThrow(/reply filter .*column 19/);
    expect(() => compileReplyFilter("facts.x")).toThrow(/unknown name "facts"/);
  });
});

describe("filters", () => {
  it("completes partial filters and spots identity-only ones", () => {
    expect(completeFilter({ identity: ["a"] })).toEqual({
      identity: ["a"],
      fact: [],
      cf_class: [],
      agent: [],
      compound: [],
    });
    expect(identityOnlyTargets(completeFilter({ identity: ["a", "b", "a"] }))).toEqual(["a", "b"]);
    expect(identityOnlyTargets(completeFilter({ identity: ["/a/"] }))).toBeUndefined();
    expect(identityOnlyTargets(completeFilter({ identity: ["a"], agent: ["x"] }))).toBeUndefined();
    expect(identityOnlyTargets(completeFilter({}))).toBeUndefined();
  });
});
