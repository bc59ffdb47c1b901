import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Emulator, emulatedIdentity } from "../../../src/apps/emulator/index.js";
import { Client } from "../../../src/client/index.js";
import {
  runPlaybook,
  type NodeSetDef,
  type Playbook,
  type PlaybookEvent,
} from "../../../src/services/playbooks/index.js";
import { startSecureFleet, type SecureFleet } from "../../helpers/fleet.js";
import { testBook } from "./helpers.js";

const quiet = pino({ level: "silent" });
const N = 4;
const web = [1, 2].map((i) => emulatedIdentity(i));
const db = [3, 4].map((i) => emulatedIdentity(i));

let fleet: SecureFleet;
let emulator: Emulator;
let client: Client;
let dir: string;

beforeAll(async () => {
  fleet = await startSecureFleet();
  emulator = Emulator.fromConfigFile(fleet.setup.emulatorConfig, {
    nodes: N,
    logger: quiet,
    jobs: false,
    facts: (i) => ({ role: i <= 2 ? "web" : "db" }),
  });
  await emulator.start();
  client = await Client.fromConfigFile(fleet.setup.clientConfig, { logger: quiet, discoveryTimeoutMs: 800 });
  dir = mkdtempSync(join(tmpdir(), "chorus-pb-nodes-"));
}, 60_000);
afterAll(async () => {
  await client?.close();
  await emulator?.stop();
  await fleet?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function book(nodes: Record<string, NodeSetDef>, over: Partial<Playbook> = {}): Playbook {
  return testBook("nodes", join(dir, "book.yaml"), { nodes, ...over });
}

describe("node sets", () => {
  it("discovers with filters in declaration order and reports each set", async () => {
    const events: PlaybookEvent[] = [];
    const r = await runPlaybook(
      book({
        web: { type: "discovery", facts: ["role=web"] },
        all: { type: "discovery", agents: ["rpcutil"] },
        one_db: { type: "discovery", compound: 'facts.role == "db"', limit: 1 },
      }),
      { client, onEvent: (e) => events.push(e) },
    );
    expect(r.report.fail_message).toBeUndefined();
    expect(r.report.success).toBe(true);
    expect(r.nodes.web?.sort()).toEqual(web);
    expect(r.nodes.all?.sort()).toEqual([...web, ...db]);
    // limit takes one of the two db nodes
    expect(r.nodes.one_db).toHaveLength(1);
    expect(db).toContain(r.nodes.one_db?.[0]);
    expect(events.filter((e) => e.kind === "nodes").map((e) => (e.kind === "nodes" ? e.set : ""))).toEqual([
      "web",
      "all",
      "one_db",
    ]);
  });

  it("an empty set fails with when_empty, unless empty_ok", async () => {
    const r = await runPlaybook(
      book(
        { none: { type: "discovery", facts: ["role=mail"], when_empty: "no mail servers found" } },
        { tasks: [{ type: "shell", command: "touch ran" }] },
      ),
      { client },
    );
    expect(r.report.success).toBe(false);
    expect(r.report.fail_message).toBe("no mail servers found");
    // no task ran after the failed discovery
    expect(r.tasks).toHaveLength(0);

    const ok = await runPlaybook(
      book({ none: { type: "discovery", facts: ["role=mail"], empty_ok: true } }),
      {
        client,
      },
    );
    expect(ok.report.success).toBe(true);
    expect(ok.nodes.none).toEqual([]);
  });

  it("at_least fails a set that is too small", async () => {
    const r = await runPlaybook(book({ web: { type: "discovery", facts: ["role=web"], at_least: 3 } }), {
      client,
    });
    expect(r.report.success).toBe(false);
    expect(r.report.fail_message).toBe("node set web: needs at least 3 nodes, got 2");
  });

  it("uses: agent versions are checked against SemVer ranges (playbook-wide and per set)", async () => {
    const pass = await runPlaybook(
      book({ web: { type: "discovery", facts: ["role=web"] } }, { uses: { rpcutil: ">= 0.1.0 < 99" } }),
      {
        client,
      },
    );
    expect(pass.report.success).toBe(true);

    const r = await runPlaybook(
      book({ web: { type: "discovery", facts: ["role=web"], uses: { rpcutil: "^99.0.0" } } }),
      { client },
    );
    expect(r.report.success).toBe(false);
    expect(r.report.fail_message).toContain("node set web: agents do not match");
    expect(r.report.fail_message).toContain("does not satisfy ^99.0.0");

    const missing = await runPlaybook(
      book({ web: { type: "list", nodes: web, uses: { puppet: "~1.11" } } }),
      {
        client,
      },
    );
    expect(missing.report.fail_message).toContain("no agent puppet");
  });

  it("test: pings the nodes and fails on those that do not answer", async () => {
    const ok = await runPlaybook(book({ l: { type: "list", nodes: web, test: true } }), { client });
    expect(ok.report.success).toBe(true);
    const r = await runPlaybook(book({ l: { type: "list", nodes: [...web, "ghost.example"], test: true } }), {
      client,
    });
    expect(r.report.success).toBe(false);
    expect(r.report.fail_message).toBe("node set l: connectivity test failed for 1 node(s): ghost.example");
  });

  it("file sets read one identity per line or a JSON array, relative to the playbook's dir", async () => {
    writeFileSync(join(dir, "nodes.txt"), `# web servers\n${web[0]}\n\n${web[1]}\n${web[0]}\n`);
    writeFileSync(join(dir, "nodes.json"), JSON.stringify(db));
    writeFileSync(join(dir, "bad.txt"), "good.example\nnot an identity\n");
    const r = await runPlaybook(
      book({ lines: { type: "file", file: "nodes.txt" }, json: { type: "file", file: "nodes.json" } }),
      { client },
    );
    expect(r.report.success).toBe(true);
    expect(r.nodes).toEqual({ lines: web, json: db });
    const bad = await runPlaybook(book({ b: { type: "file", file: "bad.txt" } }), { client });
    expect(bad.report.fail_message).toContain('"not an identity" is not a node identity');
    const gone = await runPlaybook(book({ b: { type: "file", file: "missing.txt" } }), { client });
    expect(gone.report.fail_message).toContain("node set b: cannot read");
  });

  it("shell sets run a script that prints identities, with a timeout", async () => {
    const r = await runPlaybook(book({ s: { type: "shell", script: `printf '%s\\n' ${db.join(" ")}` } }), {
      client,
    });
    expect(r.nodes.s).toEqual(db);
    const slow = await runPlaybook(
      book({ s: { type: "shell", script: "sleep 5; echo x", timeout: "200ms" } }),
      {
        client,
      },
    );
    expect(slow.report.fail_message).toBe("node set s: script timed out after 0.2s");
    const failing = await runPlaybook(book({ s: { type: "shell", script: "echo oops >&2; exit 3" } }), {
      client,
    });
    expect(failing.report.fail_message).toBe("node set s: script exited with code 3: oops");
  });
});
