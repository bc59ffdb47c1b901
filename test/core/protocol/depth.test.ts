import { describe, expect, it } from "vitest";
import {
  MAX_JSON_DEPTH,
  encodeMessage,
  encodeReply,
  encodeSecureReply,
  encodeTransport,
  jsonDepth,
  jsonDepthExceeds,
  valueDepthExceeds,
} from "../../../src/core/protocol/index.js";

const nested = (n: number, open = "[", close = "]") => open.repeat(n) + close.repeat(n);
/** `{"a":{"a":...1...}}`, n objects deep */
const objects = (n: number) => '{"a":'.repeat(n) + "1" + "}".repeat(n);

/** Both forms the scanner takes: a JS string and UTF-8 bytes. */
function both(text: string, max: number): [boolean, boolean] {
  return [jsonDepthExceeds(text, max), jsonDepthExceeds(Buffer.from(text, "utf8"), max)];
}

function depthOf(text: string): [number, number] {
  return [jsonDepth(text), jsonDepth(new Uint8Array(Buffer.from(text, "utf8")))];
}

describe("jsonDepth / jsonDepthExceeds", () => {
  it("measures nesting as JSON.parse would build it", () => {
    expect(depthOf("1")).toEqual([0, 0]);
    expect(depthOf('"x"')).toEqual([0, 0]);
    expect(depthOf("")).toEqual([0, 0]);
    expect(depthOf("[]")).toEqual([1, 1]);
    expect(depthOf("{}")).toEqual([1, 1]);
    expect(depthOf('[{"a":[]}]')).toEqual([3, 3]);
    expect(depthOf('{"a":[1,2],"b":{"c":{}},"d":[]}')).toEqual([3, 3]);
    expect(depthOf("[[],[[]],[]]")).toEqual([3, 3]);
    expect(depthOf(objects(7))).toEqual([7, 7]);
  });

  it("ignores brackets inside strings, keys included", () => {
    const text = '{"[[[[{{{{": "]]]]}}}}[[[[", "a": ["{", "[", "}}}"]}';
    expect(depthOf(text)).toEqual([2, 2]);
    expect(both(text, 2)).toEqual([false, false]);
    // a long string (past the short-string fast path) full of brackets
    const long = JSON.stringify({ s: "[{".repeat(500), t: ["x".repeat(100) + "[[["] });
    expect(depthOf(long)).toEqual([2, 2]);
  });

  it("handles escaped quotes and backslashes in strings", () => {
    // "a\"[[[" is one string; so is "\\" (a lone escaped backslash) before a real bracket
    const cases: [unknown, number][] = [
      [{ a: 'x"[[[' }, 1],
      [["\\", ["\\\\"], [[`\\"`]]], 3],
      [{ k: '\\"[', v: ['"', "\\"] }, 2],
      [["\\".repeat(41), ['"'.repeat(40) + "["]], 2],
      [{ 'q"[': { "\\": '\\\\"{{' } }, 2],
    ];
    for (const [value, depth] of cases) {
      const text = JSON.stringify(value);
      expect(depthOf(text), text).toEqual([depth, depth]);
      // long variants go through the indexOf path
      const padded = JSON.stringify([value, "p".repeat(100) + '\\"[' + "\\".repeat(7)]);
      expect(depthOf(padded), padded).toEqual([depth + 1, depth + 1]);
    }
  });

  it("accepts exactly max levels and refuses max + 1", () => {
    for (const max of [0, 1, 2, 10, MAX_JSON_DEPTH]) {
      expect(both(nested(max), max)).toEqual([false, false]);
      expect(both(nested(max + 1), max)).toEqual([true, true]);
      expect(both(objects(max), max)).toEqual([false, false]);
      expect(both(objects(max + 1), max)).toEqual([true, true]);
    }
    // the default limit
    expect(jsonDepthExceeds(nested(MAX_JSON_DEPTH))).toBe(false);
    expect(jsonDepthExceeds(nested(MAX_JSON_DEPTH + 1))).toBe(true);
    expect(MAX_JSON_DEPTH).toBe(64);
  });

  it("counts the deepest point, not the total of containers", () => {
    const wide = "[" + Array.from({ length: 10_000 }, () => "[[]]").join(",") + "]";
    expect(depthOf(wide)).toEqual([3, 3]);
    expect(both(wide, 3)).toEqual([false, false]);
  });

  it("copes with 100 000 levels without throwing, stopping at the limit", () => {
    const deep = nested(100_000);
    const deepObjects = objects(100_000);
    expect(both(deep, MAX_JSON_DEPTH)).toEqual([true, true]);
    expect(both(deepObjects, MAX_JSON_DEPTH)).toEqual([true, true]);
    expect(jsonDepth(deep)).toBe(100_000);
    expect(jsonDepth(Buffer.from(deepObjects))).toBe(100_000);
    // early exit: the result is max + 1 once the limit is passed
    expect(jsonDepth(deep, 64)).toBe(65);
  });

  it("scans bytes that are not JSON without throwing", () => {
    const junk = [
      Buffer.from([0xff, 0xfe, 0x00, 0x5b, 0x80, 0x7b, 0xc3, 0x28]),
      Buffer.from("]]]]]]]]"),
      Buffer.from("]]]]]]]][[["),
      Buffer.from('"unterminated [[[[[[[['),
      Buffer.from('[[["\\'),
      Buffer.from("\\\\\\\\"),
      new Uint8Array(0),
      Buffer.from("ünïcödé [ «{»"),
    ];
    for (const b of junk) {
      expect(() => jsonDepthExceeds(b, 2)).not.toThrow();
      expect(() => jsonDepthExceeds(b.toString("latin1"), 2)).not.toThrow();
    }
    // stray closers never make the count negative, so they cannot hide depth
    expect(jsonDepth("]]]]]]]][[[")).toBe(3);
    expect(jsonDepthExceeds("]]]]]]]][[[", 2)).toBe(true);
    // an unterminated string ends the scan: what it hides is not JSON anyway
    expect(jsonDepth('["unterminated [[[[[[[[')).toBe(1);
    expect(jsonDepth('[[["\\')).toBe(3);
    // random bytes: any answer, never an exception
    let seed = 7;
    const rnd = new Uint8Array(50_000).map(() => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24);
    expect(typeof jsonDepth(rnd)).toBe("number");
  });

  it("agrees with JSON.parse on random documents with hostile strings", () => {
    let seed = 12345;
    const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) >>> 0) % n;
    const pieces = ['"', "\\", "[", "]", "{", "}", "a", "ü", "😀", "\n", ",", ":", " "];
    const str = (): string => {
      let s = "";
      const n = rnd(4) === 0 ? 40 + rnd(80) : rnd(10);
      for (let i = 0; i < n; i++) s += pieces[rnd(pieces.length)];
      return s;
    };
    const gen = (d: number): unknown => {
      const k = d > 12 ? rnd(3) : rnd(6);
      if (k === 0) return str();
      if (k === 1) return rnd(1000);
      if (k === 2) return rnd(2) === 0 ? null : true;
      if (k === 3 || k === 4) return Array.from({ length: rnd(4) }, () => gen(d + 1));
      return Object.fromEntries(Array.from({ length: rnd(4) }, () => [str(), gen(d + 1)]));
    };
    const depth = (v: unknown): number =>
      v === null || typeof v !== "object"
        ? 0
        : 1 + Math.max(0, ...(Array.isArray(v) ? v : Object.values(v)).map(depth));
    for (let i = 0; i < 500; i++) {
      const value = gen(0);
      const text = JSON.stringify(value);
      const d = depth(value);
      expect(depthOf(text), text).toEqual([d, d]);
      expect(both(text, d)).toEqual([false, false]);
      if (d > 0) expect(both(text, d - 1)).toEqual([true, true]);
    }
  });

  it("sees through multi-byte UTF-8 and UTF-16 the same way", () => {
    const text = JSON.stringify({ "ключ[": ["値{", { "😀]": "\u2028[" }] });
    expect(depthOf(text)).toEqual([3, 3]);
  });

  it("checks a Choria reply layer by layer: each is shallow, base64 hides the payload", () => {
    const deepBody = `{"statuscode":0,"statusmsg":"OK","data":{"x":${nested(10_000)}}}`;
    const reply = encodeReply({
      message: encodeMessage(deepBody),
      request: "r1",
      sender: "n1",
      agent: "a",
      time: 1,
    });
    const transport = encodeTransport(encodeSecureReply(reply), { sender: "n1" });
    expect(jsonDepth(transport)).toBe(2);
    expect(jsonDepth(reply)).toBe(1);
    expect(jsonDepthExceeds(deepBody, MAX_JSON_DEPTH)).toBe(true);
  });
});

