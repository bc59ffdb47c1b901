import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Emulator, emulatedIdentity } from "../../../src/apps/emulator/index.js";
import { Client } from "../../../src/client/index.js";
import {
  runPlaybook,
  type Playbook,
  type PlaybookEvent,
  type Task,
} from "../../../src/services/playbooks/index.js";
import { startSecureFleet, type SecureFleet } from "../../helpers/fleet.js";

const quiet = pino({ level: "silent" });
const N = 3;
/** each node's live facts: the nodes keep the object, so changing it changes what get_fact answers */
const facts = new Map<number, Record<string, unknown>>();

let fleet: SecureFleet;
let emulator: Emulator;
let client: Client;

beforeAll(async () => {
  fleet = await startSecureFleet();
  emulator = Emulator.fromConfigFile(fleet.setup.emulatorConfig, {
    nodes: N,
    logger: quiet,
    jobs: false,
    facts: (i) => {
      const f = { role: "app", status: "starting" };
      facts.set(i, f);
      return f;
    },
  });
  await emulator.start();
  client = await Client.fromConfigFile(fleet.setup.clientConfig, { logger: quiet, discoveryTimeoutMs: 800 });
}, 60_000);
afterAll(async () => {
  await client?.close();
  await emulator?.stop();
  await fleet?.stop();
});

function book(tasks: Task[]): Playbook {
  return {
    metadata: { name: "assert", version: "1.0.0" },
    uses: {},
    inputs: {},
    nodes: { apps: { type: "discovery", facts: ["role=app"] } },
    data_stores: {},
    locks: [],
    pre_book: [],
    tasks,
    on_success: [],
    on_fail: [],
    post_book: [],
    source: "/tmp/assert.yaml",
  };
}

const waitReady = (tries: number): Extract<Task, { type: "rpc" }> => ({
  type: "rpc",
  description: "wait for ready",
  nodes: "apps",
  action: "rpcutil.get_fact",
  properties: { fact: "status" },
  assert: 'data.value == "ready"',
  tries,
  try_sleep: "300ms",
});

describe("rpc assert with tries", () => {
  it("waits for a state: fails while the nodes are starting, passes once they all say ready", async () => {
    for (const f of facts.values()) f.status = "starting";
    // one node turns ready at once, the others later: the assert must hold on every reply
    (facts.get(1) as Record<string, unknown>).status = "ready";
    // the rest turn ready a while after the first try has failed
    let flip: NodeJS.Timeout | undefined;
    const events: PlaybookEvent[] = [];
    const onEvent = (e: PlaybookEvent) => {
      events.push(e);
      if (e.kind === "task_end" || (e.kind === "log" && e.entry.msg.includes("failed on try 1/"))) {
        flip ??= setTimeout(() => {
          for (const f of facts.values()) f.status = "ready";
        }, 500);
      }
    };
    try {
      const r = await runPlaybook(book([waitReady(20)]), { client, onEvent });
      expect(r.report.fail_message).toBeUndefined();
      expect(r.report.success).toBe(true);
      const attempts = events.filter((e) => e.kind === "task_start").length;
      // it failed at least once before the flip and stopped trying once it passed
      expect(attempts).toBeGreaterThanOrEqual(3);
      expect(attempts).toBeLessThan(20);
      const failedTry = r.logs.find((l) => l.msg.includes("failed on try 1/20"));
      expect(failedTry?.msg).toContain('assert data.value == "ready" failed on 2');
      expect(failedTry?.msg).not.toContain(emulatedIdentity(1));
      const task = r.tasks[0];
      expect(task).toMatchObject({ type: "rpc", set: "tasks", success: true, ran: true });
      // data: each node's reply
      const data = task?.data as { sender: string; data: { value: unknown } }[];
      expect(data.map((d) => d.sender).sort()).toEqual([1, 2, 3].map(emulatedIdentity));
      expect(data.every((d) => d.data.value === "ready")).toBe(true);
      // progress events counted the replies
      expect(events.some((e) => e.kind === "task_progress" && e.done === 3 && e.total === 3)).toBe(true);
    } finally {
      clearTimeout(flip);
    }
  });

  it("fails after its tries when the state never comes", async () => {
    for (const f of facts.values()) f.status = "starting";
    const r = await runPlaybook(book([waitReady(2)]), { client });
    expect(r.report.success).toBe(false);
    expect(r.report.fail_message).toContain('assert data.value == "ready" failed on 3');
    expect(r.tasks).toHaveLength(1);
  });

  it("a bad assert expression fails the task before anything is sent", async () => {
    const r = await runPlaybook(book([{ ...waitReady(1), assert: "data.value ==" }]), { client });
    expect(r.report.success).toBe(false);
    expect(r.tasks[0]?.msg).toMatch(/rpc task failed: .*column/);
  });

  it("post: [summarize] logs counts of the reply values; batch_size sends in batches", async () => {
    for (const [i, f] of facts) f.status = i === 1 ? "ready" : "starting";
    const r = await runPlaybook(
      book([
        {
          type: "rpc",
          nodes: "apps",
          action: "rpcutil.get_fact",
          properties: { fact: "status" },
          post: ["summarize"],
          batch_size: 1,
          batch_sleep_time: "10ms",
        },
      ]),
      { client },
    );
    expect(r.report.success).toBe(true);
    const lines = r.logs.map((l) => l.msg);
    expect(lines).toContain("summary: 3 ok, 0 failed");
    expect(lines).toContain("summary value: starting=2, ready=1");
  });

  it("an action the DDL does not have fails the task before anything is sent", async () => {
    const r = await runPlaybook(
      book([{ type: "rpc", nodes: "apps", action: "rpcutil.no_such_action", properties: {} }]),
      { client },
    );
    expect(r.report.success).toBe(false);
    expect(r.tasks[0]?.msg).toMatch(/rpc task failed: .*no_such_action/);
  });
});
