import { describe, expect, it } from "vitest";
import { buildFilter } from "../../../src/core/filter/index.js";

describe("buildFilter skips empty entries as go-choria does", () => {
  it("drops empty identity, class, agent and fact strings", () => {
    const f = buildFilter({ identity: ["", "x"], classes: [" "], agents: [""], facts: [""] });
    expect(f.identity).toEqual(["x"]);
    expect(f.cf_class).toEqual([]);
    expect(f.agent).toEqual([]);
    expect(f.fact).toEqual([]);
  });

  it("drops empty compound (-S) strings too, as go-choria's CompoundFilter does", () => {
    const f = buildFilter({ compound: ["", "  ", 'with("web")'] });
    expect(f.compound).toEqual([[{ expr: 'with("web")' }]]);
    expect(buildFilter({ compound: [""] }).compound).toEqual([]);
  });
});
