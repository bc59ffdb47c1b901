import { describe, expect, it } from "vitest";
import {
  ExpressionError,
  buildFilter,
  compileCompound,
  matchFilter,
  parseCompoundFilter,
  semverSatisfies,
  type NodeInfo,
} from "../../../src/core/filter/index.js";

const node: NodeInfo = {
  identity: "web1.example.net",
  facts: {
    os: { family: "Debian", release: "12" },
    country: "mt",
    cpus: 8,
    enabled: true,
    version: "1.4.2",
    interfaces: ["lo", "eth0"],
    "dotted.key": "yes",
  },
  classes: ["apache", "base::ntp", "roles::web"],
  agents: ["rpcutil", "discovery", "puppet"],
};

const m = (expr: string) => compileCompound(expr)(node);

function errorOf(expr: string): ExpressionError {
  try {
    parseCompoundFilter(expr);
  } catch (err) {
    expect(err).toBeInstanceOf(ExpressionError);
    return err as ExpressionError;
  }
  throw new Error(`${expr} parsed`);
}

describe("compound filter language", () => {
  it.each([
    ["facts.country == 'mt'", true],
    ['facts.country == "uk"', false],
    ["facts.country != 'uk'", true],
    ["facts.cpus > 4", true],
    ["facts.cpus >= 8", true],
    ["facts.cpus < 8", false],
    ["facts.cpus <= 8", true],
    ["facts.cpus == '8'", true],
    ["facts.os.family == 'Debian'", true],
    ["facts.os.release > 11", true],
    ["facts['os']['family'] =~ /^deb/i", true],
    ["facts.os.family =~ 'Deb'", true],
    ["facts.os.family matches '^Red'", false],
    ["facts.enabled", true],
    ["facts.enabled == true", true],
    ["!facts.enabled", false],
    ["facts.interfaces[1] == 'eth0'", true],
    ["facts.missing == nil", true],
    ["facts.missing > 1", false],
    ["identity =~ /^web/", true],
    ["identity == 'web1.example.net'", true],
    ["'apache' in classes", true],
    ["'nginx' not in classes", true],
    ["'puppet' in agents", true],
    ["include(agents, 'rpcutil')", true],
    ["include(classes, 'nginx')", false],
    ["with('apache')", true],
    ["with('/^roles::/')", true],
    ["with('country=mt')", true],
    ["with('cpus>=16')", false],
    ["with('os.family=~/debian/')", true],
    ["fact('os.family') == 'Debian'", true],
    ["fact('dotted.key') == 'yes'", true],
    ["semver(facts.version, '>= 1.2.0')", true],
    ["semver(facts.version, '>= 1.2.0, < 1.4.0')", false],
    ["semver(facts.version, '~1.4.0')", true],
    ["semver(facts.version, '^2.0.0 || ^1.3')", true],
    ["semver(facts.missing, '>= 1')", false],
    ["with('apache') and facts.cpus > 4", true],
    ["with('apache') && facts.cpus > 16", false],
    ["with('nginx') || facts.cpus > 4", true],
    ["with('nginx') or not (facts.cpus > 4)", false],
    ["(with('nginx') || with('apache')) && !with('roles::db')", true],
    ["true", true],
    ["false || false", false],
  ])("%s → %s", (expr, want) => {
    expect(m(expr)).toBe(want);
  });

  it("matchFilter ANDs compound expressions with the other filter types", () => {
    expect(matchFilter(buildFilter({ compound: ["facts.cpus == 8"], classes: ["apache"] }), node)).toBe(true);
    expect(matchFilter(buildFilter({ compound: ["facts.cpus == 8", "with('nginx')"] }), node)).toBe(false);
    expect(matchFilter(buildFilter({ compound: ["facts.cpus == 8"], identity: ["other"] }), node)).toBe(
      false,
    );
    expect(buildFilter({ compound: [" true "] }).compound).toEqual([[{ expr: "true" }]]);
  });

  it.each([
    ["facts.os ==", 12, "end of input"],
    ["facts.os = 'x'", 10, 'unknown operator "="'],
    ["facts.os & 'x'", 10, 'unknown operator "&"'],
    ["(facts.cpus > 2", 16, 'expected ")"'],
    ["facts.cpus > 2)", 15, 'unexpected ")"'],
    ["fcts.os == 'x'", 1, 'unknown name "fcts"'],
    ["fstat('/a', '/b')", 1, "fstat() takes 0 to 1 argument, got 2"],
    ["fstat(1)", 7, "fstat(): a data query is a string"],
    ["fstat('/a'", 11, 'expected ")"'],
    ["with('a', 'b')", 1, "takes 1 argument"],
    ["semver(facts.v, '>>> 1')", 17, "invalid semver range"],
    ["with('/[/')", 6, "bad regular expression"],
    ["identity =~ /[/", 13, "bad regular expression"],
    ["facts.os == 'x", 13, "unterminated string"],
    ["facts.os == #", 13, "unexpected character"],
    ["", 1, "empty"],
    ["facts. == 1", 8, 'expected a name after "."'],
  ])("%j fails at column %i", (expr, col, why) => {
    if (expr === "") {
      expect(() => parseCompoundFilter(expr)).toThrow(/empty compound filter/);
      return;
    }
    const e = errorOf(expr);
    expect(e.column).toBe(col);
    expect(e.message).toContain(why);
    expect(e.message).toContain(`column ${col}`);
    expect(e.pointer().split("\n")[1]).toBe(" ".repeat(col - 1) + "^");
  });

  it("buildFilter rejects a bad -S before anything is sent", () => {
    expect(() => buildFilter({ compound: ["facts.cpus >"] })).toThrow(/compound filter .*column 13/);
  });
});

describe("semver", () => {
  it.each([
    ["1.2.3", ">= 1.2.3", true],
    ["1.2.3", "> 1.2.3", false],
    ["1.2.3-rc.1", "< 1.2.3", true],
    ["v2.0.0", "^1.0.0", false],
    ["0.3.5", "^0.3.1", true],
    ["0.4.0", "^0.3.1", false],
    ["1.10.0", "> 1.9.9", true],
    ["1.2", "= 1.2.0", true],
    ["1.2.3", "!= 1.2.3", false],
    ["bogus", ">= 0", false],
  ])("%s %s → %s", (v, r, want) => {
    expect(semverSatisfies(v, r)).toBe(want);
  });
});

describe("cost", () => {
  // its speed is measured in bench/, not asserted here (a timed test fails on a busy box)
  it("one compiled expression evaluated over 10 000 nodes (emulators host that many) counts exactly", () => {
    const nodes: NodeInfo[] = Array.from({ length: 10_000 }, (_, i) => ({
      identity: `n${i}`,
      facts: { role: i % 5 === 0 ? "db" : "web", cores: 2 ** (i % 5), os: { family: "Debian" } },
      classes: [`role::${i % 5 === 0 ? "db" : "web"}`],
      agents: ["rpcutil"],
    }));
    const filter = buildFilter({
      compound: ["with('role=db') || (facts.cores >= 8 && facts.os.family =~ /deb/i)"],
    });
    const n = nodes.filter((x) => matchFilter(filter, x)).length;
    expect(n).toBe(6000);
  });
});
