import { describe, expect, it } from "vitest";
import { FilterError, lookupFact, matchFact, parseFactFilter } from "../../../src/core/filter/index.js";
import { ChorusError } from "../../../src/core/protocol/index.js";

const facts: Record<string, unknown> = {
  string: "hello world",
  inumber: 1,
  fnumber: 1.2,
  tbool: true,
  fbool: false,
  nothing: null,
  numstr: "10",
  version: "8.10.2",
  list: ["a", "b"],
  "flat.key": "flat",
  os: { family: "Debian", release: { major: "12" }, arch: "amd64" },
  networking: { interfaces: [{ ip: "10.0.0.1" }, { ip: "10.0.0.2" }] },
};

const t = (fact: string, operator: string, value: string) => matchFact({ fact, operator, value }, facts);

describe("parseFactFilter", () => {
  it.each([
    ["country=mt", { fact: "country", operator: "==", value: "mt" }],
    ["country==mt", { fact: "country", operator: "==", value: "mt" }],
    ["country!=mt", { fact: "country", operator: "!=", value: "mt" }],
    ["country=~^m", { fact: "country", operator: "=~", value: "^m" }],
    ["cpus<4", { fact: "cpus", operator: "<", value: "4" }],
    ["cpus>4", { fact: "cpus", operator: ">", value: "4" }],
    ["cpus<=4", { fact: "cpus", operator: "<=", value: "4" }],
    ["cpus>=4", { fact: "cpus", operator: ">=", value: "4" }],
    ["cpus=<4", { fact: "cpus", operator: "<=", value: "4" }],
    ["cpus=>4", { fact: "cpus", operator: ">=", value: "4" }],
    ["os.family = Debian", { fact: "os.family", operator: "==", value: "Debian" }],
    ["  os.family  ==  Debian  ", { fact: "os.family", operator: "==", value: "Debian" }],
  ])("%s", (input, want) => {
    expect(parseFactFilter(input)).toEqual(want);
  });

  it("treats a /regex/ value as =~ whatever operator was typed", () => {
    expect(parseFactFilter("os.family=/deb/")).toEqual({ fact: "os.family", operator: "=~", value: "/deb/" });
    expect(parseFactFilter("os.family==/deb/")).toEqual({
      fact: "os.family",
      operator: "=~",
      value: "/deb/",
    });
  });

  it("a whole /regex/ value may contain operator characters", () => {
    expect(parseFactFilter("kernel=~/a>=b|c<d/")).toEqual({
      fact: "kernel",
      operator: "=~",
      value: "/a>=b|c<d/",
    });
    expect(parseFactFilter("motd=/a=b/")).toEqual({ fact: "motd", operator: "=~", value: "/a=b/" });
  });

  it("splits on the right-most operator so gjson queries may hold operators", () => {
    expect(parseFactFilter('storage.#(name="nvme0n1").size==64')).toEqual({
      fact: 'storage.#(name="nvme0n1").size',
      operator: "==",
      value: "64",
    });
    expect(parseFactFilter('disks.#(type!="ssd")#.size>=100')).toEqual({
      fact: 'disks.#(type!="ssd")#.size',
      operator: ">=",
      value: "100",
    });
    expect(parseFactFilter("nets.#(mtu>1500).name=~/^eth/")).toEqual({
      fact: "nets.#(mtu>1500).name",
      operator: "=~",
      value: "/^eth/",
    });
  });

  it.each([
    "country",
    "",
    "=mt",
    "==mt",
    "country==",
    "country=   ",
    "a==b<",
    "a===b",
    "<=4",
    // an operator outside a #(...) query is ambiguous, not a fact named "motd==a"
    "motd==a=b",
  ])("rejects %j with FilterError bad_fact_filter naming the input", (input) => {
    let err: unknown;
    try {
      parseFactFilter(input);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FilterError);
    expect(err).toBeInstanceOf(ChorusError);
    expect((err as FilterError).code).toBe("bad_fact_filter");
    expect((err as Error).message).toContain(JSON.stringify(input));
  });
});

