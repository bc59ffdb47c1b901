import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CloudEvent } from "cloudevents";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  Jobs,
  managerMain,
  parseWorkflow,
  WorkflowError,
  type ExecutionStatus,
  type JobEvent,
} from "../../../src/services/jobs/index.js";
import { parseMessage } from "../../../src/services/submission/index.js";
import { alive, memorySink, prepare, tempDir, waitFor } from "./helpers.js";

const DIST = fileURLToPath(new URL("../../../dist/services/jobs/index.js", import.meta.url));
const top = tempDir();
const root = join(top, "jobs");
const spoolDir = join(top, "spool");
let jobs: Jobs;

beforeAll(() => {
  if (!existsSync(DIST)) throw new Error(`${DIST} is missing: run npm run build first`);
  jobs = new Jobs({ dir: root, identity: "n1.example.net", collective: "choria", spoolDir });
});
afterAll(() => {
  // nothing of ours may outlive the suite
  for (const s of jobs?.running() ?? [])
    if (s.manager_pid > 1 && alive(s.manager_pid)) process.kill(s.manager_pid, "SIGKILL");
  rmSync(top, { recursive: true, force: true });
});

const done = (id: string, timeoutMs = 15_000) =>
  waitFor(
    `execution ${id} to end`,
    () => {
      const s = jobs.query(id);
      return s && s.state !== "running" ? s : undefined;
    },
    timeoutMs,
  );

/** The spooled messages of one execution, oldest first, decoded down to their CloudEvents. */
function spooled(executionId: string): { subject: string; ce: CloudEvent<JobEvent> }[] {
  const dir = join(spoolDir, "P4");
  return readdirSync(dir)
    .filter((f) => f.endsWith(".msg"))
    .sort()
    .map((f) => parseMessage(readFileSync(join(dir, f))))
    .filter((m) => m.subject.startsWith(`chorus.jobs.${executionId}.`))
    .map((m) => {
      expect(m.reliable).toBe(true);
      const ce = new CloudEvent<JobEvent>(
        JSON.parse(Buffer.from(m.payload, "base64").toString("utf8")) as CloudEvent<JobEvent>,
      );
      return { subject: m.subject, ce };
    });
}

