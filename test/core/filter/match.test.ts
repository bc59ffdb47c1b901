import { describe, expect, it } from "vitest";
import {
  FilterError,
  buildFilter,
  matchAgents,
  matchClasses,
  matchFilter,
  matchIdentity,
  parseAgentFilter,
  parseCombinedFilter,
  parseIdentityFilter,
  type NodeInfo,
} from "../../../src/core/filter/index.js";
import { emptyFilter, type Filter } from "../../../src/core/protocol/index.js";

const node: NodeInfo = {
  identity: "web1.example.net",
  facts: { os: { family: "Debian" }, country: "mt", cpus: 8 },
  classes: ["apache", "base::ntp", "roles::web"],
  agents: ["rpcutil", "discovery", "puppet"],
};

const f = (parts: Partial<Filter>): Filter => ({ ...emptyFilter(), ...parts });

describe("identity", () => {
  it("exact match and regex", () => {
    expect(matchIdentity(["web1.example.net"], node.identity)).toBe(true);
    expect(matchIdentity(["web1"], node.identity)).toBe(false);
    expect(matchIdentity(["/^web\\d/"], node.identity)).toBe(true);
    expect(matchIdentity(["/^db/"], node.identity)).toBe(false);
  });

  it("identity regexes are case-sensitive, like Go's regexp", () => {
    expect(matchIdentity(["/^WEB/"], node.identity)).toBe(false);
  });

  it("identities are ORed", () => {
    expect(matchFilter(f({ identity: ["db1", "web1.example.net"] }), node)).toBe(true);
    expect(matchFilter(f({ identity: ["db1", "/^web/"] }), node)).toBe(true);
    expect(matchFilter(f({ identity: ["db1", "db2"] }), node)).toBe(false);
  });
});

describe("classes and agents", () => {
  it("every class needle must match (AND), exact or regex", () => {
    expect(matchClasses(["apache", "base::ntp"], node.classes)).toBe(true);
    expect(matchClasses(["apache", "nginx"], node.classes)).toBe(false);
    expect(matchClasses(["/^roles::/"], node.classes)).toBe(true);
    expect(matchClasses(["/^profiles::/"], node.classes)).toBe(false);
    // exact match means the whole name, not a substring
    expect(matchClasses(["ntp"], node.classes)).toBe(false);
  });

  it("every agent needle must match (AND), exact or regex", () => {
    expect(matchAgents(["rpcutil", "puppet"], node.agents)).toBe(true);
    expect(matchAgents(["rpcutil", "service"], node.agents)).toBe(false);
    expect(matchAgents(["/pup/"], node.agents)).toBe(true);
  });

  it("an invalid regex matches nothing", () => {
    expect(matchAgents(["/(/"], node.agents)).toBe(false);
  });
});

describe("matchFilter", () => {
  it("empty or absent filters match every node", () => {
    expect(matchFilter(undefined, node)).toBe(true);
    expect(matchFilter(emptyFilter(), node)).toBe(true);
  });

  it("filter types are ANDed", () => {
    const all = f({
      identity: ["/^web/"],
      agent: ["puppet"],
      cf_class: ["apache"],
      fact: [
        { fact: "os.family", operator: "==", value: "debian" },
        { fact: "cpus", operator: ">=", value: "4" },
      ],
    });
    expect(matchFilter(all, node)).toBe(true);
    expect(matchFilter({ ...all, identity: ["/^db/"] }, node)).toBe(false);
    expect(matchFilter({ ...all, agent: ["service"] }, node)).toBe(false);
    expect(matchFilter({ ...all, cf_class: ["nginx"] }, node)).toBe(false);
    expect(
      matchFilter({ ...all, fact: [...all.fact, { fact: "cpus", operator: "<", value: "4" }] }, node),
    ).toBe(false);
  });

  it("fact filters are ANDed", () => {
    expect(
      matchFilter(
        f({
          fact: [
            { fact: "country", operator: "==", value: "mt" },
            { fact: "country", operator: "!=", value: "uk" },
          ],
        }),
        node,
      ),
    ).toBe(true);
    expect(
      matchFilter(
        f({
          fact: [
            { fact: "country", operator: "==", value: "mt" },
            { fact: "country", operator: "==", value: "uk" },
          ],
        }),
        node,
      ),
    ).toBe(false);
  });

  it("tolerates lists missing from a decoded filter", () => {
    const partial = { identity: ["web1.example.net"] } as unknown as Filter;
    expect(matchFilter(partial, node)).toBe(true);
  });

  it("evaluates compound filters, and refuses one that does not parse rather than matching", () => {
    expect(matchFilter(f({ compound: [[{ expr: "with('apache')" }]] }), node)).toBe(true);
    expect(matchFilter(f({ compound: [[{ expr: "with('nginx')" }]] }), node)).toBe(false);
    let err: unknown;
    try {
      matchFilter(f({ compound: [[{ expr: "with('apache') &&" }]] }), node);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FilterError);
    expect((err as FilterError).code).toBe("bad_compound");
  });
});

describe("building filters from CLI strings", () => {
  it("buildFilter de-duplicates and parses facts", () => {
    expect(
      buildFilter({
        identity: ["a", "a", "/b/"],
        classes: ["apache"],
        agents: ["rpcutil", "rpcutil"],
        facts: ["country=mt"],
      }),
    ).toEqual({
      fact: [{ fact: "country", operator: "==", value: "mt" }],
      cf_class: ["apache"],
      agent: ["rpcutil"],
      identity: ["a", "/b/"],
      compound: [],
    });
  });

  it("combined filters: fact words become facts, other words classes", () => {
    expect(parseCombinedFilter("apache country=mt  /^roles/ cpus>2")).toEqual({
      fact: [
        { fact: "country", operator: "==", value: "mt" },
        { fact: "cpus", operator: ">", value: "2" },
      ],
      cf_class: ["apache", "/^roles/"],
      agent: [],
      identity: [],
      compound: [],
    });
  });

  it("rejects empty values and invalid regexes", () => {
    expect(() => parseIdentityFilter("  ")).toThrow(FilterError);
    expect(() => parseAgentFilter("/(/")).toThrow(/invalid regular expression/);
    expect(parseIdentityFilter(" web1 ")).toBe("web1");
  });
});
