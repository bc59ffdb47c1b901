import { describe, expect, it } from "vitest";
import {
  FilterError,
  buildFilter,
  parseClassFilter,
  parseCombinedFilter,
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

describe("class filters refuse compound statements", () => {
  it.each(["apache and nginx", "apache or nginx", "not apache", "apache AND nginx", "!apache", "(apache)"])(
    "%j is an error naming the compound filter, not a CLI flag",
    (input) => {
      const e = errorOf(() => parseClassFilter(input));
      expect(e.code).toBe("unsupported_compound");
      expect(e.message).toContain("compound statements are not supported in class filters");
      expect(e.message).toContain("use a compound filter");
      expect(e.message).not.toMatch(/-S\b/);
      expect(e.message).toContain(JSON.stringify(input));
    },
  );

  it("buildFilter fails on it before anything is built", () => {
    expect(() => buildFilter({ classes: ["roles::web and base"] })).toThrow(/compound statements/);
  });

  it("class names that merely contain the words still parse", () => {
    expect(parseClassFilter("android")).toBe("android");
    expect(parseClassFilter("roles::notary")).toBe("roles::notary");
    expect(parseClassFilter("sandbox::orion")).toBe("sandbox::orion");
  });

  it("a regex class may contain the words", () => {
    expect(parseClassFilter("/apache and|or nginx/")).toBe("/apache and|or nginx/");
  });

  it("-W words are class filters too: a lone 'and' is refused", () => {
    expect(() => parseCombinedFilter("apache and os=linux")).toThrow(/compound statements/);
    expect(parseCombinedFilter("apache os=linux").cf_class).toEqual(["apache"]);
  });
});
