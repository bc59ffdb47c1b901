import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { Client } from "../../../src/client/index.js";
import { closeNats, connectNats, type NatsConnection } from "../../../src/core/connector/index.js";
import { createBucket } from "../../../src/services/streams/index.js";
import {
  PlaybookError,
  openDataStore,
  openDataStores,
  renderReportYaml,
  runPlaybook,
  takeLocks,
  type Playbook,
  type PlaybookEvent,
  type Task,
} from "../../../src/services/playbooks/index.js";
import { COLLECTIVE, makeTrust, type TestTrust } from "../../client/fleet.js";
import { startNats, type TestNats } from "../../helpers/nats.js";
import { testBook } from "./helpers.js";

let trust: TestTrust;
let nats: TestNats;
let nc: NatsConnection;
let client: Client;
let dir: string;
const jsStore = mkdtempSync(join(tmpdir(), "chorus-pb-runner-js-"));

beforeAll(async () => {
  trust = makeTrust();
  nats = await startNats(`jetstream { store_dir: "${jsStore}" }`);
  nc = await connectNats({ servers: [nats.url], name: "playbook-runner-test", reconnect: false });
  await createBucket(nc, "PB_RUNNER");
  // list node sets and shell tasks: the client never has to reach a node
  client = new Client({
    security: trust.clientSecurity,
    servers: [nats.url],
    collective: COLLECTIVE,
    connection: nc,
  });
  dir = mkdtempSync(join(tmpdir(), "chorus-pb-runner-"));
});
afterAll(async () => {
  await client?.close();
  if (nc) await closeNats(nc);
  await nats?.stop();
  trust?.cleanup();
  rmSync(dir, { recursive: true, force: true });
  rmSync(jsStore, { recursive: true, force: true });
});

function book(over: Partial<Playbook>): Playbook {
  return testBook("runner", join(dir, "book.yaml"), {
    metadata: { name: "runner", version: "2.1.0" },
    ...over,
  });
}

const sh = (command: string, extra: Partial<Task> = {}): Task =>
  ({ type: "shell", command, ...extra }) as Task;

describe("templates and inputs", () => {
  it("renders inputs, node sets and previous_task right before each task", async () => {
    const out = join(dir, "templated.txt");
    const r = await runPlaybook(
      book({
        inputs: { who: { type: "string", required: true }, count: { type: "integer", default: 2 } },
        nodes: { web: { type: "list", nodes: ["{{{ inputs.who }}}.example", "b.example"] } },
        tasks: [
          sh("echo first", { description: "say {{{ inputs.who }}}" }),
          sh(
            `echo "{{{ previous_task.description }}}|{{{ previous_task.success }}}|{{{ inputs.count }}}" > ${out}`,
            {
              nodes: "{{{ nodes.web }}}",
            },
          ),
        ],
      }),
      { client, inputs: { who: "alpha" } },
    );
    expect(r.report.fail_message).toBeUndefined();
    expect(r.nodes.web).toEqual(["alpha.example", "b.example"]);
    expect(readFileSync(out, "utf8")).toBe("say alpha|true|2 --nodes alpha.example,b.example\n");
    expect(r.tasks[0]?.description).toBe("say alpha");
    expect(r.inputs).toEqual({ static: { who: "alpha", count: 2 }, dynamic: [] });
  });

  it("bad inputs throw PlaybookError(bad_input) before anything runs", async () => {
    const marker = join(dir, "never");
    const pb = book({ inputs: { n: { type: "integer", required: true } }, tasks: [sh(`touch ${marker}`)] });
    await expect(runPlaybook(pb, { client, inputs: { n: "many" } })).rejects.toMatchObject({
      code: "bad_input",
    });
    await expect(runPlaybook(pb, { client })).rejects.toBeInstanceOf(PlaybookError);
    await expect(runPlaybook(pb, { client, inputs: { n: "1", other: "x" } })).rejects.toMatchObject({
      code: "bad_input",
    });
    expect(existsSync(marker)).toBe(false);
  });

  it("dynamic inputs are read from their store at each reference (data tasks write them)", async () => {
    const out = join(dir, "dynamic.txt");
    const r = await runPlaybook(
      book({
        data_stores: { mem: { type: "memory" } },
        inputs: { phase: { type: "string", data: "mem/phase", dynamic: true } },
        tasks: [
          { type: "data", action: "write", key: "mem/phase", value: "one" },
          sh(`echo {{{ inputs.phase }}} >> ${out}`),
          { type: "data", action: "write", key: "mem/phase", value: "two" },
          sh(`echo {{{ inputs.phase }}} >> ${out}`),
        ],
      }),
      { client },
    );
    expect(r.report.fail_message).toBeUndefined();
    expect(readFileSync(out, "utf8")).toBe("one\ntwo\n");
    expect(r.inputs.dynamic).toEqual(["phase"]);
  });

  it("a template that does not render fails its task, not the run", async () => {
    const r = await runPlaybook(book({ tasks: [sh("echo {{{ inputs.nope }}}")], on_fail: [sh("true")] }), {
      client,
    });
    expect(r.report.success).toBe(false);
    expect(r.tasks[0]).toMatchObject({ ran: false, success: false });
    expect(r.tasks[0]?.msg).toContain("cannot render the task");
    expect(r.tasks[1]?.set).toBe("on_fail");
  });
});