describe("lookupFact", () => {
  it("follows dotted paths into objects and arrays", () => {
    expect(lookupFact(facts, "os.family")).toBe("Debian");
    expect(lookupFact(facts, "os.release.major")).toBe("12");
    expect(lookupFact(facts, "networking.interfaces.1.ip")).toBe("10.0.0.2");
    expect(lookupFact(facts, "os.missing")).toBeUndefined();
    expect(lookupFact(facts, "string.length")).toBeUndefined();
    expect(lookupFact(facts, "list.x")).toBeUndefined();
  });

  it("prefers a literal key containing dots", () => {
    expect(lookupFact(facts, "flat.key")).toBe("flat");
  });

  it("does not reach inherited properties", () => {
    expect(lookupFact(facts, "constructor")).toBeUndefined();
    expect(lookupFact(facts, "os.toString")).toBeUndefined();
  });
});

describe("matchFact strings", () => {
  it("== and != compare case-insensitively", () => {
    expect(t("string", "==", "hello world")).toBe(true);
    expect(t("string", "==", "HeLlO WoRLD")).toBe(true);
    expect(t("string", "==", "helloworld")).toBe(false);
    expect(t("string", "!=", "hello world")).toBe(false);
    expect(t("string", "!=", "HeLlO WOrLd")).toBe(false);
    expect(t("string", "!=", "helloworld")).toBe(true);
  });

  it("= is treated as ==", () => {
    expect(t("string", "=", "hello world")).toBe(true);
    expect(t("string", "=", "bye")).toBe(false);
  });

  it("ordering compares case-insensitively", () => {
    expect(t("string", "<", "h")).toBe(false);
    expect(t("string", "<", "H")).toBe(false);
    expect(t("string", "<", "i")).toBe(true);
    expect(t("string", "<", "I")).toBe(true);
    expect(t("string", ">", "h")).toBe(true);
    expect(t("string", ">", "I")).toBe(false);
    expect(t("string", "<=", "HELLO WORLD")).toBe(true);
    expect(t("string", ">=", "hello world")).toBe(true);
    expect(t("string", ">=", "z")).toBe(false);
  });

  it("=~ is a case-insensitive regex, with or without slashes", () => {
    expect(t("string", "=~", "/hello/")).toBe(true);
    expect(t("string", "=~", "/HeLlO/")).toBe(true);
    expect(t("string", "=~", "^hello")).toBe(true);
    expect(t("string", "=~", "/^world/")).toBe(false);
    expect(t("string", "=~", "/bye/")).toBe(false);
  });

  it("a /regex/ value with == or != is a regex", () => {
    expect(t("os.family", "==", "/^deb/")).toBe(true);
    expect(t("os.family", "!=", "/^deb/")).toBe(false);
    expect(t("os.family", "!=", "/^red/")).toBe(true);
  });

  it("an invalid regex does not match", () => {
    expect(t("string", "=~", "/(/")).toBe(false);
  });
});

