import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { Emulator, emulatedIdentity } from "../../../src/apps/emulator/index.js";
import { Client } from "../../../src/client/index.js";
import {
  openDataStores,
  takeLocks,
  type Playbook,
  type PlaybookReport,
} from "../../../src/services/playbooks/index.js";
import { parseInputArgs, splitFileArg } from "../../../src/apps/cli/playbook.js";
import { playbookEventLine, taskLine } from "../../../src/apps/cli/render/playbook.js";
import { chorusAsync } from "../../helpers/cli.js";
import { startSecureFleet, type SecureFleet } from "../../helpers/fleet.js";

// `chorus playbook show|run` as a user runs them (the built CLI) against a secure broker
// with JetStream and an emulated fleet of three nodes.
const quiet = pino({ level: "silent" });
const N = 3;
const BUCKET = "PB_CLI";

let fleet: SecureFleet;
let emulator: Emulator;
let dir: string;
let env: Record<string, string>;

const BOOK = `# deploys a release (the CLI test's book)
metadata:
  name: clibook
  version: "1.0.0"
  on_fail: "deploy of {{{ inputs.release }}} failed"

data_stores:
  state:
    type: kv
    bucket: ${BUCKET}

locks:
  - state

inputs:
  release:
    description: the release
    type: string
    required: true
    validation: '/^v\\d+\\.\\d+\\.\\d+$/'
  batch:
    type: integer
    default: 1
  fail:
    description: make the book fail
    type: boolean
    default: false
  pause:
    type: string
    default: "0"

nodes:
  all:
    type: discovery
    at_least: ${N}

tasks:
  - rpc:
      description: ask for the release fact
      nodes: all
      action: rpcutil.get_fact
      batch_size: 2
      properties:
        fact: "release_{{{ inputs.release }}}"
  - shell:
      description: pause and maybe fail
      command: "sleep {{{ inputs.pause }}}; test {{{ inputs.fail }}} = false"
  - data:
      action: write
      key: state/last_good
      value: "{{{ inputs.release }}}"

post_book:
  - shell:
      description: always
      command: "true"
`;

beforeAll(async () => {
  fleet = await startSecureFleet();
  emulator = Emulator.fromConfigFile(fleet.setup.emulatorConfig, { nodes: N, logger: quiet, jobs: false });
  await emulator.start();
  dir = mkdtempSync(join(tmpdir(), "chorus-pbcli-"));
  writeFileSync(join(dir, "book.yaml"), BOOK);
  env = { CHORUS_CONFIG: fleet.setup.clientConfig };
  const add = await chorusAsync(["kv", "add", BUCKET, "--config", fleet.setup.adminClientConfig]);
  expect(add.status).toBe(0);
}, 60_000);