describe("noop", () => {
  it("resolves node sets and renders every task, runs none and takes no lock", async () => {
    const marker = join(dir, "noop-ran");
    const events: PlaybookEvent[] = [];
    const mem = await openDataStore("mem", { type: "memory" });
    const r = await runPlaybook(
      book({
        inputs: { v: { type: "string", data: "mem/v", save: true } },
        data_stores: { mem: { type: "memory" } },
        // a memory store cannot lock: taking this lock would throw
        locks: ["mem"],
        nodes: { l: { type: "list", nodes: ["n1", "n2"] } },
        pre_book: [sh(`touch ${marker}`)],
        tasks: [
          {
            type: "rpc",
            nodes: "{{{ nodes.l }}}",
            action: "rpcutil.ping",
            description: "ping {{{ inputs.v }}}",
          },
          sh(`touch ${marker}`, { pre_task: [sh(`touch ${marker}`)] }),
        ],
        on_fail: [sh(`touch ${marker}`)],
        post_book: [{ type: "webhook", uri: "http://127.0.0.1:1/{{{ inputs.v }}}" }],
      }),
      { client, noop: true, inputs: { v: "x1" }, onEvent: (e) => events.push(e), stores: { mem } },
    );
    expect(existsSync(marker)).toBe(false);
    // save: true did not write in noop
    expect(await mem.read("v")).toBeUndefined();
    expect(r.report.success).toBe(true);
    expect(r.nodes).toEqual({ l: ["n1", "n2"] });
    expect(r.tasks.map((t) => [t.set, t.ran])).toEqual([
      ["pre_book", false],
      ["tasks", false],
      ["pre_task", false],
      ["tasks", false],
      ["on_fail", false],
      ["post_book", false],
    ]);
    expect(r.tasks[1]?.description).toBe("ping x1");
    expect(r.tasks[1]?.msg).toBe("would run: rpc rpcutil.ping on 2 node(s) [n1, n2] with {}");
    expect(r.tasks[5]?.msg).toBe("would run: webhook POST http://127.0.0.1:1/x1");
    expect(events.some((e) => e.kind === "lock")).toBe(false);
    expect(events.find((e) => e.kind === "nodes")).toEqual({ kind: "nodes", set: "l", nodes: ["n1", "n2"] });
  });
});

