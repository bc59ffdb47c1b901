import { describe, expect, it } from "vitest";
import { matchClasses } from "../../../src/core/filter/index.js";

describe("class matching is case-insensitive, as in go-choria", () => {
  it("matches plain names regardless of case", () => {
    expect(matchClasses(["Apache"], ["apache"])).toBe(true);
    expect(matchClasses(["apache"], ["Apache"])).toBe(true);
    expect(matchClasses(["nginx"], ["apache"])).toBe(false);
  });
  it("matches regexes regardless of case", () => {
    expect(matchClasses(["/^APA/"], ["apache::mod"])).toBe(true);
    expect(matchClasses(["/^x/"], ["apache"])).toBe(false);
  });
});
