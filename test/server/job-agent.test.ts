// The job agent's handlers, its config keys and the in-process agent invoker, on a
// real NodeRuntime and real Jobs (executions run in this process); the broker and
// the manager processes are in test/e2e/jobs.test.ts.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/core/config/index.js";
import { builtinDDL, validateInputs } from "../../src/core/ddl/index.js";
import { StatusCode } from "../../src/core/protocol/index.js";
import { Jobs, nullSink } from "../../src/services/jobs/index.js";
import {
  ActionReply,
  AgentRegistry,
  JobAgent,
  NodeRuntime,
  jobManagerCommand,
  jobsSettings,
  localInvoker,
  registerBuiltinAgents,
  registerJobAgent,
  type ActionRequest,
} from "../../src/server/index.js";

const top = mkdtempSync(join(tmpdir(), "chorus-job-agent-"));
afterAll(() => rmSync(top, { recursive: true, force: true }));

const registry = new AgentRegistry();
registerBuiltinAgents(registry);
const node = new NodeRuntime({
  identity: "n1.example.net",
  collectives: ["choria"],
  registry,
  credential: { token: "", sign: () => new Uint8Array(0) },
});
const jobs = new Jobs({
  dir: join(top, "jobs"),
  identity: node.identity,
  inline: { sink: nullSink, invoker: localInvoker(node, "up=tester") },
});
const agent: JobAgent = registerJobAgent(registry, { host: () => jobs, events: false });
const handlers = agent.handlers();

async function call(action: string, data: Record<string, unknown>): Promise<ActionReply> {
  const reply = new ActionReply();
  const req = {
    agent: "job",
    action,
    data,
    caller: "up=tester",
    requestId: "req1",
    node,
  } as unknown as ActionRequest;
  const out = await handlers[action]!(req, reply);
  if (out) Object.assign(reply.data, out);
  return reply;
}