describe("report", () => {
  it("has Choria's fields, per-type metrics, logs, and renders as YAML", async () => {
    const r = await runPlaybook(
      book({
        metadata: { name: "runner", version: "2.1.0", on_fail: "call the on-call of {{{ nodes.l }}}" },
        nodes: { l: { type: "list", nodes: ["n1"] } },
        tasks: [sh("echo hi"), sh("exit 2", { description: "breaks" })],
        on_fail: [{ type: "data", action: "write", key: "mem/x", value: 1 }],
        data_stores: { mem: { type: "memory" } },
      }),
      { client },
    );
    expect(r.report.version).toBe(1);
    expect(Number.isNaN(Date.parse(r.report.timestamp))).toBe(false);
    expect(r.report.success).toBe(false);
    expect(r.report.fail_message).toBe(
      "call the on-call of n1 (tasks task 2 (breaks): Command failed with code 2: exit 2)",
    );
    expect(r.playbook).toEqual({ name: "runner", version: "2.1.0" });
    expect(r.nodes).toEqual({ l: ["n1"] });
    expect(r.metrics.task_count).toBe(3);
    expect(r.metrics.task_types).toEqual({
      shell: { count: 2, total_time: expect.any(Number), pass: 1, fail: 1 },
      data: { count: 1, total_time: expect.any(Number), pass: 1, fail: 0 },
    });
    expect(r.metrics.run_time).toBeGreaterThan(0);
    const t = r.tasks[1];
    expect(t).toMatchObject({
      type: "shell",
      set: "tasks",
      description: "breaks",
      ran: true,
      success: false,
    });
    expect(Date.parse(t?.end_time ?? "") >= Date.parse(t?.start_time ?? "")).toBe(true);
    expect(r.logs.some((l) => l.from === "tasks[0]" && l.msg === "hi" && l.level === "info")).toBe(true);
    expect(r.logs.at(-1)?.msg).toContain("playbook runner failed");
    const back = parse(renderReportYaml(r)) as unknown;
    expect(back).toEqual(JSON.parse(JSON.stringify(r)));
    expect(renderReportYaml(r)).toMatch(/^report:\n {2}version: 1\n/);
  });

  it("loglevel keeps lower entries out of the report", async () => {
    const r = await runPlaybook(
      book({ metadata: { name: "q", version: "1", loglevel: "warn" }, tasks: [sh("echo quiet")] }),
      { client },
    );
    expect(r.logs.every((l) => l.level === "warn" || l.level === "error")).toBe(true);
  });

  it("an aborted signal stops the run before the next task", async () => {
    const ac = new AbortController();
    const marker = join(dir, "after-abort");
    const r = await runPlaybook(
      book({ tasks: [{ ...sh("true"), description: "first" }, sh(`touch ${marker}`)] }),
      {
        client,
        signal: ac.signal,
        onEvent: (e) => {
          if (e.kind === "task_end") ac.abort();
        },
      },
    );
    expect(existsSync(marker)).toBe(false);
    expect(r.report.success).toBe(false);
    expect(r.tasks[1]?.msg).toBe("interrupted");
  });
});

describe("locks", () => {
  const locked = (over: Partial<Playbook> = {}) =>
    book({
      metadata: { name: "deploy", version: "1" },
      data_stores: { kv: { type: "kv", bucket: "PB_RUNNER" } },
      locks: ["kv"],
      tasks: [sh(`touch ${join(dir, "locked-ran")}`)],
      ...over,
    });

  it("a lock held by another run aborts without a report; once free, the run takes and releases it", async () => {
    const other = locked();
    const stores = await openDataStores(other.data_stores, { nc });
    const release = await takeLocks(other, stores, { nc, owner: "someone-else" });
    try {
      const err = await runPlaybook(locked(), { client, nc }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PlaybookError);
      expect((err as PlaybookError).code).toBe("locked");
      expect((err as PlaybookError).message).toContain("someone-else");
      expect(existsSync(join(dir, "locked-ran"))).toBe(false);
    } finally {
      await release();
    }
    const events: PlaybookEvent[] = [];
    const r = await runPlaybook(locked(), { client, nc, onEvent: (e) => events.push(e) });
    expect(r.report.success).toBe(true);
    expect(existsSync(join(dir, "locked-ran"))).toBe(true);
    const lockEvents = events.filter((e) => e.kind === "lock").map((e) => (e.kind === "lock" ? e.state : ""));
    expect(lockEvents).toEqual(["held", "released"]);
    // held before the first task started, released after the end
    const kinds = events.filter((e) => e.kind !== "log").map((e) => e.kind);
    expect(kinds.indexOf("lock")).toBeLessThan(kinds.indexOf("task_start"));
    expect(kinds.lastIndexOf("lock")).toBeGreaterThan(kinds.indexOf("end"));
  });
});