describe("valueDepthExceeds", () => {
  it("measures parsed values iteratively", () => {
    expect(valueDepthExceeds(1, 0)).toBe(false);
    expect(valueDepthExceeds(null, 0)).toBe(false);
    expect(valueDepthExceeds("[[[", 0)).toBe(false);
    expect(valueDepthExceeds([], 0)).toBe(true);
    expect(valueDepthExceeds([], 1)).toBe(false);
    expect(valueDepthExceeds({ a: [1, { b: {} }] }, 4)).toBe(false);
    expect(valueDepthExceeds({ a: [1, { b: {} }] }, 3)).toBe(true);
    for (const max of [1, 10, MAX_JSON_DEPTH]) {
      expect(valueDepthExceeds(JSON.parse(nested(max)), max)).toBe(false);
      expect(valueDepthExceeds(JSON.parse(nested(max + 1)), max)).toBe(true);
      expect(valueDepthExceeds(JSON.parse(objects(max + 1)), max)).toBe(true);
    }
  });

  it("copes with 100 000 levels and with cycles", () => {
    expect(valueDepthExceeds(JSON.parse(nested(100_000)))).toBe(true);
    expect(valueDepthExceeds(JSON.parse(objects(100_000)))).toBe(true);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(valueDepthExceeds(cyclic, 10)).toBe(true);
  });
});
