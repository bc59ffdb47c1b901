import { describe, expect, it } from "vitest";
import {
  type DataStore,
  type InputDef,
  PlaybookError,
  coerceInput,
  inputFlags,
  resolveInputs,
  validatePlaybook,
} from "../../../src/services/playbooks/index.js";

/** A real in-process store (the memory store's behaviour), recording writes. */
function store(name: string, init: Record<string, unknown> = {}): DataStore & { map: Map<string, unknown> } {
  const map = new Map(Object.entries(init));
  return {
    name,
    type: "memory",
    map,
    read: (k) => Promise.resolve(map.get(k)),
    write: (k, v) => {
      map.set(k, v);
      return Promise.resolve();
    },
    delete: (k) => {
      map.delete(k);
      return Promise.resolve();
    },
  };
}

function badInput(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(PlaybookError);
    expect((e as PlaybookError).code).toBe("bad_input");
    return (e as Error).message;
  }
  throw new Error("expected bad_input");
}

describe("coerceInput", () => {
  it.each<[InputDef, unknown, unknown]>([
    [{ type: "string" }, "5", "5"],
    [{ type: "string" }, 5, "5"],
    [{ type: "integer" }, "5", 5],
    [{ type: "integer" }, " -12 ", -12],
    [{ type: "integer" }, 7, 7],
    [{ type: "number" }, "2.5", 2.5],
    [{ type: "number" }, "1e3", 1000],
    [{ type: "boolean" }, "true", true],
    [{ type: "boolean" }, "no", false],
    [{ type: "boolean" }, "0", false],
    [{ type: "boolean" }, false, false],
    [{ type: "array" }, '["a", 1]', ["a", 1]],
    [{ type: "array" }, "a, b,c", ["a", "b", "c"]],
    [{ type: "array" }, "", []],
    [{ type: "hash" }, '{"a": {"b": 1}}', { a: { b: 1 } }],
    [{ type: "hash" }, { x: 1 }, { x: 1 }],
    [{ type: "any" }, "[1]", [1]],
    [{ type: "any" }, "plain", "plain"],
  ])("%j reads %j as %j", (def, raw, want) => {
    expect(coerceInput("x", def, raw)).toEqual(want);
  });

  it.each<[InputDef, unknown, string]>([
    [{ type: "integer" }, "5.5", 'input n: "5.5" is not an integer'],
    [{ type: "integer" }, "five", 'input n: "five" is not an integer'],
    [{ type: "integer" }, 1.5, "input n: 1.5 is not an integer"],
    [{ type: "number" }, "x", 'input n: "x" is not a number'],
    [{ type: "boolean" }, "maybe", 'input n: "maybe" is not a boolean (true or false)'],
    [{ type: "hash" }, "[1]", "input n: [1] is not a hash"],
    [{ type: "hash" }, "{nope", 'input n: "{nope" is not a JSON hash'],
    [{ type: "array" }, { a: 1 }, 'input n: {"a":1} is not an array'],
  ])("%j refuses %j", (def, raw, want) => {
    expect(badInput(() => coerceInput("n", def, raw))).toContain(want);
  });

  it.each<[string, string, boolean]>([
    [":shellsafe", "web01", true],
    [":shellsafe", "a; rm -rf /", false],
    [":shellsafe", "$(id)", false],
    [":shellsafe", "a|b", false],
    [":ipv4address", "10.0.0.1", true],
    [":ipv4address", "10.0.0.256", false],
    [":ipv6address", "::1", true],
    [":ipv6address", "10.0.0.1", false],
    [":hostname", "web-01.example.net", true],
    [":hostname", "-bad.example", false],
    [":boolean", "true", true],
    [":boolean", "yes", false],
    ["/^v\\d+$/", "v12", true],
    ["/^v\\d+$/", "12", false],
    ["/^WEB/i", "web1", true],
    ["^[a-z]+$", "abc", true],
    ["^[a-z]+$", "abc1", false],
  ])("validation %s on %j passes: %s", (validation, value, ok) => {
    const f = () => coerceInput("host", { type: "string", validation }, value);
    if (ok) expect(f()).toBe(value);
    else
      expect(badInput(f)).toBe(`input host: ${JSON.stringify(value)} does not pass validation ${validation}`);
  });

  it("validation applies to each element of an array", () => {
    expect(coerceInput("hosts", { type: "array", validation: ":shellsafe" }, "a,b")).toEqual(["a", "b"]);
    expect(badInput(() => coerceInput("hosts", { type: "array", validation: ":shellsafe" }, "a,b;c"))).toBe(
      'input hosts: "b;c" does not pass validation :shellsafe',
    );
  });

  it("enum", () => {
    expect(coerceInput("env", { type: "string", enum: ["dev", "prod"] }, "prod")).toBe("prod");
    expect(badInput(() => coerceInput("env", { type: "string", enum: ["dev", "prod"] }, "qa"))).toBe(
      'input env: "qa" is not one of "dev", "prod"',
    );
    expect(coerceInput("n", { type: "integer", enum: [1, 2] }, "2")).toBe(2);
  });
});