describe("matchFact numbers", () => {
  it("integers", () => {
    expect(t("inumber", "==", "1")).toBe(true);
    expect(t("inumber", "==", "2")).toBe(false);
    expect(t("inumber", "!=", "1")).toBe(false);
    expect(t("inumber", "!=", "2")).toBe(true);
    expect(t("inumber", ">=", "1")).toBe(true);
    expect(t("inumber", ">", "1")).toBe(false);
    expect(t("inumber", "<", "10")).toBe(true);
    expect(t("inumber", "<=", "0")).toBe(false);
  });

  it("floats compare numerically, not textually", () => {
    expect(t("fnumber", "==", "1.2")).toBe(true);
    expect(t("fnumber", "==", "1.20")).toBe(true);
    expect(t("fnumber", "!=", "1.2")).toBe(false);
    expect(t("fnumber", "<=", "1.01")).toBe(false);
    expect(t("fnumber", ">=", "1")).toBe(true);
    expect(t("fnumber", "<", "10")).toBe(true);
    expect(t("fnumber", "<", "1.0")).toBe(false);
    expect(t("fnumber", ">", "10")).toBe(false);
    expect(t("fnumber", ">", "1.0")).toBe(true);
    // go-choria's gtMatch uses >= for floats; a strict > must not match an equal value
    expect(t("fnumber", ">", "1.2")).toBe(false);
  });

  it("numeric strings compare as numbers when the value is numeric", () => {
    // lexically "10" < "9", numerically it is not
    expect(t("numstr", ">", "9")).toBe(true);
    expect(t("numstr", "<", "9")).toBe(false);
    expect(t("numstr", "==", "10.0")).toBe(true);
    expect(t("os.release.major", ">=", "11")).toBe(true);
  });

  it("number facts against non-numeric values", () => {
    expect(t("inumber", "==", "one")).toBe(false);
    expect(t("inumber", "!=", "one")).toBe(true);
    expect(t("inumber", "<", "one")).toBe(false);
    // a version string is not a number: falls back to string comparison
    expect(t("version", "==", "8.10.2")).toBe(true);
  });

  it("regex against numbers uses their decimal text", () => {
    expect(t("fnumber", "=~", "/^1\\.\\d+$/")).toBe(true);
    expect(t("inumber", "=~", "/^1$/")).toBe(true);
  });
});

describe("matchFact booleans", () => {
  it("true facts", () => {
    for (const v of ["true", "TRUE", "T", "t", "1"]) expect(t("tbool", "==", v)).toBe(true);
    expect(t("tbool", "==", "false")).toBe(false);
    expect(t("tbool", "==", "bob")).toBe(false);
    expect(t("tbool", "!=", "bob")).toBe(true);
    expect(t("tbool", "!=", "false")).toBe(true);
    expect(t("tbool", "!=", "T")).toBe(false);
  });

  it("false facts", () => {
    for (const v of ["false", "False", "F", "f", "0"]) expect(t("fbool", "==", v)).toBe(true);
    expect(t("fbool", "==", "true")).toBe(false);
    // go-choria answers true here (falsey("bob")); an unparseable value is not equal to false
    expect(t("fbool", "==", "bob")).toBe(false);
  });

  it("!= is go-choria's: true when the value is not a spelling of true, whatever the fact", () => {
    // go-choria's facts_test.go pins these for fbool: != "bob" and != "false" hold, != "true" does not
    expect(t("fbool", "!=", "bob")).toBe(true);
    expect(t("fbool", "!=", "false")).toBe(true);
    expect(t("fbool", "!=", "true")).toBe(false);
    for (const v of ["1", "t", "T", "TRUE", "True", "tRuE"]) {
      expect(t("fbool", "!=", v)).toBe(false);
      expect(t("tbool", "!=", v)).toBe(false);
    }
    for (const v of ["0", "f", "F", "FALSE", "no", "yes"]) {
      expect(t("fbool", "!=", v)).toBe(true);
      expect(t("tbool", "!=", v)).toBe(true);
    }
  });

  it("ordering operators never match booleans", () => {
    expect(t("tbool", ">", "0")).toBe(false);
    expect(t("tbool", "<=", "true")).toBe(false);
  });
});

describe("matchFact absent and structured values", () => {
  it("missing facts never match, not even !=", () => {
    for (const op of ["==", "!=", "<", ">", "<=", ">=", "=~"]) expect(t("nope", op, "x")).toBe(false);
  });

  it("null, objects and arrays never match", () => {
    expect(t("nothing", "!=", "x")).toBe(false);
    expect(t("os", "==", "x")).toBe(false);
    expect(t("os", "!=", "x")).toBe(false);
    expect(t("list", "=~", "a")).toBe(false);
  });

  it("unknown operators throw", () => {
    expect(() => t("string", "~~", "x")).toThrow(FilterError);
  });
});
