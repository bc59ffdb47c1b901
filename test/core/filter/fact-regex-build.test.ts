import { describe, expect, it } from "vitest";
import {
  FilterError,
  buildFilter,
  parseCombinedFilter,
  parseCompoundFilter,
  parseFactFilter,
} from "../../../src/core/filter/index.js";

function errorOf(fn: () => unknown): FilterError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(FilterError);
    return err as FilterError;
  }
  throw new Error("did not throw");
}

describe("a fact filter with a bad regular expression fails when built", () => {
  it.each(["os=/[/", "os==/(/", "os=~[", "os=~/a(/", "os!=/[/"])("%j", (input) => {
    const e = errorOf(() => parseFactFilter(input));
    expect(e.code).toBe("bad_fact_filter");
    expect(e.message).toContain("invalid regular expression");
    expect(e.message).toContain(JSON.stringify(input));
  });

  it("buildFilter throws FilterError for -F", () => {
    const e = errorOf(() => buildFilter({ facts: ["os=/[/"] }));
    expect(e.message).toContain('"os=/[/"');
  });

  it("a -W word that is a fact filter with a bad regex is an error, not a class", () => {
    expect(() => buildFilter({ combined: ["apache os=/[/"] })).toThrow(FilterError);
    expect(() => parseCombinedFilter("os=~[")).toThrow(/invalid regular expression/);
  });

  it("with() refuses the same at parse time", () => {
    expect(() => parseCompoundFilter('with("os=/[/")')).toThrow(/invalid regular expression/);
  });

  it("good regexes still parse", () => {
    expect(buildFilter({ facts: ["os=/^deb/", "kernel=~^5\\."] }).fact).toEqual([
      { fact: "os", operator: "=~", value: "/^deb/" },
      { fact: "kernel", operator: "=~", value: "^5\\." },
    ]);
  });
});
