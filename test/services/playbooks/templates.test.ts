import { describe, expect, it } from "vitest";
import {
  PlaybookError,
  type TemplateContext,
  renderTemplate,
  templateNames,
} from "../../../src/services/playbooks/index.js";
import { strftime } from "../../../src/services/playbooks/templates.js";

const ctx = (over: Partial<TemplateContext> = {}): TemplateContext => ({
  inputs: {
    n: 5,
    name: "web",
    on: true,
    list: ["a", "b"],
    cfg: { port: 8080, tags: ["x"] },
    unset: undefined,
  },
  nodes: { web: ["w1", "w2", "w3"], none: [] },
  metadata: { name: "deploy", version: "1.2.0" },
  startedAt: Date.now() - 2500,
  ...over,
});

async function badTemplate(value: unknown, c = ctx()): Promise<string> {
  try {
    await renderTemplate(value, c);
  } catch (e) {
    expect(e).toBeInstanceOf(PlaybookError);
    expect((e as PlaybookError).code).toBe("bad_template");
    return (e as Error).message;
  }
  throw new Error("expected bad_template");
}

describe("renderTemplate", () => {
  it.each<[string, unknown]>([
    ["{{{ nodes.web }}}", ["w1", "w2", "w3"]],
    ["{{{nodes.web}}}", ["w1", "w2", "w3"]],
    ["  {{{ nodes.web }}} ", ["w1", "w2", "w3"]],
    ["{{{ inputs.n }}}", 5],
    ["{{{ inputs.on }}}", true],
    ["{{{ inputs.cfg }}}", { port: 8080, tags: ["x"] }],
    ["{{{ inputs.cfg.port }}}", 8080],
    ["{{{ inputs.cfg.tags.0 }}}", "x"],
    ["{{{ inputs.list[1] }}}", "b"],
    ["{{{ inputs.unset }}}", undefined],
    ["{{{ metadata.name }}}", "deploy"],
    ["{{{ metadata.author }}}", ""],
    ["{{{ nodes.none }}}", []],
  ])("%s alone keeps its type: %j", async (tpl, want) => {
    expect(await renderTemplate(tpl, ctx())).toEqual(want);
  });

  it.each<[string, string]>([
    ["nodes: {{{ nodes.web }}}", "nodes: w1,w2,w3"],
    ["n={{{ inputs.n }}}", "n=5"],
    ["{{{ inputs.cfg }}}!", '{"port":8080,"tags":["x"]}!'],
    ["{{{ inputs.name }}}-{{{ inputs.n }}}", "web-5"],
    ["[{{{ inputs.unset }}}]", "[]"],
    ["no template", "no template"],
    ["{{{ metadata.name }}}@{{{ metadata.version }}}", "deploy@1.2.0"],
  ])("%s inside a string reads %j", async (tpl, want) => {
    expect(await renderTemplate(tpl, ctx())).toBe(want);
  });

  it("renders deeply through arrays and objects, leaving other values alone", async () => {
    const v = {
      a: ["{{{ inputs.n }}}", "x{{{ inputs.n }}}"],
      b: { c: "{{{ nodes.web }}}", d: 3, e: null, f: false },
    };
    expect(await renderTemplate(v, ctx())).toEqual({
      a: [5, "x5"],
      b: { c: ["w1", "w2", "w3"], d: 3, e: null, f: false },
    });
    // the input is not changed
    expect(v.a[0]).toBe("{{{ inputs.n }}}");
  });

  it("previous_task, with Choria's empty one before the first task", async () => {
    expect(await renderTemplate("{{{ previous_task.success }}}", ctx())).toBe(false);
    expect(await renderTemplate("[{{{ previous_task.msg }}}]", ctx())).toBe("[]");
    const prev = { success: true, description: "ping", msg: "3 ok", data: { ok: 3 }, runtime: 1.5 };
    const c = ctx({ previous_task: prev });
    expect(await renderTemplate("{{{ previous_task.data }}}", c)).toEqual({ ok: 3 });
    expect(await renderTemplate("{{{ previous_task.data.ok }}}", c)).toBe(3);
    expect(await renderTemplate("{{{ previous_task.description }}}: {{{ previous_task.msg }}}", c)).toBe(
      "ping: 3 ok",
    );
    expect(await renderTemplate("{{{ previous_task.runtime }}}", c)).toBe(1.5);
  });

  it("a dynamic input is read each time it is referenced", async () => {
    let reads = 0;
    const c = ctx({
      dynamicInput: (name) => {
        reads++;
        return Promise.resolve(name === "live" ? `v${reads}` : undefined);
      },
    });
    expect(await renderTemplate("{{{ inputs.live }}}", c)).toBe("v1");
    expect(await renderTemplate("{{{ inputs.live }}}", c)).toBe("v2");
    // a known input does not ask
    expect(await renderTemplate("{{{ inputs.n }}}", c)).toBe(5);
    expect(reads).toBe(2);
    expect(await badTemplate("{{{ inputs.other }}}", c)).toBe("unknown input other in {{{ inputs.other }}}");
  });

  it("uuid and elapsed_time", async () => {
    const a = await renderTemplate("{{{ uuid }}}", ctx());
    const b = await renderTemplate("{{{ uuid }}}", ctx());
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(a).not.toBe(b);
    const e = await renderTemplate("{{{ elapsed_time }}}", ctx());
    expect(typeof e).toBe("number");
    expect(e as number).toBeGreaterThanOrEqual(2.5);
    expect(e as number).toBeLessThan(10);
  });

  it("utc_date and date format now", async () => {
    const before = new Date();
    const d = (await renderTemplate('{{{ utc_date("%Y-%m-%d %H:%M:%S %z") }}}', ctx())) as string;
    expect(d).toMatch(/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} \+0000$/);
    expect(Math.abs(Date.parse(d.replace(" ", "T").replace(" +0000", "Z")) - before.getTime())).toBeLessThan(
      5000,
    );
    const s = Number(await renderTemplate("{{{ utc_date('%s') }}}", ctx()));
    expect(Math.abs(s - Math.floor(before.getTime() / 1000))).toBeLessThanOrEqual(2);
    expect(await renderTemplate("{{{ date('%Y') }}}", ctx())).toBe(String(new Date().getFullYear()));
    // no argument: ISO 8601 with the offset
    expect(await renderTemplate("{{{ utc_date }}}", ctx())).toMatch(
      /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+0000$/,
    );
    expect(await renderTemplate("{{{ utc_date() }}}", ctx())).toMatch(
      /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+0000$/,
    );
  });

  it("unknown names are bad_template naming them", async () => {
    expect(await badTemplate("{{{ inputs.nope }}}")).toBe("unknown input nope in {{{ inputs.nope }}}");
    expect(await badTemplate("x {{{ nodes.db }}}")).toBe("unknown node set db in {{{ nodes.db }}}");
    expect(await badTemplate("{{{ secrets.key }}}")).toMatch(
      /^unknown name "secrets" in \{\{\{ secrets\.key \}\}\}/,
    );
    expect(await badTemplate("{{{ metadata.owner }}}")).toBe(
      "unknown name metadata.owner in {{{ metadata.owner }}}",
    );
    expect(await badTemplate("{{{ previous_task.output }}}")).toMatch(/^unknown name previous_task\.output/);
    expect(await badTemplate("{{{ inputs.cfg.host }}}")).toBe(
      "inputs.cfg.host does not exist in {{{ inputs.cfg.host }}}",
    );
    expect(await badTemplate("{{{ inputs.n + 1 }}}")).toBe("cannot parse template {{{ inputs.n + 1 }}}");
    expect(await badTemplate({ deep: ["{{{ bogus }}}"] })).toMatch(/^unknown name "bogus"/);
  });
});