const book = validatePlaybook(
  {
    metadata: { name: "b", version: "1.0.0" },
    data_stores: { mem: { type: "memory" } },
    inputs: {
      release: { type: "string", required: true, description: "what to ship" },
      batch: { type: "integer", default: 2 },
      cluster: { type: "string", data: "mem/cluster", default: "alpha" },
      saved: { type: "integer", data: "mem/saved", save: true },
      live: { type: "string", data: "mem/live", dynamic: true },
      note: { type: "string" },
    },
  },
  "b.yaml",
);

describe("inputFlags", () => {
  it("makes each input a --flag", () => {
    const flags = inputFlags(book);
    expect(flags.map((f) => f.flag)).toEqual([
      "--release",
      "--batch",
      "--cluster",
      "--saved",
      "--live",
      "--note",
    ]);
    expect(flags[0]).toEqual({
      name: "release",
      flag: "--release",
      type: "string",
      description: "what to ship",
      required: true,
      dynamic: false,
    });
    expect(flags[1]).toMatchObject({ required: false, default: 2 });
    expect(flags[4]).toMatchObject({ name: "live", dynamic: true });
  });
});

describe("resolveInputs", () => {
  it("takes the command line, else the store, else the default", async () => {
    const mem = store("mem", { cluster: "beta" });
    const r = await resolveInputs(book, { release: "v1", batch: "4" }, { mem });
    expect(r.values).toEqual({ release: "v1", batch: 4, cluster: "beta", saved: undefined, note: undefined });
    expect("note" in r.values).toBe(true); // declared but unset: a template can tell it from a typo
    expect(r.dynamic).toEqual(["live"]);

    const r2 = await resolveInputs(book, { release: "v1", cluster: "gamma" }, { mem: store("mem") });
    expect(r2.values).toMatchObject({ batch: 2, cluster: "gamma" });
    const r3 = await resolveInputs(book, { release: "v1" }, { mem: store("mem") });
    expect(r3.values.cluster).toBe("alpha");
  });

  it("a value from the store is coerced and validated like a flag", async () => {
    const mem = store("mem", { saved: "9" });
    expect((await resolveInputs(book, { release: "v" }, { mem })).values.saved).toBe(9);
    mem.map.set("saved", "nine");
    await expect(resolveInputs(book, { release: "v" }, { mem })).rejects.toThrow(
      'input saved: "nine" is not an integer',
    );
  });

  it("save: true writes the given value to the store", async () => {
    const mem = store("mem");
    await resolveInputs(book, { release: "v", saved: "3" }, { mem });
    expect(mem.map.get("saved")).toBe(3);
    // cluster has no save: the store is left alone
    await resolveInputs(book, { release: "v", cluster: "x" }, { mem });
    expect(mem.map.has("cluster")).toBe(false);
  });

  it("required and missing, or an unknown name, is bad_input", async () => {
    await expect(resolveInputs(book, {}, { mem: store("mem") })).rejects.toMatchObject({
      code: "bad_input",
      message: "input release is required: give --release",
    });
    await expect(
      resolveInputs(book, { release: "v", relase: "x" }, { mem: store("mem") }),
    ).rejects.toMatchObject({
      code: "bad_input",
      message: expect.stringContaining("unknown input relase") as unknown,
    });
  });

  it("a template default is rendered, seeing the inputs before it", async () => {
    const pb = validatePlaybook(
      {
        metadata: { name: "b", version: "1.0.0" },
        inputs: {
          n: { type: "integer", default: 3 },
          tag: { type: "string", default: "{{{ metadata.name }}}-{{{ inputs.n }}}-{{{ utc_date('%Y') }}}" },
          count: { type: "integer", default: "{{{ inputs.n }}}" },
        },
      },
      "b.yaml",
    );
    const r = await resolveInputs(pb, {}, {});
    expect(r.values).toEqual({ n: 3, tag: `b-3-${new Date().getUTCFullYear()}`, count: 3 });
  });

  it("a prototype name is no input", async () => {
    await expect(
      resolveInputs(book, { release: "v", toString: "x" }, { mem: store("mem") }),
    ).rejects.toMatchObject({
      code: "bad_input",
      message: expect.stringContaining("unknown input toString") as unknown,
    });
  });

  it("a store that fails is a data error naming the input", async () => {
    const broken: DataStore = {
      name: "mem",
      type: "memory",
      read: () => Promise.reject(new Error("disk on fire")),
      write: () => Promise.resolve(),
      delete: () => Promise.resolve(),
    };
    await expect(resolveInputs(book, { release: "v" }, { mem: broken })).rejects.toMatchObject({
      code: "data",
      message: "input cluster: could not read mem/cluster: disk on fire",
    });
  });
});