describe("Jobs with manager processes", () => {
  it("keeps running after the process that started it exits, and spools its events", async () => {
    const script = `
      const { Jobs, parseWorkflow } = await import(process.argv[1]);
      const jobs = new Jobs({ dir: process.argv[2], identity: "n1.example.net", spoolDir: process.argv[3] });
      const w = parseWorkflow("name: outlive\\nsteps:\\n  - name: first\\n    run: sleep 1; echo one\\n  - name: second\\n    needs: [first]\\n    run: echo two >&2\\n");
      process.stdout.write(JSON.stringify(jobs.start(w, { caller: "up=alice", requestId: "req1" })));
    `;
    const child = spawn(process.execPath, ["--input-type=module", "-e", script, DIST, root, spoolDir], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.on("data", (b: Buffer) => (out += b.toString()));
    await new Promise((r) => child.once("close", r));
    const exitedAt = Date.now();
    expect(child.exitCode).toBe(0);
    const { execution_id, workflow_id } = JSON.parse(out) as { execution_id: string; workflow_id: string };
    expect(jobs.query(execution_id)?.state).toBe("running");

    const s = await done(execution_id);
    expect(s).toMatchObject({ state: "succeeded", workflow_id, caller: "up=alice", request_id: "req1" });
    expect(Date.parse(s.finished as string)).toBeGreaterThan(exitedAt);
    expect(s.manager_pid).not.toBe(child.pid);
    expect(s.steps.second?.output_tail).toBe("two\n");
    await waitFor("the manager to exit", () => !alive(s.manager_pid));
    // the manager logged JSON lines
    const log = readFileSync(join(root, execution_id, "manager.log"), "utf8")
      .trim()
      .split("\n");
    expect(log.map((l) => (JSON.parse(l) as { msg: string }).msg)).toContain("execution finished");

    const events = spooled(execution_id);
    const kinds = events.map((e) => `${e.ce.data?.event}${e.ce.subject ? `:${e.ce.subject}` : ""}`);
    expect(kinds.filter((k) => !k.startsWith("output"))).toEqual([
      "execution_started",
      "started:first",
      "finished:first",
      "started:second",
      "finished:second",
      "execution_finished",
    ]);
    expect(kinds.indexOf("output:first")).toBeGreaterThan(kinds.indexOf("started:first"));
    expect(kinds.indexOf("output:first")).toBeLessThan(kinds.indexOf("finished:first"));
    for (const { subject, ce } of events) {
      expect(ce.specversion).toBe("1.0");
      expect(ce.source).toBe(`chorus://n1.example.net/jobs/${execution_id}`);
      expect(ce.type).toBe(`io.chorus.jobs.v1.${ce.data?.event}`);
      expect(subject).toBe(`chorus.jobs.${execution_id}.${ce.data?.event}`);
      expect(ce.data?.workflow_id).toBe(workflow_id);
    }
    expect(new Set(events.map((e) => e.ce.id)).size).toBe(events.length);
    expect(events.at(-1)?.ce.data?.state).toBe("succeeded");
  });

  it("stop() ends a running execution: state stopped, no step process left", async () => {
    const gc = join(top, "stop-grandchild.pid");
    const w = parseWorkflow({
      name: "stop-me",
      steps: [
        { name: "long", run: `sleep 30 & echo $! > ${gc}; wait` },
        { name: "next", needs: ["long"], run: "true" },
      ],
    });
    const { execution_id } = jobs.start(w, { caller: "up=bob" });
    const running = await waitFor("the step to run", () => {
      const s = jobs.query(execution_id);
      return s?.steps.long?.pid && existsSync(gc) && readFileSync(gc, "utf8").trim() ? s : undefined;
    });
    expect(jobs.running().map((s) => s.execution_id)).toContain(execution_id);
    const stepPid = running.steps.long?.pid as number;
    const grandchild = Number(readFileSync(gc, "utf8"));

    const s = await jobs.stop(execution_id);
    expect(s.state).toBe("stopped");
    expect(s.steps.long).toMatchObject({ state: "stopped", error: "the execution was stopped" });
    expect(s.steps.next?.state).toBe("skipped");
    for (const pid of [stepPid, grandchild, running.manager_pid]) expect(alive(pid), String(pid)).toBe(false);
    expect(jobs.running().map((r) => r.execution_id)).not.toContain(execution_id);
    await expect(jobs.stop(execution_id)).rejects.toMatchObject({ code: "state" });
    expect(spooled(execution_id).at(-1)?.ce.data).toMatchObject({
      event: "execution_finished",
      state: "stopped",
    });
  });

  it("recover() marks executions whose manager died lost, and leaves live ones", async () => {
    const w = (name: string) => parseWorkflow({ name, steps: [{ name: "long", run: "sleep 30" }] });
    const victim = jobs.start(w("victim"), { caller: "up=carol" }).execution_id;
    const survivor = jobs.start(w("survivor"), { caller: "up=carol" }).execution_id;
    const both = await waitFor("both steps to run", () => {
      const v = jobs.query(victim);
      const s = jobs.query(survivor);
      return v?.steps.long?.pid && s?.steps.long?.pid ? [v, s] : undefined;
    });
    const [v] = both as [ExecutionStatus, ExecutionStatus];
    // an execution whose recorded manager pid now belongs to another process (this one)
    const impostor = prepare(root, w("impostor"));
    const id = impostor.split("/").at(-1) as string;
    writeFileSync(
      join(impostor, "status.json"),
      JSON.stringify({
        execution_id: id,
        workflow_id: "wf_00000000000000000000",
        name: "impostor",
        state: "running",
        started: new Date().toISOString(),
        manager_pid: process.pid,
        caller: "x",
        steps: {},
      }),
    );

    process.kill(v.manager_pid, "SIGKILL");
    await waitFor("the manager to die", () => !alive(v.manager_pid));
    expect(jobs.recover()).toEqual({ running: 1, lost: 2 });
    const lost = jobs.query(victim) as ExecutionStatus;
    expect(lost).toMatchObject({ state: "lost", error: `the manager (pid ${v.manager_pid}) died` });
    expect(lost.steps.long?.state).toBe("stopped");
    // the orphaned step is killed, not left running
    await waitFor("the orphaned step to die", () => !alive(v.steps.long?.pid as number));
    expect(jobs.query(id)?.state).toBe("lost");
    expect(jobs.query(survivor)?.state).toBe("running");
    expect((await jobs.stop(survivor)).state).toBe("stopped");
    expect(jobs.recover()).toEqual({ running: 0, lost: 0 });
  });
});

describe("Jobs queries", () => {
  it("finds a workflow's latest execution by its workflow id", async () => {
    const inline = new Jobs({ dir: join(top, "inline"), identity: "emu1", inline: { sink: memorySink() } });
    const w = parseWorkflow({ name: "twice", steps: [{ name: "a", run: "echo $CHORUS_EXECUTION_ID" }] });
    const first = inline.start(w, { caller: "up=x" });
    await new Promise((r) => setTimeout(r, 20));
    const second = inline.start(w, { caller: "up=x" });
    const other = inline.start(parseWorkflow({ name: "other", steps: [{ name: "a", run: "true" }] }), {
      caller: "up=x",
    });
    expect(second.workflow_id).toBe(first.workflow_id);
    expect(other.workflow_id).not.toBe(first.workflow_id);
    expect(inline.query(first.workflow_id)?.execution_id).toBe(second.execution_id);
    for (const e of [first, second, other])
      await waitFor("inline executions to end", () => inline.query(e.execution_id)?.state === "succeeded");
    expect(inline.query(first.execution_id)?.steps.a?.output_tail).toBe(`${first.execution_id}\n`);
    expect(inline.list().map((s) => s.execution_id)).toEqual([
      other.execution_id,
      second.execution_id,
      first.execution_id,
    ]);
    expect(inline.list(1)).toHaveLength(1);
    expect(inline.running()).toEqual([]);
    expect(inline.query("wf_0123456789abcdef0123")).toBeUndefined();
    expect(inline.query("0".repeat(27))).toBeUndefined();
  });

  it("rejects bad ids without touching anything outside its directory", async () => {
    // a status file just outside the jobs dir that a path-joining lookup would find
    mkdirSync(join(top, "outside"), { recursive: true });
    writeFileSync(join(top, "outside", "status.json"), JSON.stringify({ state: "running", steps: {} }));
    for (const bad of [
      "../outside",
      "..",
      "",
      "a/b",
      "/etc/passwd",
      `${"A".repeat(26)}/`,
      "wf_../../outside",
      "WF_0123456789ABCDEF0123",
    ]) {
      expect(() => jobs.query(bad), bad).toThrow(WorkflowError);
      expect(() => jobs.query(bad)).toThrow(/invalid id .*expected an execution id/);
      await expect(jobs.stop(bad)).rejects.toMatchObject({ code: "invalid" });
    }
    await expect(jobs.stop("0".repeat(27))).rejects.toMatchObject({ code: "not_found" });
    expect(await managerMain([join(top, "outside")], {})).toBe(2);
    expect(await managerMain([], {})).toBe(2);
    expect(readFileSync(join(top, "outside", "status.json"), "utf8")).toContain('"running"');
  });
});
