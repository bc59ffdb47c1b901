import { describe, expect, it } from "vitest";
import { PROTOCOL_V2, StatusCode, emptyFilter, isEmptyFilter } from "../../../src/core/protocol/index.js";

describe("constants and models", () => {
  it("status codes match mcorpc", () => {
    expect([StatusCode.OK, StatusCode.Aborted, StatusCode.UnknownAction]).toEqual([0, 1, 2]);
    expect([StatusCode.MissingData, StatusCode.InvalidData, StatusCode.UnknownError]).toEqual([3, 4, 5]);
  });

  it("protocol ids", () => {
    expect(Object.values(PROTOCOL_V2)).toEqual([
      "io.choria.protocol.v2.transport",
      "io.choria.protocol.v2.secure_request",
      "io.choria.protocol.v2.request",
      "io.choria.protocol.v2.secure_reply",
      "io.choria.protocol.v2.reply",
    ]);
  });

  it("empty filters", () => {
    expect(isEmptyFilter(undefined)).toBe(true);
    expect(isEmptyFilter(emptyFilter())).toBe(true);
    expect(isEmptyFilter({ ...emptyFilter(), agent: ["rpcutil"] })).toBe(false);
    expect(isEmptyFilter({ ...emptyFilter(), compound: [[{ expr: "x" }]] })).toBe(false);
    expect(isEmptyFilter({ ...emptyFilter(), fact: [{ fact: "a", operator: "==", value: "b" }] })).toBe(
      false,
    );
    // each call returns a fresh object
    const a = emptyFilter();
    a.identity.push("x");
    expect(emptyFilter().identity).toEqual([]);
  });
});