async function until(what: string, fn: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe("the job DDL", () => {
  const ddl = builtinDDL("job");
  it("declares the four actions and refuses an oversized workflow and path-like ids", () => {
    expect(ddl.actions.map((a) => a.action).sort()).toEqual([
      "query_workflow",
      "run_workflow",
      "running_workflows",
      "stop_workflow",
    ]);
    expect(validateInputs(ddl, "run_workflow", { workflow: "x".repeat(65_537) })).toEqual([
      { input: "workflow", reason: "is longer than the maximum of 65536 characters" },
    ]);
    expect(validateInputs(ddl, "run_workflow", { workflow: "x".repeat(65_536) })).toEqual([]);
    expect(validateInputs(ddl, "query_workflow", { id: "../../etc" })[0]?.input).toBe("id");
    expect(validateInputs(ddl, "stop_workflow", {})[0]?.reason).toBe("is required");
  });
});

describe("job agent handlers", () => {
  it("starts a workflow, answers with both ids at once, records caller and request id", async () => {
    const r = await call("run_workflow", {
      workflow:
        "name: two\nsteps:\n  - name: a\n    run: echo hi\n  - name: b\n    needs: [a]\n    agent: { agent: rpcutil, action: ping }\n",
    });
    expect(r.statuscode).toBe(StatusCode.OK);
    // no spool on this node: the reply says events go nowhere
    expect(r.statusmsg).toMatch(/no submission spool.*not published/);
    const { execution_id, workflow_id } = r.data as { execution_id: string; workflow_id: string };
    expect(execution_id).toMatch(/^[0-9A-Za-z]{27}$/);
    expect(workflow_id).toMatch(/^wf_[0-9a-f]{20}$/);
    await until("the execution to end", () => jobs.query(execution_id)?.state !== "running");
    const q = await call("query_workflow", { id: workflow_id });
    expect(q.statuscode).toBe(0);
    expect(q.data).toMatchObject({
      execution_id,
      workflow_id,
      name: "two",
      state: "succeeded",
      caller: "up=tester",
    });
    const steps = q.data.steps as Record<string, { state: string; output_tail: string }>;
    expect(steps.a).toMatchObject({ state: "succeeded", output_tail: "hi\n" });
    // the agent step ran rpcutil#ping in-process on this node
    expect(steps.b?.state).toBe("succeeded");
    expect(steps.b?.output_tail).toMatch(/"pong":\d+/);
    expect(jobs.query(execution_id)?.request_id).toBe("req1");
  });

  it("refuses a bad workflow naming the step and field, with InvalidData, and counts it", async () => {
    const before = agent.stats.invalid;
    const r = await call("run_workflow", {
      workflow: JSON.stringify({
        name: "bad",
        steps: [
          { name: "a", run: "true" },
          { name: "b", run: "true", timeout: "soon" },
        ],
      }),
    });
    expect(r.statuscode).toBe(StatusCode.InvalidData);
    expect(r.statusmsg).toContain('steps[1] "b".timeout');
    const cyc = await call("run_workflow", {
      workflow:
        "name: cyc\nsteps:\n  - {name: a, run: 'true', needs: [b]}\n  - {name: b, run: 'true', needs: [a]}\n",
    });
    expect(cyc.statuscode).toBe(StatusCode.InvalidData);
    expect(cyc.statusmsg).toMatch(/cycle/);
    const yaml = await call("run_workflow", { workflow: "name: [unclosed" });
    expect(yaml.statuscode).toBe(StatusCode.InvalidData);
    expect(agent.stats.invalid - before).toBe(3);
  });

  it("gives clear errors for malformed and unknown ids, and counts them", async () => {
    const s0 = agent.stats;
    const bad = await call("query_workflow", { id: "abc" });
    expect(bad.statuscode).toBe(StatusCode.InvalidData);
    expect(bad.statusmsg).toBe(
      'invalid id "abc": expected an execution id (27 letters and digits) or a workflow id (wf_ and 20 hex digits)',
    );
    const unknown = await call("query_workflow", { id: "2Abcdefghijklmnopqrstuvwxyz" });
    expect(unknown.statuscode).toBe(StatusCode.Aborted);
    expect(unknown.statusmsg).toBe("no execution 2Abcdefghijklmnopqrstuvwxyz on this node");
    const wf = await call("stop_workflow", { id: "wf_0123456789abcdef0123" });
    expect(wf.statusmsg).toBe("no execution of workflow wf_0123456789abcdef0123 on this node");
    const s1 = agent.stats;
    expect(s1.badIds - s0.badIds).toBe(1);
    expect(s1.unknownIds - s0.unknownIds).toBe(2);
  });

  it("lists running executions and stops one", async () => {
    const r = await call("run_workflow", { workflow: "name: nap\nsteps:\n  - {name: s, run: 'sleep 30'}\n" });
    const id = (r.data as { execution_id: string }).execution_id;
    await until("the step to run", () => jobs.query(id)?.steps.s?.state === "running");
    const running = await call("running_workflows", {});
    expect(running.data.count).toBe(1);
    expect(running.data.executions).toEqual([
      expect.objectContaining({ execution_id: id, name: "nap", caller: "up=tester" }),
    ]);
    const stopped = await call("stop_workflow", { id });
    expect(stopped.statuscode).toBe(0);
    expect(stopped.data).toMatchObject({ execution_id: id, state: "stopped" });
    const again = await call("stop_workflow", { id });
    expect(again.statuscode).toBe(StatusCode.Aborted);
    expect(again.statusmsg).toBe(`execution ${id} is not running (stopped)`);
    expect((await call("running_workflows", {})).data.count).toBe(0);
  });
});

describe("the server's job manager (dist/server/job-manager.js)", () => {
  it("runs a detached execution whose agent steps call the node's built-in agents", async () => {
    // no config file: the node of the execution's meta, with the built-in agents
    const managed = new Jobs({
      dir: join(top, "managed"),
      identity: "m1.example.net",
      managerCommand: jobManagerCommand(),
    });
    const { execution_id } = managed.start(
      {
        name: "managed",
        steps: [
          { name: "cmd", run: "echo $CHORUS_EXECUTION_ID" },
          { name: "info", needs: ["cmd"], agent: { agent: "rpcutil", action: "collective_info" } },
          {
            name: "nope",
            needs: ["cmd"],
            agent: { agent: "puppet", action: "status" },
            on_failure: "continue",
          },
        ],
      },
      { caller: "up=tester" },
    );
    await until("the manager to finish", () => managed.query(execution_id)?.state !== "running", 20_000);
    const st = managed.query(execution_id)!;
    expect(st.manager_pid).not.toBe(process.pid);
    expect(st.steps.cmd).toMatchObject({ state: "succeeded", output_tail: `${execution_id}\n` });
    expect(st.steps.info?.state).toBe("succeeded");
    expect(st.steps.info?.output_tail).toContain('"main_collective":"choria"');
    expect(st.steps.nope).toMatchObject({
      state: "failed",
      error: "puppet#status: unknown agent puppet on m1.example.net",
    });
  });
});

describe("localInvoker", () => {
  const inv = localInvoker(node, "up=tester");
  it("checks inputs with the DDL and runs the handler in-process", async () => {
    expect(await inv.call("rpcutil", "ping", {}, 1000)).toMatchObject({ statuscode: 0, statusmsg: "OK" });
    expect(await inv.call("rpcutil", "get_fact", {}, 1000)).toMatchObject({
      statuscode: StatusCode.MissingData,
      statusmsg: 'input "fact" is required',
    });
    expect(await inv.call("nope", "x", {}, 1000)).toMatchObject({
      statuscode: StatusCode.UnknownAction,
      statusmsg: "unknown agent nope on n1.example.net",
    });
    expect((await inv.call("rpcutil", "nope", {}, 1000)).statuscode).toBe(StatusCode.UnknownAction);
  });
});

describe("plugin.chorus.jobs.* settings", () => {
  const conf = (name: string, body: string) => {
    const f = join(top, name);
    writeFileSync(f, body);
    return loadConfig(f);
  };
  it("are on with a submission spool, beside it, and off without one unless enabled", () => {
    const on = jobsSettings(conf("a.conf", ""), "/var/lib/chorus/spool");
    expect(on?.dir).toBe("/var/lib/chorus/jobs");
    expect(on?.maxOutputBytes).toBeUndefined();
    expect(on?.managerCommand?.slice(1)).toEqual([
      expect.stringMatching(/dist\/server\/job-manager\.js$/),
      "--config",
      join(top, "a.conf"),
    ]);
    expect(jobsSettings(conf("b.conf", ""), undefined)).toBeUndefined();
    expect(jobsSettings(conf("c.conf", "plugin.chorus.jobs.enable = false\n"), "/s/spool")).toBeUndefined();
    const forced = jobsSettings(
      conf(
        "d.conf",
        "plugin.chorus.jobs.enable = true\nplugin.chorus.jobs.dir = wf\nplugin.chorus.jobs.max_output = 64k\n",
      ),
      undefined,
    );
    expect(forced).toMatchObject({ dir: join(top, "wf"), maxOutputBytes: 65_536 });
  });
  it("refuses a max_output that is not a size or is tiny", () => {
    expect(() => jobsSettings(conf("e.conf", "plugin.chorus.jobs.max_output = lots\n"), "/s/spool")).toThrow(
      /plugin.chorus.jobs.max_output: "lots" is not a size/,
    );
    expect(() => jobsSettings(conf("f.conf", "plugin.chorus.jobs.max_output = 10\n"), "/s/spool")).toThrow(
      /at least 1KB/,
    );
  });
});
