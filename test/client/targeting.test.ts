import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, inventoryFromReplies, type RpcReply } from "../../src/client/index.js";
import { builtinDDL, type AgentDDL } from "../../src/core/ddl/index.js";
import { Emulator, emulatedFacts } from "../../src/apps/emulator/index.js";
import { buildFilter } from "../../src/core/filter/index.js";
import { replyPrefix } from "../../src/core/protocol/index.js";
import { chorusAsync, type CliResult } from "../helpers/cli.js";
import { startSecureFleet, type SecureFleet } from "../helpers/fleet.js";

const quiet = pino({ level: "silent" });
const N = 50;
/** How many of the emulated fleet's nodes have fact=value (facts are per-node hashes). */
function countOf(fact: string, value: string): number {
  let n = 0;
  for (let i = 1; i <= N; i++) if (emulatedFacts(i)[fact] === value) n++;
  return n;
}
const BIN = fileURLToPath(new URL("../../bin/chorus.js", import.meta.url));

/** The CLI with standard input, for `... --json | chorus req --dm results`. */
function chorusWithStdin(args: string[], env: Record<string, string>, input: string): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.once("error", reject);
    child.once("close", (status) => resolve({ status, stdout, stderr }));
    child.stdin.end(input);
  });
}

describe("targeting on an emulated fleet", () => {
  let fleet: SecureFleet;
  let emulator: Emulator;
  let client: Client;
  let inventoryFile: string;
  let env: Record<string, string>;
  const dir = mkdtempSync(join(tmpdir(), "chorus-targeting-"));

  beforeAll(async () => {
    fleet = await startSecureFleet();
    emulator = Emulator.fromConfigFile(fleet.setup.emulatorConfig, { nodes: N, logger: quiet });
    await emulator.start();
    client = await Client.fromConfigFile(fleet.setup.clientConfig, { logger: quiet, windowMs: 150 });
    env = { CHORUS_CONFIG: fleet.setup.clientConfig };
    // Snapshot the live fleet into an inventory file, as `chorus inventory --save` does.
    const inv = await client.request("rpcutil", "inventory", {}, { discoveryWindowed: true });
    expect(inv.replies).toHaveLength(N);
    inventoryFile = join(dir, "inventory.json");
    writeFileSync(inventoryFile, JSON.stringify(inventoryFromReplies(inv.replies)));
  }, 60_000);
  afterAll(async () => {
    await client?.close();
    await emulator?.stop();
    await fleet?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const broadcast = (f: Parameters<typeof buildFilter>[0]) =>
    client.discover({ filter: buildFilter(f), windowed: true, timeoutMs: 3000 }).then((x) => x.sort());
  const inventory = (f: Parameters<typeof buildFilter>[0]) =>
    client.discover({ filter: buildFilter(f), method: "inventory", options: { file: inventoryFile } });

  // Each case: the filter, and how many of the 50 emulated nodes it should select
  // (from src/apps/emulator/facts.ts's deterministic facts).
  const cases: [string, Parameters<typeof buildFilter>[0]][] = [
    ["fact ==", { facts: ["role==web"] }],
    ["fact = (alias)", { facts: ["os=linux"] }],
    ["fact !=", { facts: ["os!=linux"] }],
    ["fact <", { facts: ["cores<4"] }],
    ["fact >", { facts: ["cores>4"] }],
    ["fact <=", { facts: ["memory_gb<=12"] }],
    ["fact >=", { facts: ["memory_gb>=24"] }],
    ["fact =~", { facts: ["kernel=~/^6\\.[0-3]\\./"] }],
    ["fact /re/ value", { facts: ["location=/^(lon|ams)$/"] }],
    ["dotted fact path", { facts: ["network.primary=~/\\.1\\d$/"] }],
    ["facts ANDed", { facts: ["os=linux", "role=db"] }],
    ["class", { classes: ["role::cache"] }],
    ["class /re/", { classes: ["/^location::(nyc|sin)$/"] }],
    ["agent", { agents: ["rpcutil"] }],
    ["identity /re/", { identity: ["/0[0-2]\\.emulated/"] }],
    ["combined -W", { combined: ["role=web location::lon"] }],
    ["-S comparison", { compound: ["facts.cores >= 8 && facts.environment != 'production'"] }],
    ["-S regex and not", { compound: ["identity =~ /[49]\\.emulated/ and not (facts.os == 'linux')"] }],
    ["-S with()", { compound: ["with('role=db') || with('location::sin')"] }],
    ["-S fact()", { compound: ["fact('network.primary') =~ '^10\\\\.0\\\\.0\\\\.[1-9]$'"] }],
    ["-S include()", { compound: ["include(classes, 'role::queue') && include(agents, 'rpcutil')"] }],
    ["-S in", { compound: ["'role::batch' in classes || facts.location in ['ams']"] }],
    ["-S semver()", { compound: ["semver(facts.kernel, '>= 6.5.0, < 6.8')"] }],
    ["-S with class and fact filter together", { compound: ["with('location::lon')"], facts: ["cores>1"] }],
  ];

  it.each(cases)("%s: broadcast and inventory discovery select the same nodes", async (_name, f) => {
    const [b, i] = await Promise.all([broadcast(f), inventory(f)]);
    expect(b.length).toBeGreaterThan(0);
    expect(i).toEqual(b);
  });

  it("a filter matching nothing is empty both ways", async () => {
    const f = { compound: ["facts.cores > 1000"] };
    expect(await inventory(f)).toEqual([]);
    expect(await broadcast(f)).toEqual([]);
  });

  it("--limit first and random (same seed, same nodes)", async () => {
    const base = { discoveryMethod: "inventory", discoveryOptions: { file: inventoryFile } };
    const r1 = await client.request(
      "rpcutil",
      "ping",
      {},
      { ...base, limit: 5, limitMethod: "random", limitSeed: 42 },
    );
    const r2 = await client.request(
      "rpcutil",
      "ping",
      {},
      { ...base, limit: 5, limitMethod: "random", limitSeed: 42 },
    );
    const r3 = await client.request(
      "rpcutil",
      "ping",
      {},
      { ...base, limit: 5, limitMethod: "random", limitSeed: 7 },
    );
    const s = (r: { replies: RpcReply[] }) => r.replies.map((x) => x.sender).sort();
    expect(s(r1)).toHaveLength(5);
    expect(s(r1)).toEqual(s(r2));
    expect(s(r3)).not.toEqual(s(r1));
    const first = await client.request("rpcutil", "ping", {}, { ...base, limit: "10%" });
    expect(s(first)).toEqual(
      JSON.parse(readFileSync(inventoryFile, "utf8"))
        .nodes.slice(0, 5)
        .map((n: { name: string }) => n.name),
    );
  });

  it("--batch: N nodes at a time with a pause between batches", async () => {
    const batches: number[] = [];
    const t0 = performance.now();
    const r = await client.request(
      "rpcutil",
      "ping",
      {},
      {
        discoveryMethod: "inventory",
        discoveryOptions: { file: inventoryFile },
        batchSize: 20,
        batchSleepMs: 200,
        onBatch: (_i, nodes) => batches.push(nodes.length),
      },
    );
    expect(batches).toEqual([20, 20, 10]);
    expect(r.stats.ok).toBe(N);
    expect(r.stats.noResponses).toEqual([]);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(400);
  });

  it("--canary: a failing first batch stops the request", async () => {
    // The client knows an action the nodes do not: every node answers "unknown action".
    const base = builtinDDL("rpcutil");
    const ddl: AgentDDL = {
      ...base,
      actions: [...base.actions, { ...base.actions[0]!, action: "not_on_nodes", aggregate: [] }],
    };
    const r = await client.request(
      "rpcutil",
      "not_on_nodes",
      {},
      {
        ddl,
        discoveryMethod: "inventory",
        discoveryOptions: { file: inventoryFile },
        canary: 3,
        batchSize: 10,
      },
    );
    expect(r.stats.canaryStopped).toBe(true);
    expect(r.stats.responses).toBe(3);
    expect(r.stats.failed).toBe(3);
    expect(r.stats.skipped).toHaveLength(N - 3);
    // a good canary lets the rest through
    const ok = await client.request(
      "rpcutil",
      "ping",
      {},
      { discoveryMethod: "inventory", discoveryOptions: { file: inventoryFile }, canary: 3, batchSleepMs: 0 },
    );
    expect(ok.stats.canaryStopped).toBeUndefined();
    expect(ok.stats.ok).toBe(N);
  });

  it("--reply-to publishes and returns the request id; replies go to that subject", async () => {
    const nc = await client.connect();
    const subject = `${replyPrefix(client.collective, client.callerId)}.async`;
    const got: string[] = [];
    const sub = nc.subscribe(subject, {
      callback: (_e, m) => {
        got.push(m.data.length > 0 ? "reply" : "");
      },
    });
    const t0 = performance.now();
    const r = await client.request(
      "rpcutil",
      "ping",
      {},
      {
        filter: buildFilter({ identity: ["/0[0-1]\\.emulated/"] }),
        replyTo: subject,
        discoveryWindowed: true,
      },
    );
    expect(r.stats.requestid).toMatch(/^[0-9A-Za-z]{27}$/);
    expect(r.replies).toEqual([]);
    expect(performance.now() - t0).toBeLessThan(2000);
    const want = r.stats.discovered;
    expect(want).toBeGreaterThan(0);
    for (let i = 0; i < 50 && got.length < want; i++) await new Promise((res) => setTimeout(res, 50));
    sub.unsubscribe();
    expect(got).toHaveLength(want);
  });

  it("--reply-to outside the caller's inbox is refused before anything is sent (nodes would refuse it)", async () => {
    for (const subject of ["choria.lifecycle.event.alive.x", `${client.collective}.reply.someoneelse.x`]) {
      await expect(
        client.request("rpcutil", "ping", {}, { nodes: ["node-00001.emulated.chorus"], replyTo: subject }),
      ).rejects.toThrow(/not under this caller's inbox/);
    }
  });

  it("--retry re-sends to nodes that did not answer", async () => {
    const nodes = ["ghost-1.example", "ghost-2.example", ...(await inventory({ classes: ["role::db"] }))];
    const r = await client.request("rpcutil", "ping", {}, { nodes, retries: 2, timeoutMs: 400 });
    expect(r.stats.retries).toBe(2);
    expect(r.stats.ok).toBe(nodes.length - 2);
    expect(r.stats.noResponses).toEqual(["ghost-1.example", "ghost-2.example"]);
  });

  it("--ttl: whole seconds travel with the request; anything else is refused before sending", async () => {
    const r = await client.request("rpcutil", "ping", {}, { nodes: ["node-00001.emulated.chorus"], ttlS: 1 });
    expect(r.stats.ok).toBe(1);
    await expect(client.request("rpcutil", "ping", {}, { nodes: ["x"], ttlS: 0.5 })).rejects.toThrow(
      /^ttlS: 0.5 /,
    );
  });

  describe("the CLI", () => {
    it("req --json: parseable, with DDL summaries; -S and --filter-replies", async () => {
      const out = join(dir, "saved.json");
      const r = await chorusAsync(
        [
          "req",
          "rpcutil",
          "get_fact",
          "fact=role",
          "-S",
          "with('location::lon')",
          "--json",
          "-o",
          out,
          "--discovery-window",
        ],
        env,
      );
      expect(r.stderr).toBe("");
      expect(r.status).toBe(0);
      const doc = JSON.parse(r.stdout);
      const lon = await inventory({ classes: ["location::lon"] });
      expect(doc.replies.map((x: { sender: string }) => x.sender).sort()).toEqual(lon);
      const counts = doc.summaries.value.counts as Record<string, number>;
      expect(Object.values(counts).reduce((a, b) => a + b, 0)).toBe(lon.length);
      expect(JSON.parse(readFileSync(out, "utf8")).request_stats.responses).toBe(lon.length);

      const f = await chorusAsync(
        [
          "req",
          "rpcutil",
          "get_fact",
          "fact=role",
          "--dm",
          "inventory",
          "--do",
          `file=${inventoryFile}`,
          "--filter-replies",
          "ok() && data('value') == 'db'",
          "--senders",
          "--sort",
        ],
        env,
      );
      expect(f.status).toBe(0);
      expect(f.stdout.trim().split("\n")).toEqual(await inventory({ facts: ["role=db"] }));
    });

    it("--jsonl and --table; results piped into the next request", async () => {
      const base = [
        "req",
        "rpcutil",
        "ping",
        "--dm",
        "inventory",
        "--do",
        `file=${inventoryFile}`,
        "-F",
        "role=web",
      ];
      const jl = await chorusAsync([...base, "--jsonl"], env);
      expect(jl.status).toBe(0);
      const lines = jl.stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l));
      expect(lines).toHaveLength(countOf("role", "web"));
      expect(lines[0]).toMatchObject({ action: "ping", statuscode: 0 });
      const t = await chorusAsync([...base, "--table", "--sort"], env);
      const rows = t.stdout.trim().split("\n");
      expect(rows[1]).toMatch(/^\| Sender +\| Status \| Timestamp +\|$/);
      expect(rows).toHaveLength(countOf("role", "web") + 4);
      const piped = await chorusWithStdin(
        ["req", "rpcutil", "ping", "--dm", "results", "--senders", "--sort"],
        env,
        jl.stdout,
      );
      expect(piped.stderr).toBe("");
      expect(piped.stdout.trim().split("\n")).toEqual(lines.map((l) => l.sender).sort());
    });

    it("text output shows the DDL summary", async () => {
      const r = await chorusAsync(
        ["req", "rpcutil", "get_fact", "fact=os", "--dm", "inventory", "--do", `file=${inventoryFile}`],
        env,
      );
      expect(r.status).toBe(0);
      for (const os of ["linux", "freebsd", "windows"]) {
        expect(r.stdout).toMatch(new RegExp(`\\n\\s+${os}: ${countOf("os", os)}\\n`));
      }
      expect(r.stdout).toContain("Summary of Value:");
    });

    it("ping --graph and discover with -S", async () => {
      const g = await chorusAsync(["ping", "--graph", "--discovery-window"], env);
      expect(g.status).toBe(0);
      expect(g.stdout).toMatch(/│/);
      expect(g.stdout).toMatch(new RegExp(`${N} replies min/p50/p90/p99/max`));
      const d = await chorusAsync(
        ["discover", "-S", "facts.cores == 16", "--dm", "inventory", "--do", `file=${inventoryFile}`],
        env,
      );
      expect(d.stdout.trim().split("\n")).toEqual(await inventory({ facts: ["cores=16"] }));
    });

    it("facts, inventory NODE and inventory --save", async () => {
      const f = await chorusAsync(
        ["facts", "role", "--dm", "inventory", "--do", `file=${inventoryFile}`],
        env,
      );
      expect(f.status).toBe(0);
      for (const role of ["web", "db", "cache", "queue", "batch"]) {
        expect(f.stdout).toMatch(new RegExp(`  ${role} +found ${countOf("role", role)} times`));
      }
      const one = (await inventory({ classes: ["role::db"] }))[0]!;
      const i = await chorusAsync(["inventory", one], env);
      expect(i.status).toBe(0);
      expect(i.stdout).toContain(`Inventory for ${one}:`);
      expect(i.stdout).toMatch(/Agents:\n.*rpcutil/);
      expect(i.stdout).toMatch(/role +=> db/);
      expect(i.stdout).toMatch(/Statistics:\n +total/);
      const saved = join(dir, "db.json");
      const s = await chorusAsync(
        ["inventory", "--save", saved, "-C", "role::db", "--discovery-window"],
        env,
      );
      expect(s.status).toBe(0);
      const doc = JSON.parse(readFileSync(saved, "utf8"));
      expect(doc.nodes.map((n: { name: string }) => n.name)).toEqual(
        await inventory({ classes: ["role::db"] }),
      );
    });

    it("bad input: one line naming the cause, exit 1, nothing sent", async () => {
      const cases: [string[], RegExp][] = [
        [["discover", "-F", "os<>linux"], /could not parse fact filter "os<>linux"/],
        [
          ["discover", "-S", "facts.os = 'linux'"],
          /invalid compound filter .*column 10: unknown operator "="/,
        ],
        [
          ["discover", "--dm", "inventory", "--do", "file=/nonexistent.json"],
          /cannot read \/nonexistent.json: no such file/,
        ],
        [["req", "rpcutil", "get_fact", "nope=1"], /nope/],
        [["req", "rpcutil", "get_fact", "fact=os", "--limit", "0"], /--limit/],
        [["req", "rpcutil", "ping", "--filter-replies", "ok( &&"], /invalid reply filter .*column 5/],
        [
          ["req", "rpcutil", "ping", "--dm", "external", "--do", "command=/nonexistent"],
          /cannot run \/nonexistent/,
        ],
      ];
      const before = emulator.decoder.stats.messages;
      // In parallel: each is a fresh node process, and none of them may publish anything.
      const results = await Promise.all(cases.map(([args]) => chorusAsync(args, env)));
      results.forEach((r, k) => {
        const [args, re] = cases[k]!;
        expect(r.status, args.join(" ")).toBe(1);
        expect(r.stderr.trim().split("\n"), args.join(" ")).toHaveLength(1);
        expect(r.stderr, args.join(" ")).toMatch(re);
      });
      expect(emulator.decoder.stats.messages).toBe(before);
    });
  });
});
