import { describe, expect, it } from "vitest";
import {
  buildFilter,
  compileCompound,
  lookupFact,
  matchFact,
  matchFilter,
} from "../../../src/core/filter/index.js";

const facts: Record<string, unknown> = {
  storage: [
    { name: "sda", size: 512, ssd: false, model: "WD" },
    { name: "nvme0n1", size: 64, ssd: true, model: "Samsung" },
    { name: "nvme1n1", size: 128, ssd: true },
  ],
  tags: ["web", "prod"],
  "a.b": 1,
  "x#y": { z: 2 },
};

describe("lookupFact: the gjson subset", () => {
  it('#(key=="value") finds the first matching element', () => {
    expect(lookupFact(facts, 'storage.#(name=="nvme0n1").size')).toBe(64);
    expect(lookupFact(facts, 'storage.#(name="nvme0n1").size')).toBe(64);
    expect(lookupFact(facts, "storage.#(name==sda).model")).toBe("WD");
    expect(lookupFact(facts, 'storage.#(name=="nvme0n1")')).toEqual(
      facts.storage && (facts.storage as unknown[])[1],
    );
    expect(lookupFact(facts, 'storage.#(name=="nope").size')).toBeUndefined();
  });

  it("queries compare numbers numerically, strings exactly, booleans by name", () => {
    expect(lookupFact(facts, "storage.#(size>100).name")).toBe("sda");
    expect(lookupFact(facts, "storage.#(size<100).name")).toBe("nvme0n1");
    expect(lookupFact(facts, "storage.#(size>=128).name")).toBe("sda");
    expect(lookupFact(facts, "storage.#(ssd==true).name")).toBe("nvme0n1");
    expect(lookupFact(facts, "storage.#(ssd!=true).name")).toBe("sda");
    expect(lookupFact(facts, 'storage.#(name=="NVME0N1").size')).toBeUndefined();
    expect(lookupFact(facts, 'storage.#(name!="sda").name')).toBe("nvme0n1");
  });

  it("#(...)# returns every match, and a path after it maps over them", () => {
    expect(lookupFact(facts, "storage.#(ssd==true)#.name")).toEqual(["nvme0n1", "nvme1n1"]);
    expect(lookupFact(facts, "storage.#(size>1000)#")).toEqual([]);
  });

  it("an existence query and a query on the element itself", () => {
    expect(lookupFact(facts, "storage.#(model)#.name")).toEqual(["sda", "nvme0n1"]);
    expect(lookupFact(facts, 'tags.#(=="prod")')).toBe("prod");
  });

  it("# is an array's length, and #.x maps x over it", () => {
    expect(lookupFact(facts, "storage.#")).toBe(3);
    expect(lookupFact(facts, "storage.#.name")).toEqual(["sda", "nvme0n1", "nvme1n1"]);
  });

  it("indexes, escaped dots and literal keys still work", () => {
    expect(lookupFact(facts, "storage.1.name")).toBe("nvme0n1");
    expect(lookupFact(facts, "a\\.b")).toBe(1);
    expect(lookupFact(facts, "a.b")).toBe(1);
    expect(lookupFact(facts, "x#y.z")).toBe(2);
  });

  it("malformed queries find nothing", () => {
    expect(lookupFact(facts, "storage.#(name==sda")).toBeUndefined();
    expect(lookupFact(facts, "storage.#()")).toBeUndefined();
    expect(lookupFact(facts, "tags.#(x==1)")).toBeUndefined();
  });
});

describe("fact filters over gjson queries", () => {
  it("-F with a query in the path matches the node", () => {
    const f = buildFilter({ facts: ['storage.#(name="nvme0n1").size==64'] });
    expect(f.fact).toEqual([{ fact: 'storage.#(name="nvme0n1").size', operator: "==", value: "64" }]);
    const node = { identity: "n1", facts, classes: [], agents: [] };
    expect(matchFilter(f, node)).toBe(true);
    expect(matchFilter(buildFilter({ facts: ['storage.#(name="nvme0n1").size>64'] }), node)).toBe(false);
    expect(matchFilter(buildFilter({ facts: ['storage.#(name="sda").model=~/^w/'] }), node)).toBe(true);
  });

  it("matchFact and fact() share the lookup", () => {
    expect(matchFact({ fact: "storage.#", operator: ">=", value: "3" }, facts)).toBe(true);
    const node = { identity: "n1", facts, classes: [], agents: [] };
    expect(compileCompound('fact("storage.#(name==\\"sda\\").size") == 512')(node)).toBe(true);
  });
});
