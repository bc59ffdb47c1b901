import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { Client, ClientError, discoverOffline, type DiscoveryMethod } from "../../src/client/index.js";
import { makeTrust } from "./fleet.js";
import { buildFilter } from "../../src/core/filter/index.js";
import { emptyFilter, type Filter } from "../../src/core/protocol/index.js";

const FIX = fileURLToPath(new URL("../fixtures/discovery/", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "chorus-disc-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};

const disc = (
  method: DiscoveryMethod,
  options: Record<string, string>,
  filter: Filter = emptyFilter(),
  timeoutMs = 3000,
) => discoverOffline({ method, options, filter, collective: "mcollective", timeoutMs });

async function failure(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(ClientError);
    return (err as Error).message;
  }
  throw new Error("did not fail");
}

describe("flatfile discovery", () => {
  it("reads text, JSON lists/objects, YAML, JSON lines and earlier results", async () => {
    expect(
      await disc("flatfile", { file: file("n.txt", "# fleet\na.example\n\n b.example \na.example\n") }),
    ).toEqual(["a.example", "b.example"]);
    expect(await disc("flatfile", { file: file("n.json", '["a", "b"]') })).toEqual(["a", "b"]);
    expect(await disc("flatfile", { file: file("m.json", '{"a": {}, "b": {}}') })).toEqual(["a", "b"]);
    expect(await disc("flatfile", { file: file("n.yaml", "- a\n- b\n") })).toEqual(["a", "b"]);
    expect(await disc("file", { file: file("noext", '{"nodes": ["x", "y"]}') })).toEqual(["x", "y"]);
    const results = JSON.stringify({
      agent: "rpcutil",
      action: "ping",
      replies: [
        { sender: "ok1", statuscode: 0 },
        { sender: "bad1", statuscode: 5 },
      ],
      request_stats: {},
    });
    const rf = file("res.json", results);
    expect(await disc("results", { file: rf })).toEqual(["ok1", "bad1"]);
    expect(await disc("results", { file: rf, status: "ok" })).toEqual(["ok1"]);
    expect(await disc("results", { file: rf, status: "failed" })).toEqual(["bad1"]);
    const jl = file("res.jsonl", '{"sender":"l1","statuscode":0}\n{"sender":"l2","statuscode":0}\n');
    expect(await disc("results", { file: jl })).toEqual(["l1", "l2"]);
    // results default to stdin
    expect(
      await discoverOffline({
        method: "results",
        options: {},
        filter: emptyFilter(),
        collective: "c",
        timeoutMs: 1000,
        stdin: () => results,
      }),
    ).toEqual(["ok1", "bad1"]);
  });

  it("--do filter= selects the list inside a document", async () => {
    const f = file("deep.json", JSON.stringify({ data: { hosts: [{ fqdn: "h1" }, { fqdn: "h2" }] } }));
    expect(await disc("flatfile", { file: f, filter: "data.hosts.#.fqdn" })).toEqual(["h1", "h2"]);
    expect(await failure(disc("flatfile", { file: f, filter: "data.nope" }))).toMatch(/selects nothing/);
  });

  it("applies identity filters and refuses filters it cannot judge", async () => {
    const f = file("ids.txt", "web1\nweb2\ndb1\n");
    expect(await disc("flatfile", { file: f }, buildFilter({ identity: ["/^web/"] }))).toEqual([
      "web1",
      "web2",
    ]);
    expect(await failure(disc("flatfile", { file: f }, buildFilter({ facts: ["os=linux"] })))).toMatch(
      /only knows identities/,
    );
  });

  it("bad files: one clear error naming the cause", async () => {
    expect(await failure(disc("flatfile", { file: join(dir, "missing.txt") }))).toMatch(
      /cannot read .*missing.txt: no such file/,
    );
    expect(await failure(disc("flatfile", { file: file("bad.json", "[1, 2") }))).toMatch(
      /bad.json is not valid JSON/,
    );
    expect(await failure(disc("flatfile", { file: file("bad.yaml", "- a\n  - : b\n") }))).toMatch(
      /not valid YAML/,
    );
    expect(await failure(disc("flatfile", { file: file("sp.txt", "a b\n") }))).toMatch(
      /line 1: "a b" is not a node identity/,
    );
    expect(await failure(disc("flatfile", { file: file("num.json", "[1]") }))).toMatch(
      /item 0: 1 is not a node identity/,
    );
    expect(await failure(disc("flatfile", {}))).toMatch(/needs options file=PATH$/);
    expect(await failure(disc("flatfile", { file: "x", nope: "1" }))).toMatch(/^options nope: not an option/);
    expect(await failure(disc("flatfile", { file: f0(), format: "xml" }))).toMatch(/unknown format "xml"/);
  });
});

function f0(): string {
  return file("f0.txt", "a\n");
}

describe("inventory discovery", () => {
  const inv = join(FIX, "inventory.json");
  it("matches facts, classes, agents and compound client-side, in the collective", async () => {
    expect(await disc("inventory", { file: inv })).toEqual(["a.example", "b.example", "c.example"]);
    expect(await disc("inventory", { file: inv }, buildFilter({ facts: ["role=web"] }))).toEqual([
      "a.example",
      "b.example",
    ]);
    expect(await disc("inventory", { file: inv }, buildFilter({ agents: ["puppet"] }))).toEqual([
      "c.example",
    ]);
    expect(
      await disc(
        "inventory",
        { file: inv },
        buildFilter({ compound: ["facts.cores > 4 && with('location::lon')"] }),
      ),
    ).toEqual(["a.example", "c.example"]);
  });

  it("named groups via -I group:NAME or --do group=NAME", async () => {
    expect(await disc("inventory", { file: inv }, buildFilter({ identity: ["group:web_lon"] }))).toEqual([
      "a.example",
    ]);
    expect(await disc("inventory", { file: inv, group: "big" })).toEqual(["a.example", "c.example"]);
    expect(
      await disc("inventory", { file: inv }, buildFilter({ identity: ["group:web_lon", "b.example"] })),
    ).toEqual(["a.example", "b.example"]);
    expect(await failure(disc("inventory", { file: inv, group: "nope" }))).toMatch(
      /no group "nope" \(groups: web_lon, big\)/,
    );
  });

  it("reads YAML inventory files", async () => {
    const y = file(
      "inv.yaml",
      [
        "$schema: https://choria.io/schemas/choria/discovery/v1/inventory_file.json",
        "nodes:",
        "  - name: y1",
        "    collectives: [mcollective]",
        "    facts: { role: web }",
        "    classes: []",
        "    agents: [rpcutil]",
        "",
      ].join("\n"),
    );
    expect(await disc("inventory", { file: y }, buildFilter({ compound: ["facts.role == 'web'"] }))).toEqual([
      "y1",
    ]);
  });

  it("rejects files that do not match the schema, naming where", async () => {
    const bad = file(
      "inv.json",
      JSON.stringify({
        $schema: "https://choria.io/schemas/choria/discovery/v1/inventory_file.json",
        nodes: [{ name: "x" }],
      }),
    );
    expect(await failure(disc("inventory", { file: bad }))).toMatch(
      /does not match .*inventory_file.json: \/nodes\/0: must have required property/,
    );
    expect(await failure(disc("inventory", { file: file("inv2.json", "{") }))).toMatch(/not valid JSON/);
    expect(await failure(disc("inventory", { file: join(dir, "none.json") }))).toMatch(/no such file/);
    const badGroup = file(
      "inv3.json",
      JSON.stringify({
        $schema: "https://choria.io/schemas/choria/discovery/v1/inventory_file.json",
        groups: [{ name: "g", filter: { compound: "facts.x ==" } }],
        nodes: [],
      }),
    );
    expect(await failure(disc("inventory", { file: badGroup }))).toMatch(
      /group "g": invalid compound filter .*column 11/,
    );
  });
});

describe("external discovery", () => {
  const ok = join(FIX, "external-ok.mjs");
  const bad = join(FIX, "external-bad.mjs");
  it("exchanges the request and reply files", async () => {
    const f = buildFilter({ identity: ["x1"], compound: ["true"] });
    expect(await disc("external", { command: ok, nodes: "n1,n2" }, f)).toEqual([
      "n1",
      "n2",
      "collective-mcollective",
      "x1",
      "compound-1",
    ]);
  });

  it.each([
    ["hang", /did not finish within 1s and was killed/],
    ["crash", /exited with status 3: the database is down/],
    ["garbage", /wrote a reply that is not JSON/],
    ["wrongshape", /not an io.choria.choria.discovery.v1.external_reply/],
    ["error", /reported: no access/],
    ["silent", /wrote no reply/],
  ])("a program that %s gives one clear error", async (mode, re) => {
    const t0 = Date.now();
    expect(await failure(disc("external", { command: bad, mode }, emptyFilter(), 1000))).toMatch(re);
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it("a missing program or command option", async () => {
    expect(await failure(disc("external", { command: join(dir, "nope") }))).toMatch(
      /cannot run .*no such program/,
    );
    expect(await failure(disc("external", {}))).toMatch(/needs options command=PROGRAM$/);
  });
});

describe("configured defaults", () => {
  it("default_discovery_method and the inventory source apply when a call names none", async () => {
    const trust = makeTrust();
    const c = new Client({
      security: trust.clientSecurity,
      // nothing listens here: offline methods never connect
      servers: ["nats://127.0.0.1:1"],
      collective: "mcollective",
      discoveryMethod: "inventory",
      discoveryDefaults: { inventory: { file: join(FIX, "inventory.json") } },
    });
    try {
      expect(await c.discover({ filter: buildFilter({ facts: ["role=db"] }) })).toEqual(["c.example"]);
      await expect(
        c.discover({ method: "broadcast", filter: buildFilter({ identity: ["group:web"] }) }),
      ).rejects.toThrow(/^filter\.identity group:web: groups need inventory discovery \(method inventory\)$/);
      const f = file("other.txt", "z1\n");
      expect(await c.discover({ method: "flatfile", options: { file: f } })).toEqual(["z1"]);
    } finally {
      await c.close();
      trust.cleanup();
    }
  });
});
