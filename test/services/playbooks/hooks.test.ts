import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client } from "../../../src/client/index.js";
import {
  runPlaybook,
  type Playbook,
  type PlaybookEvent,
  type Task,
} from "../../../src/services/playbooks/index.js";
import { COLLECTIVE, makeTrust, type TestTrust } from "../../client/fleet.js";
import { testBook } from "./helpers.js";

// Shell tasks only: the client is never asked to connect, so no broker is needed here.
let trust: TestTrust;
let client: Client;
let dir: string;

beforeAll(() => {
  trust = makeTrust();
  client = new Client({
    security: trust.clientSecurity,
    servers: ["nats://127.0.0.1:1"],
    collective: COLLECTIVE,
  });
  dir = mkdtempSync(join(tmpdir(), "chorus-pb-hooks-"));
});
afterAll(async () => {
  await client.close();
  trust.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

let n = 0;
function book(parts: Partial<Playbook>): { pb: Playbook; log: string } {
  const log = join(dir, `order-${++n}.log`);
  return {
    pb: testBook("hooks", join(dir, "book.yaml"), parts),
    log,
  };
}

/** A shell task that appends its name to the order file (via $LOG) and passes or fails. */
const step = (name: string, ok = true, extra: Partial<Task> = {}): Task =>
  ({
    type: "shell",
    command: `echo ${name} >> "$LOG"; ${ok ? "true" : "false"}`,
    environment: { LOG: "" },
    description: name,
    ...extra,
  }) as Task;

async function run(b: { pb: Playbook; log: string }, events?: PlaybookEvent[]) {
  // every task writes to this book's own order file
  const fix = (list: Task[]): Task[] =>
    list.map((t) => ({
      ...t,
      ...(t.type === "shell" && { environment: { ...t.environment, LOG: b.log } }),
      ...(t.pre_task && { pre_task: fix(t.pre_task) }),
      ...(t.post_task && { post_task: fix(t.post_task) }),
    })) as Task[];
  const pb: Playbook = {
    ...b.pb,
    pre_book: fix(b.pb.pre_book),
    tasks: fix(b.pb.tasks),
    on_success: fix(b.pb.on_success),
    on_fail: fix(b.pb.on_fail),
    post_book: fix(b.pb.post_book),
  };
  const report = await runPlaybook(pb, {
    client,
    cwd: dir,
    ...(events && { onEvent: (e) => events.push(e) }),
  });
  const order = existsSync(b.log) ? readFileSync(b.log, "utf8").trim().split("\n") : [];
  return { report, order };
}

const hooks = (over: Partial<Playbook> = {}) =>
  book({
    pre_book: [step("pre_book")],
    on_success: [step("on_success")],
    on_fail: [step("on_fail")],
    post_book: [step("post_book")],
    ...over,
  });

describe("hook ordering (Choria's semantics)", () => {
  it("a passing main list: pre_book, tasks, on_success, post_book", async () => {
    const { report, order } = await run(hooks({ tasks: [step("t1"), step("t2")] }));
    expect(order).toEqual(["pre_book", "t1", "t2", "on_success", "post_book"]);
    expect(report.report.success).toBe(true);
    expect(report.report.fail_message).toBeUndefined();
    expect(report.tasks.map((t) => [t.set, t.description, t.success, t.ran])).toEqual([
      ["pre_book", "pre_book", true, true],
      ["tasks", "t1", true, true],
      ["tasks", "t2", true, true],
      ["on_success", "on_success", true, true],
      ["post_book", "post_book", true, true],
    ]);
  });

  it("a failing main list stops at the failure, then on_fail and post_book run; the book fails", async () => {
    const { report, order } = await run(hooks({ tasks: [step("t1"), step("t2", false), step("t3")] }));
    expect(order).toEqual(["pre_book", "t1", "t2", "on_fail", "post_book"]);
    expect(report.report.success).toBe(false);
    expect(report.report.fail_message).toContain("tasks task 2 (t2)");
    expect(report.report.fail_message).toContain("Command failed with code 1");
  });

  it("on_fail cannot rescue a failed book, even when it passes", async () => {
    const { report } = await run(hooks({ tasks: [step("t1", false)] }));
    expect(report.tasks.find((t) => t.set === "on_fail")?.success).toBe(true);
    expect(report.report.success).toBe(false);
  });

  it("a failing on_success fails the book (post_book still runs)", async () => {
    const { report, order } = await run(
      hooks({ tasks: [step("t1")], on_success: [step("on_success", false)] }),
    );
    expect(order).toEqual(["pre_book", "t1", "on_success", "post_book"]);
    expect(report.report.success).toBe(false);
    expect(report.report.fail_message).toContain("on_success task 1");
  });

  it("a failing post_book fails an otherwise passing book", async () => {
    const { report, order } = await run(
      hooks({ tasks: [step("t1")], post_book: [step("post_book", false)] }),
    );
    expect(order).toEqual(["pre_book", "t1", "on_success", "post_book"]);
    expect(report.report.success).toBe(false);
    expect(report.report.fail_message).toContain("post_book task 1");
  });

  it("a failing pre_book aborts: no tasks, no on_fail, no post_book (as Choria's Tasks#run)", async () => {
    const { report, order } = await run(hooks({ pre_book: [step("pre_book", false)], tasks: [step("t1")] }));
    expect(order).toEqual(["pre_book"]);
    expect(report.report.success).toBe(false);
    expect(report.tasks).toHaveLength(1);
  });

  it("fail_ok lets the list continue; the task is still reported as failed", async () => {
    const { report, order } = await run(
      hooks({ tasks: [step("t1"), step("t2", false, { fail_ok: true }), step("t3")] }),
    );
    expect(order).toEqual(["pre_book", "t1", "t2", "t3", "on_success", "post_book"]);
    expect(report.report.success).toBe(true);
    expect(report.tasks.find((t) => t.description === "t2")?.success).toBe(false);
    expect(report.metrics.task_types.shell).toMatchObject({ count: 6, pass: 5, fail: 1 });
  });

  it("pre_task and post_task run around their own task only", async () => {
    const { report, order } = await run(
      book({
        tasks: [step("t1", true, { pre_task: [step("pre1")], post_task: [step("post1")] }), step("t2")],
      }),
    );
    expect(order).toEqual(["pre1", "t1", "post1", "t2"]);
    expect(report.tasks.map((t) => t.set)).toEqual(["pre_task", "tasks", "post_task", "tasks"]);
  });

  it("a failing pre_task skips its task and fails it; a failing post_task fails its task", async () => {
    const pre = await run(
      book({
        tasks: [step("t1", true, { pre_task: [step("pre1", false)] }), step("t2")],
        on_fail: [step("on_fail")],
      }),
    );
    expect(pre.order).toEqual(["pre1", "on_fail"]);
    const t1 = pre.report.tasks.find((t) => t.description === "t1");
    expect(t1).toMatchObject({ ran: false, success: false });
    expect(t1?.msg).toContain("pre_task");

    const post = await run(
      book({
        tasks: [step("t1", true, { post_task: [step("post1", false)] }), step("t2")],
        on_fail: [step("on_fail")],
      }),
    );
    expect(post.order).toEqual(["t1", "post1", "on_fail"]);
    expect(post.report.report.success).toBe(false);
    expect(post.report.report.fail_message).toContain("post_task");
  });

  it("tries retries a failing task after try_sleep until it passes", async () => {
    const counter = join(dir, "count");
    const flaky: Task = {
      type: "shell",
      description: "flaky",
      // fails on tries 1 and 2, passes on 3
      command: `echo x >> ${counter}; [ "$(wc -l < ${counter})" -ge 3 ]`,
      tries: 5,
      try_sleep: "50ms",
    };
    const events: PlaybookEvent[] = [];
    const t0 = Date.now();
    const { report } = await run(book({ tasks: [flaky] }), events);
    expect(report.report.success).toBe(true);
    expect(readFileSync(counter, "utf8").trim().split("\n")).toHaveLength(3);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(100);
    const starts = events.filter((e) => e.kind === "task_start");
    expect(starts.map((e) => (e.kind === "task_start" ? e.attempt : 0))).toEqual([1, 2, 3]);
    expect(report.logs.some((l) => l.msg.includes("failed on try 2/5"))).toBe(true);
  });

  it("emits task_start/task_end per task and an end event last", async () => {
    const events: PlaybookEvent[] = [];
    await run(hooks({ tasks: [step("t1")] }), events);
    const kinds = events.filter((e) => e.kind !== "log").map((e) => `${e.kind}:${"set" in e ? e.set : ""}`);
    expect(kinds).toEqual([
      "task_start:pre_book",
      "task_end:pre_book",
      "task_start:tasks",
      "task_end:tasks",
      "task_start:on_success",
      "task_end:on_success",
      "task_start:post_book",
      "task_end:post_book",
      "end:",
    ]);
    expect(events.at(-1)).toEqual({ kind: "end", success: true });
  });
});