afterAll(async () => {
  await emulator?.stop();
  await fleet?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const book = () => join(dir, "book.yaml");

describe("input flags", () => {
  const flags = [
    { name: "release", flag: "--release", type: "string", description: "", required: true, dynamic: false },
    { name: "force", flag: "--force", type: "boolean", description: "", required: false, dynamic: false },
    { name: "hosts", flag: "--hosts", type: "array", description: "", required: false, dynamic: false },
  ] as const;
  const f = flags.map((x) => ({ ...x }));

  it("reads --name value, --name=value, a bare boolean, and repeated arrays", () => {
    expect(parseInputArgs(["--release", "v1", "--force", "--hosts", "a", "--hosts=b"], f)).toEqual({
      release: "v1",
      force: "true",
      hosts: "a,b",
    });
    expect(parseInputArgs(["--force", "false", "--release=--x"], f)).toEqual({
      force: "false",
      release: "--x",
    });
  });

  it("refuses unknown flags (listing the inputs), missing values and stray words", () => {
    expect(() => parseInputArgs(["--nope", "1"], f)).toThrow(
      "unknown option --nope (the playbook's inputs: --release, --force, --hosts)",
    );
    expect(() => parseInputArgs(["--release"], f)).toThrow("--release needs a value");
    expect(() => parseInputArgs(["--release", "--force"], f)).toThrow("--release needs a value");
    expect(() => parseInputArgs(["stray"], f)).toThrow(/unexpected argument "stray"/);
  });

  it("finds the book first, or among the flags when they come first", () => {
    expect(splitFileArg(["b.yaml", "--x", "1"])).toEqual({ file: "b.yaml", rest: ["--x", "1"] });
    expect(splitFileArg(["--release", "v1", book(), "--force"])).toEqual({
      file: book(),
      rest: ["--release", "v1", "--force"],
    });
    expect(() => splitFileArg(["--release", "v1"])).toThrow(/give the playbook file first/);
  });
});

describe("rendering", () => {
  it("one line per task as written, for every type", () => {
    expect(
      taskLine({
        type: "rpc",
        nodes: "web",
        action: "svc.restart",
        batch_size: 2,
        post: ["summarize"],
        tries: 3,
      }),
    ).toBe("rpc svc.restart on web batch 2 post summarize [tries 3]");
    expect(
      taskLine({
        type: "shell",
        command: "./x {{{ inputs.a }}}",
        nodes: "web",
        timeout: "5s",
        fail_ok: true,
      }),
    ).toBe("shell ./x {{{ inputs.a }}} --nodes web timeout 5s [fail_ok]");
    expect(
      taskLine({ type: "data", action: "write", key: "s/k", value: { a: 1 }, description: "keep" }),
    ).toBe('keep: data write s/k = {"a":1}');
    expect(taskLine({ type: "webhook", uri: "https://h/x", method: "GET", pre_sleep: "1s" })).toBe(
      "webhook GET https://h/x [pre_sleep 1s]",
    );
    expect(taskLine({ type: "job", nodes: "web", workflow: { name: "restart" }, wait: false })).toBe(
      "job restart on web (no wait)",
    );
  });

  it("the live view: lines for what matters, none for progress or info logs", () => {
    expect(playbookEventLine({ kind: "lock", lock: "s", state: "waiting" })).toBe(
      "lock     s: held by another run, waiting",
    );
    expect(playbookEventLine({ kind: "nodes", set: "web", nodes: ["a", "b", "c", "d", "e", "f", "g"] })).toBe(
      "nodes    web: 7 nodes (a, b, c, d, e, ... (2 more))",
    );
    expect(
      playbookEventLine({
        kind: "task_end",
        set: "tasks",
        index: 0,
        success: false,
        msg: "boom",
        run_time: 1.5,
      }),
    ).toBe("FAILED   tasks #1 (1.50s): boom");
    expect(
      playbookEventLine({ kind: "task_progress", set: "tasks", index: 0, done: 1, total: 2 }),
    ).toBeUndefined();
    const log = (level: "info" | "warn", from: string, msg: string) =>
      playbookEventLine({ kind: "log", entry: { time: "", level, from, msg } });
    expect(log("info", "tasks[0]", "running")).toBeUndefined();
    expect(log("warn", "tasks[0]", "slow")).toBe("warning  tasks[0]: slow");
    expect(log("warn", "locks", "lock s waiting")).toBeUndefined();
  });
});

describe("chorus playbook show", () => {
  it("lists metadata, inputs as flags, node sets, stores, locks and tasks as written", async () => {
    const r = await chorusAsync(["playbook", "show", book()]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("Playbook: clibook 1.0.0\n");
    expect(r.stdout).toMatch(/^ {2}--release\s+string\s+required\s+the release$/m);
    expect(r.stdout).toMatch(/^ {2}--batch\s+integer\s+default 1$/m);
    expect(r.stdout).toMatch(/^ {2}--fail\s+boolean\s+default false\s+make the book fail$/m);
    expect(r.stdout).toMatch(/^ {2}all\s+discovery at_least=3$/m);
    expect(r.stdout).toMatch(/^ {2}state\s+kv bucket=PB_CLI$/m);
    expect(r.stdout).toContain("Locks:\n  state\n");
    expect(r.stdout).toContain(
      '  1. ask for the release fact: rpc rpcutil.get_fact on all {"fact":"release_{{{ inputs.release }}}"} batch 2\n',
    );
    expect(r.stdout).toContain("post_book:\n  1. always: shell true\n");
  });

  it("--json prints the representation both forms compile to", async () => {
    const r = await chorusAsync(["playbook", "show", book(), "--json"]);
    expect(r.status).toBe(0);
    const pb = JSON.parse(r.stdout) as Playbook;
    expect(pb.metadata).toMatchObject({ name: "clibook", version: "1.0.0" });
    expect(pb.locks).toEqual(["state"]);
    expect(pb.tasks.map((t) => t.type)).toEqual(["rpc", "shell", "data"]);
    expect(pb.inputs.release).toMatchObject({ type: "string", required: true });
  });

  it("shows a TypeScript book as the same representation as its YAML twin", async () => {
    const fixtures = join(import.meta.dirname, "../../services/playbooks/fixtures");
    const ts = await chorusAsync(["playbook", "show", join(fixtures, "deploy.ts"), "--json"]);
    expect(ts.stderr).toBe("");
    expect(ts.status).toBe(0);
    const yaml = await chorusAsync(["playbook", "show", join(fixtures, "deploy.yaml"), "--json"]);
    // where each part was written differs (file, line): what was written must not
    const strip = (json: string): unknown =>
      JSON.parse(json, (k, v: unknown) => (k === "source" ? undefined : v));
    expect(strip(ts.stdout)).toEqual(strip(yaml.stdout));
    expect((strip(ts.stdout) as Playbook).tasks).toHaveLength(3);
    const text = await chorusAsync(["playbook", "show", join(fixtures, "deploy.ts")]);
    expect(text.stdout).toContain("Playbook: deploy 1.2.0\n");
    expect(text.stdout).toMatch(/^ {2}--release\s+string\s+required\s+Release to deploy$/m);
  });

  it("a bad YAML book exits 1 naming the file, line and key", async () => {
    const bad = join(dir, "bad.yaml");
    writeFileSync(bad, BOOK.replace("      batch_size:", "      batch_sizes:"));
    const line = BOOK.split("\n").findIndex((l) => l.includes("batch_size:")) + 1;
    for (const cmd of [["show"], ["run", "--noop", "--release", "v1.0.0"]]) {
      const r = await chorusAsync(["playbook", cmd[0] as string, bad, ...cmd.slice(1)], env);
      expect(r.status).toBe(1);
      expect(r.stdout).toBe("");
      expect(r.stderr).toMatch(new RegExp(`^chorus playbook ${cmd[0]}: .*bad\\.yaml:${line}: .*batch_sizes`));
    }
  });
});

describe("docs/playbooks.md's worked example", () => {
  /** the first fenced block of `lang` after `marker` in the doc */
  function block(marker: string, lang: string): string {
    const doc = readFileSync(join(import.meta.dirname, "../../../docs/playbooks.md"), "utf8");
    const at = doc.indexOf(marker);
    expect(at).toBeGreaterThan(-1);
    const m = new RegExp("```" + lang + "\\n([\\s\\S]*?)```").exec(doc.slice(at));
    expect(m).not.toBeNull();
    return (m as RegExpExecArray)[1] as string;
  }

  it("is one book in both forms, and runs on the emulated fleet", async () => {
    const yaml = join(dir, "restart.yaml");
    const ts = join(dir, "restart.ts");
    writeFileSync(yaml, block("`restart.yaml`:", "yaml"));
    writeFileSync(ts, block("`restart.ts`, the same book:", "ts"));
    const a = await chorusAsync(["playbook", "show", yaml, "--json"]);
    const b = await chorusAsync(["playbook", "show", ts, "--json"]);
    expect(b.stderr).toBe("");
    const strip = (json: string): unknown =>
      JSON.parse(json, (k, v: unknown) => (k === "source" ? undefined : v));
    expect(strip(b.stdout)).toEqual(strip(a.stdout));

    const add = await chorusAsync(["kv", "add", "PLAYBOOKS", "--config", fleet.setup.adminClientConfig]);
    expect(add.status).toBe(0);
    for (const book of [yaml, ts]) {
      const r = await chorusAsync(["playbook", "run", book, "--service", "httpd"], env);
      expect(r.stderr).toBe("");
      expect(r.status).toBe(0);
      expect(r.stdout).toMatch(/^start {4}tasks #2 rpc: restart httpd$/m);
      expect(r.stdout).toMatch(
        /Playbook restart-web 1\.0\.0: succeeded in .*\n {2}nodes servers: \d+ nodes?\n {2}tasks: 5 run, 5 passed, 0 failed\n$/,
      );
    }
  });
});

describe("chorus playbook run", () => {
  it("--noop discovers and renders every task, runs none, takes no lock", async () => {
    const report = join(dir, "noop.yaml");
    const r = await chorusAsync(
      ["playbook", "run", book(), "--noop", "--release", "v2.0.0", "--report", report],
      env,
    );
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`nodes    all: 3 nodes (${emulatedIdentity(1)}, `);
    expect(r.stdout).toContain("Playbook clibook 1.0.0: rendered (noop)");
    expect(r.stdout).toContain(
      'noop     tasks #1: would run: rpc rpcutil.get_fact on all with {"fact":"release_v2.0.0"}\n',
    );
    expect(r.stdout).toContain("  tasks: 4 tasks rendered, none run\n");
    expect(r.stdout).not.toContain("lock ");
    const rep = parseYaml(readFileSync(report, "utf8")) as PlaybookReport;
    expect(rep.tasks.every((t) => !t.ran)).toBe(true);
    expect(rep.report.success).toBe(true);
  });

  it("runs end to end: input flags and --input, the live view, the summary, the YAML report", async () => {
    const report = join(dir, "report.yaml");
    // an input flag before the file, one after, and --input
    const r = await chorusAsync(
      [
        "playbook",
        "run",
        "--release",
        "v1.2.3",
        book(),
        "--batch=2",
        "--input",
        "pause=0",
        "--report",
        report,
      ],
      env,
    );
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines[0]).toBe("lock     state: held");
    expect(r.stdout).toMatch(/^start {4}tasks #1 rpc: ask for the release fact$/m);
    expect(r.stdout).toMatch(/^ok {7}tasks #1 \(\d+\.\d\ds\): /m);
    expect(r.stdout).toMatch(/^ok {7}post_book #1 /m);
    expect(r.stdout).toContain("lock     state: released");
    expect(r.stdout).toMatch(
      /Playbook clibook 1\.0\.0: succeeded in \d+\.\d\ds\n {2}nodes all: 3 nodes\n {2}tasks: 4 run, 4 passed, 0 failed\n$/,
    );

    const rep = parseYaml(readFileSync(report, "utf8")) as PlaybookReport;
    expect(rep.report).toMatchObject({ version: 1, success: true });
    expect(rep.playbook).toEqual({ name: "clibook", version: "1.0.0" });
    expect(rep.inputs.static).toMatchObject({ release: "v1.2.3", batch: 2, pause: "0", fail: false });
    expect(rep.nodes.all?.sort()).toEqual([1, 2, 3].map((i) => emulatedIdentity(i)).sort());
    expect(rep.tasks.map((t) => [t.set, t.type, t.success])).toEqual([
      ["tasks", "rpc", true],
      ["tasks", "shell", true],
      ["tasks", "data", true],
      ["post_book", "shell", true],
    ]);
    expect(rep.metrics.task_count).toBe(4);

    // the data task wrote to the kv store, and the lock was given back
    const client = await Client.fromConfigFile(fleet.setup.clientConfig, { logger: quiet });
    try {
      const pb = {
        ...(JSON.parse((await chorusAsync(["playbook", "show", book(), "--json"])).stdout) as Playbook),
      };
      const stores = await openDataStores(pb.data_stores, { nc: await client.connect() });
      expect(await stores.state?.read("last_good")).toBe("v1.2.3");
      const release = await takeLocks(pb, stores, { nc: await client.connect(), owner: "after" });
      await release();
    } finally {
      await client.close();
    }
  });

  it("--json prints the report; a failing book exits 1 with on_fail's message", async () => {
    const report = join(dir, "failed.yaml");
    const r = await chorusAsync(
      ["playbook", "run", book(), "--release", "v1.2.4", "--fail", "--json", "--report", report],
      env,
    );
    expect(r.status).toBe(1);
    const rep = JSON.parse(r.stdout) as PlaybookReport;
    expect(rep.report.success).toBe(false);
    expect(rep.report.fail_message).toMatch(/^deploy of .* failed \(tasks task 2 \(pause and maybe fail\): /);
    // the live view went to stderr; post_book still ran
    expect(r.stderr).toMatch(/^FAILED {3}tasks #2 /m);
    expect(rep.tasks.map((t) => t.set)).toEqual(["tasks", "tasks", "post_book"]);
    expect((parseYaml(readFileSync(report, "utf8")) as PlaybookReport).report.success).toBe(false);
  });

  it("an input named version is the book's flag, not chorus's --version", async () => {
    const ver = join(dir, "ver.yaml");
    writeFileSync(
      ver,
      [
        'metadata: { name: ver, version: "1.0.0" }',
        "inputs:",
        "  version: { type: string, required: true }",
        "nodes:",
        "  one: { type: list, nodes: [n1.example.net] }",
        "tasks:",
        '  - shell: { command: "echo deploying {{{ inputs.version }}}" }',
        "",
      ].join("\n"),
    );
    for (const args of [
      [ver, "--version", "1.2"],
      ["--version", "1.2", ver],
    ]) {
      const r = await chorusAsync(["playbook", "run", ...args, "--json"], env);
      expect(r.status).toBe(0);
      const rep = JSON.parse(r.stdout) as PlaybookReport;
      expect(rep.inputs.static).toEqual({ version: "1.2" });
      expect(rep.tasks[0]?.msg).toBe("Successfully ran command echo deploying 1.2");
    }
  });

  it("bad inputs are usage errors: unknown flag, failed validation, missing required", async () => {
    const unknown = await chorusAsync(["playbook", "run", book(), "--release", "v1.0.0", "--nope", "x"], env);
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toBe(
      "chorus playbook run: unknown option --nope (the playbook's inputs: --release, --batch, --fail, --pause)\n",
    );
    const invalid = await chorusAsync(["playbook", "run", book(), "--release", "1.0"], env);
    expect(invalid.status).toBe(1);
    expect(invalid.stderr).toMatch(/^chorus playbook run: input release: .*1\.0.* does not pass validation/);
    const missing = await chorusAsync(["playbook", "run", book()], env);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/input release is required: give --release/);
  });

  it("a lock held by another run: the book does not start, exit 1 naming the holder", async () => {
    const client = await Client.fromConfigFile(fleet.setup.clientConfig, { logger: quiet });
    try {
      const pb = JSON.parse((await chorusAsync(["playbook", "show", book(), "--json"])).stdout) as Playbook;
      const nc = await client.connect();
      const release = await takeLocks(pb, await openDataStores(pb.data_stores, { nc }), {
        nc,
        owner: "other-run",
      });
      const r = await chorusAsync(["playbook", "run", book(), "--release", "v1.0.0"], env);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/^chorus playbook run: lock state is held by other-run on \S+ \(pid \d+\)/);
      expect(r.stdout).not.toMatch(/^start/m);
      // --lock-wait: waits, and goes once the other run lets go
      const waiting = chorusAsync(
        ["playbook", "run", book(), "--release", "v1.0.0", "--lock-wait", "20"],
        env,
      );
      setTimeout(() => void release(), 1500);
      const w = await waiting;
      expect(w.status).toBe(0);
      expect(w.stdout.split("\n").slice(0, 2)).toEqual([
        "lock     state: held by another run, waiting",
        "lock     state: held",
      ]);
    } finally {
      await client.close();
    }
  });

  it("^C stops the book, still writes the report and gives the lock back (exit 130)", async () => {
    const report = join(dir, "interrupted.yaml");
    const pb = JSON.parse((await chorusAsync(["playbook", "show", book(), "--json"])).stdout) as Playbook;
    const client = await Client.fromConfigFile(fleet.setup.clientConfig, { logger: quiet });
    let sent = false;
    // while the book runs, another run is refused, told the CLI's caller id holds the lock
    let probe: Promise<string> | undefined;
    const r = await chorusAsync(
      ["playbook", "run", book(), "--release", "v9.9.9", "--pause", "20", "--report", report],
      env,
      30_000,
      "",
      (out, child) => {
        if (!probe && out.includes("start    tasks #2")) {
          probe = (async () => {
            try {
              const nc = await client.connect();
              await takeLocks(pb, await openDataStores(pb.data_stores, { nc }), { nc, owner: "probe" });
              return "taken";
            } catch (err) {
              return (err as Error).message;
            } finally {
              sent = true;
              child.kill("SIGINT");
            }
          })();
        }
      },
    );
    await client.close();
    expect(sent).toBe(true);
    expect(await probe).toMatch(
      new RegExp(`^lock state is held by ${client.callerId} on \\S+ \\(pid \\d+\\)`),
    );
    expect(r.status).toBe(130);
    expect(r.stderr).toContain(
      `chorus playbook run: interrupted (^C): the book stopped; the report is in ${report}`,
    );
    expect(existsSync(report)).toBe(true);
    const rep = parseYaml(readFileSync(report, "utf8")) as PlaybookReport;
    expect(rep.report.success).toBe(false);
    expect(r.stdout).toContain("lock     state: released");
  });
});
