import { describe, expect, it } from "vitest";
import {
  ExpressionError,
  buildFilter,
  compileCompound,
  matchFilter,
  parseCompoundFilter,
  type NodeInfo,
} from "../../../src/core/filter/index.js";

type Resolver = (source: string, query: string) => Record<string, unknown>;

/** A node's data plugins as a pure function: what a server would answer. */
function resolver(calls: [string, string][] = []): Resolver {
  return (source, query) => {
    calls.push([source, query]);
    if (source === "fstat") {
      if (query === "/etc/hosts") return { type: "file", size: 220, present: true };
      return { type: "", size: 0, present: false };
    }
    if (source === "choria") return { agents: ["rpcutil"], version: "0.29.4" };
    throw new Error(`unknown data plugin ${source}`);
  };
}

const base: NodeInfo = { identity: "n1", facts: { os: "linux" }, classes: ["web"], agents: ["rpcutil"] };

describe("data functions in compound filters", () => {
  it('name("query") resolves through node.data and .field reads its output', () => {
    const calls: [string, string][] = [];
    const node = { ...base, data: resolver(calls) };
    expect(compileCompound('fstat("/etc/hosts").size > 0')(node)).toBe(true);
    expect(compileCompound('fstat("/nope").size > 0')(node)).toBe(false);
    expect(compileCompound('fstat("/etc/hosts").type == "file" && facts.os == "linux"')(node)).toBe(true);
    expect(calls).toContainEqual(["fstat", "/etc/hosts"]);
    expect(calls).toContainEqual(["fstat", "/nope"]);
  });

  it("name() with no argument queries with an empty string", () => {
    const calls: [string, string][] = [];
    const node = { ...base, data: resolver(calls) };
    expect(compileCompound('choria().version == "0.29.4"')(node)).toBe(true);
    expect(compileCompound('"rpcutil" in choria().agents')(node)).toBe(true);
    expect(calls).toEqual([
      ["choria", ""],
      ["choria", ""],
    ]);
  });

  it("without node.data the expression is false, even under not or or", () => {
    expect(compileCompound('fstat("/etc/hosts").size > 0')(base)).toBe(false);
    expect(compileCompound('not (fstat("/etc/hosts").size > 0)')(base)).toBe(false);
    expect(compileCompound('fstat("/etc/hosts").size > 0 or true')(base)).toBe(false);
  });

  it("a resolver that throws (an unknown plugin) makes the expression false", () => {
    const node = { ...base, data: resolver() };
    expect(compileCompound('nope("x").a == 1')(node)).toBe(false);
    expect(compileCompound('!(nope("x").a == 1)')(node)).toBe(false);
  });

  it("a resolver that answers with a non-object makes the expression false", () => {
    const node = { ...base, data: (() => null) as unknown as Resolver };
    expect(compileCompound('!(fstat("/x").size > 0)')(node)).toBe(false);
  });

  it("built-in names win over a data plugin of the same name", () => {
    const calls: [string, string][] = [];
    const node = { ...base, data: resolver(calls) };
    expect(compileCompound('with("os=linux")')(node)).toBe(true);
    expect(calls).toEqual([]);
  });

  it("the client accepts any function name at parse time, but not bad syntax", () => {
    expect(parseCompoundFilter('someplugin("q").x == 1')).toBe('someplugin("q").x == 1');
    expect(() => parseCompoundFilter('fstat("/etc/hosts".size > 0')).toThrow(ExpressionError);
    expect(() => parseCompoundFilter("fstat(/etc/hosts).size > 0")).toThrow(ExpressionError);
    expect(() => buildFilter({ compound: ['fstat("/etc/hosts").size >'] })).toThrow(ExpressionError);
  });

  it("matchFilter threads node.data to -S", () => {
    const f = buildFilter({ compound: ['fstat("/etc/hosts").present == true'] });
    expect(matchFilter(f, { ...base, data: resolver() })).toBe(true);
    expect(matchFilter(f, base)).toBe(false);
  });
});