describe("strftime", () => {
  // 2024-03-05 07:08:09.012 UTC, a Tuesday, day 65 of a leap year
  const d = new Date(Date.UTC(2024, 2, 5, 7, 8, 9, 12));
  it.each<[string, string]>([
    ["%Y-%m-%d", "2024-03-05"],
    ["%H:%M:%S", "07:08:09"],
    ["%s", "1709622489"],
    ["%z", "+0000"],
    ["%Z", "UTC"],
    ["%F %T", "2024-03-05 07:08:09"],
    ["%y %j %L", "24 065 012"],
    ["%a %A %b %B %e", "Tue Tuesday Mar March  5"],
    ["%I %p", "07 AM"],
    ["100%% %Q", "100% %Q"],
  ])("%s", (fmt, want) => {
    expect(strftime(d, fmt, true)).toBe(want);
  });

  it("local time carries the local offset in %z", () => {
    const off = -d.getTimezoneOffset();
    const z = `${off < 0 ? "-" : "+"}${String(Math.floor(Math.abs(off) / 60)).padStart(2, "0")}${String(Math.abs(off) % 60).padStart(2, "0")}`;
    expect(strftime(d, "%z", false)).toBe(z);
    expect(strftime(d, "%H", false)).toBe(String(d.getHours()).padStart(2, "0"));
  });
});

describe("templateNames", () => {
  it("lists what a value references, once each, in order", () => {
    expect(
      templateNames({
        a: "{{{ inputs.x }}} and {{{ nodes.web }}}",
        b: ["{{{ inputs.x }}}", "{{{ utc_date('%s') }}}", "{{{ inputs.list[2] }}}"],
        c: 5,
        d: "{{{ uuid }}}{{{ previous_task.msg }}}",
      }),
    ).toEqual(["inputs.x", "nodes.web", "utc_date", "inputs.list.2", "uuid", "previous_task.msg"]);
    expect(templateNames("plain")).toEqual([]);
    expect(templateNames("{{{ what ever }}}")).toEqual(["what ever"]);
  });
});
