import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  parseWorkflow,
  runExecution,
  workflowId,
  WorkflowError,
  type ExecutionStatus,
} from "../../../src/services/jobs/index.js";
import { alive, memorySink, prepare, tempDir, zombieChildren } from "./helpers.js";

const root = tempDir();
afterAll(() => rmSync(root, { recursive: true, force: true }));

const ms = (iso: string | undefined) => Date.parse(iso as string);

function problem(w: unknown): string {
  try {
    parseWorkflow(w);
  } catch (err) {
    expect(err).toBeInstanceOf(WorkflowError);
    expect((err as WorkflowError).code).toBe("invalid");
    return (err as Error).message;
  }
  throw new Error("the workflow was accepted");
}

const step = (name: string, more: Record<string, unknown> = {}) => ({ name, run: "true", ...more });

describe("workflow validation", () => {
  it("rejects bad workflows naming the step and the field", () => {
    const cases: [unknown, RegExp][] = [
      [
        { name: "w", steps: [step("a", { needs: ["b"] }), step("b", { needs: ["a"] })] },
        /steps\[0\] "a"\.needs: dependency cycle a -> b -> a/,
      ],
      [{ name: "w", steps: [step("a", { needs: ["a"] })] }, /steps\[0\] "a"\.needs: dependency cycle a -> a/],
      [
        { name: "w", steps: [step("a"), step("b", { needs: ["nope"] })] },
        /steps\[1\] "b"\.needs: unknown step "nope"/,
      ],
      [
        { name: "w", steps: [step("a"), step("a")] },
        /steps\[1\] "a"\.name: duplicate step name \(also steps\[0\]\)/,
      ],
      [
        { name: "w", steps: [step("a", { agent: { agent: "rpcutil", action: "ping" } })] },
        /steps\[0\] "a"\.agent: run and agent are mutually exclusive/,
      ],
      [{ name: "w", steps: [{ name: "lazy" }] }, /steps\[0\] "lazy"\.run: a step needs either run or agent/],
      [
        { name: "w", steps: [step("a"), step("deploy", { timeout: "soon" })] },
        /steps\[1\] "deploy"\.timeout: must be a duration like 30s/,
      ],
      [
        { name: "w", steps: [step("a", { retry_delay: "30" })] },
        /steps\[0\] "a"\.retry_delay: must be a duration/,
      ],
      [
        { name: "w", timeout: "2 weeks", steps: [step("a")] },
        /^invalid workflow: timeout: must be a duration/,
      ],
      [{ name: "w", steps: [step("a", { retries: 11 })] }, /steps\[0\] "a"\.retries: must be <= 10/],
      [{ name: "w", steps: [step("a", { retries: 1.5 })] }, /steps\[0\] "a"\.retries: must be integer/],
      [
        { name: "w", steps: [step("a", { on_failure: "panic" })] },
        /steps\[0\] "a"\.on_failure: must be one of abort, continue/,
      ],
      [{ name: "w", steps: [step("a", { rnu: "x" })] }, /steps\[0\] "a"\.rnu: is not a known field/],
      [{ name: "w", steps: [step("a b")] }, /steps\[0\] "a b"\.name: must be letters, digits/],
      [{ name: "W!", steps: [step("a")] }, /name: must be letters/],
      [{ steps: [step("a")] }, /workflow: .*|name: is required/],
      [{ name: "w", steps: [] }, /steps: must NOT have fewer than 1 items/],
      [
        { name: "w", steps: [step("a", { env: { "BAD-KEY": "1" } })] },
        /steps\[0\] "a"\.env: property name must be valid/,
      ],
      [{ name: "w", steps: [step("a", { env: { N: 1 } })] }, /steps\[0\] "a"\.env\.N: must be string/],
      // one problem for a wrong type under anyOf, not one per branch tried
      [
        { name: "w", steps: [{ name: "a", run: true }] },
        /^invalid workflow: steps\[0\] "a"\.run: must be a command \(a string\) or an argv list of strings$/,
      ],
      [{ name: "w", steps: [step("a", { cwd: "relative/dir" })] }, /steps\[0\] "a"\.cwd: must match pattern/],
      [
        { name: "w", steps: [step("a", { description: "x".repeat(70_000) })] },
        /is \d+ bytes as JSON, the limit is 65536/,
      ],
      [
        `name: w\nsteps:\n  - name: a\n    run: "${"x".repeat(70_000)}"\n`,
        /workflow: is \d+ bytes, the limit is 65536/,
      ],
      [
        { name: "w", steps: Array.from({ length: 101 }, (_, i) => step(`s${i}`)) },
        /steps: must NOT have more than 100 items/,
      ],
      ["name: w\nsteps: [\n", /workflow: not valid YAML or JSON \(line \d+\)/],
      ["just a string", /workflow: must be a mapping/],
    ];
    for (const [w, re] of cases) expect(problem(w), JSON.stringify(w).slice(0, 120)).toMatch(re);
  });

  it("reports every problem at once", () => {
    const e = problem({ name: "w", steps: [step("a", { timeout: "x" }), step("a", { needs: ["zz"] })] });
    expect(e).toMatch(/^invalid workflow \(3 problems\)/);
    expect(e).toContain('steps[0] "a".timeout');
    expect(e).toContain('steps[1] "a".name: duplicate');
    expect(e).toContain('steps[1] "a".needs: unknown step "zz"');
  });

  it("parses YAML and JSON alike into a stable workflow id", () => {
    const yaml = `
name: deploy-app
env: { A: "1" }
timeout: 1h
steps:
  - name: fetch
    run: "echo fetch"
    retries: 2
    retry_delay: 5s
  - name: restart
    needs: [fetch]
    agent: { agent: rpcutil, action: ping, inputs: {} }
    on_failure: continue
`;
    const a = parseWorkflow(yaml);
    expect(a.steps[1]?.agent).toEqual({ agent: "rpcutil", action: "ping", inputs: {} });
    // the same workflow with its keys in another order, as JSON
    const b = parseWorkflow(
      JSON.stringify({
        steps: [
          { retry_delay: "5s", retries: 2, run: "echo fetch", name: "fetch" },
          {
            on_failure: "continue",
            agent: { inputs: {}, action: "ping", agent: "rpcutil" },
            needs: ["fetch"],
            name: "restart",
          },
        ],
        timeout: "1h",
        env: { A: "1" },
        name: "deploy-app",
      }),
    );
    expect(workflowId(a)).toMatch(/^wf_[0-9a-f]{20}$/);
    expect(workflowId(b)).toBe(workflowId(a));
    expect(workflowId(parseWorkflow({ ...a, timeout: "2h" }))).not.toBe(workflowId(a));
  });
});

async function run(w: unknown, o: { maxOutput?: number; signal?: AbortSignal; killGraceMs?: number } = {}) {
  const dir = prepare(root, w, o.maxOutput);
  const sink = memorySink();
  const status = await runExecution(dir, {
    sink,
    ...(o.signal ? { signal: o.signal } : {}),
    ...(o.killGraceMs ? { killGraceMs: o.killGraceMs } : {}),
  });
  const onDisk = JSON.parse(readFileSync(join(dir, "status.json"), "utf8")) as ExecutionStatus;
  expect(onDisk).toEqual(status);
  return { dir, status, events: sink.events };
}

describe("runExecution", () => {
  it("runs independent steps in parallel and dependants after their needs", async () => {
    const { status, events } = await run({
      name: "order",
      steps: [
        step("a", { run: "sleep 0.4" }),
        step("b", { run: ["sh", "-c", "sleep 0.4; echo $CHORUS_STEP $B"], env: { B: "bee" } }),
        step("c", { needs: ["a", "b"], run: "echo c" }),
        step("d", { needs: ["c"], run: "echo d" }),
      ],
    });
    expect(status.state).toBe("succeeded");
    const { a, b, c, d } = status.steps as Record<string, NonNullable<ExecutionStatus["steps"][string]>>;
    // a and b overlap; c starts once both finished, d after c
    expect(ms(b?.started)).toBeLessThan(ms(a?.finished));
    expect(ms(a?.started)).toBeLessThan(ms(b?.finished));
    expect(ms(c?.started)).toBeGreaterThanOrEqual(Math.max(ms(a?.finished), ms(b?.finished)));
    expect(ms(d?.started)).toBeGreaterThanOrEqual(ms(c?.finished));
    expect(b?.output_tail).toBe("b bee\n");
    expect(b?.exit_code).toBe(0);
    expect(events[0]?.event).toBe("execution_started");
    expect(events.at(-1)).toMatchObject({ event: "execution_finished", state: "succeeded" });
    expect(
      events
        .filter((e) => e.event === "finished")
        .map((e) => e.step)
        .slice(-2),
    ).toEqual(["c", "d"]);
  });

  it("retries a failing step and counts the attempts", async () => {
    const { dir, status, events } = await run({
      name: "retry",
      steps: [
        step("always", { run: "echo nope; exit 3", retries: 2, retry_delay: "50ms", on_failure: "continue" }),
        // fails the first time only
        step("flaky", {
          run: "test -f flag || { touch flag; exit 1; }",
          retries: 3,
          retry_delay: "10ms",
          cwd: root,
        }),
      ],
    });
    expect(status.steps.always).toMatchObject({
      state: "failed",
      attempts: 3,
      exit_code: 3,
      error: "exited with code 3",
    });
    expect(status.steps.flaky).toMatchObject({ state: "succeeded", attempts: 2, exit_code: 0 });
    // continue: the failure does not fail the execution
    expect(status.state).toBe("succeeded");
    expect(events.filter((e) => e.step === "always" && e.event === "started").map((e) => e.attempt)).toEqual([
      1, 2, 3,
    ]);
    expect(readFileSync(join(dir, "steps", "always.log"), "utf8")).toMatch(
      /nope\n[\s\S]*attempt 3 of 3[\s\S]*nope\n$/,
    );
  });

  it("kills a step that times out together with its grandchildren", async () => {
    const pidFile = join(root, "grandchild.pid");
    const stubborn = join(root, "stubborn.pid");
    const started = Date.now();
    const { status } = await run(
      {
        name: "slow",
        steps: [
          step("hang", { run: `sleep 30 & echo $! > ${pidFile}; wait`, timeout: "300ms" }),
          // ignores SIGTERM: only the SIGKILL after the grace period ends it
          step("deaf", {
            run: `sh -c 'trap "" TERM; echo $$ > ${stubborn}; sleep 30' & wait`,
            timeout: "300ms",
          }),
        ],
      },
      { killGraceMs: 500 },
    );
    expect(Date.now() - started).toBeLessThan(5000);
    expect(status.state).toBe("failed");
    expect(status.steps.hang).toMatchObject({ state: "failed", error: "timed out after 0.3s" });
    expect(status.steps.hang?.pid).toBeUndefined();
    for (const f of [pidFile, stubborn]) {
      const pid = Number(readFileSync(f, "utf8"));
      expect(pid).toBeGreaterThan(1);
      expect(alive(pid), `${f} ${pid}`).toBe(false);
    }
    expect(zombieChildren()).toEqual([]);
  });

  it("skips the dependants of a failed step (abort) or runs them (continue)", async () => {
    const wf = (on_failure: string) => ({
      name: "fail",
      steps: [
        step("bad", { run: "exit 7", on_failure }),
        step("after", { needs: ["bad"] }),
        step("later", { needs: ["after"] }),
        step("other", { run: "sleep 0.2" }),
      ],
    });
    const abort = (await run(wf("abort"))).status;
    expect(abort.state).toBe("failed");
    expect(abort.error).toBe("failed steps: bad");
    expect(abort.steps.bad).toMatchObject({ state: "failed", exit_code: 7 });
    expect(abort.steps.after).toMatchObject({
      state: "skipped",
      error: "needs bad, which failed",
      attempts: 0,
    });
    expect(abort.steps.later).toMatchObject({ state: "skipped", error: "needs after, which did not run" });
    expect(abort.steps.other?.state).toBe("succeeded");

    const cont = (await run(wf("continue"))).status;
    expect(cont.state).toBe("succeeded");
    expect(cont.steps.after?.state).toBe("succeeded");
    expect(cont.steps.later?.state).toBe("succeeded");
  });

  it("caps a step's log with one marker and keeps the tail in the status", async () => {
    const { dir, status, events } = await run(
      {
        name: "chatty",
        steps: [step("spew", { run: "head -c 200000 /dev/zero | tr '\\0' x; echo; echo THE-END >&2" })],
      },
      { maxOutput: 10_000 },
    );
    expect(status.state).toBe("succeeded");
    const log = readFileSync(join(dir, "steps", "spew.log"), "utf8");
    expect(log.startsWith("x".repeat(10_000))).toBe(true);
    expect(log.match(/output truncated at 10000 bytes/g)).toHaveLength(1);
    expect(log.length).toBeLessThan(10_200);
    expect(log).not.toContain("THE-END");
    expect(status.steps.spew?.output_tail).toMatch(/x+\nTHE-END\n$/);
    expect(status.steps.spew?.output_tail.length).toBe(4096);
    // output events are capped too
    const sent = events.filter((e) => e.event === "output").reduce((n, e) => n + (e.output?.length ?? 0), 0);
    expect(sent).toBeGreaterThan(0);
    expect(sent).toBeLessThanOrEqual(256 * 1024);
  });

  it("stops on abort: steps killed, the rest skipped, state stopped", async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 300);
    const { status, events } = await run(
      { name: "stoppable", steps: [step("long", { run: "sleep 30" }), step("next", { needs: ["long"] })] },
      { signal: ac.signal },
    );
    expect(status.state).toBe("stopped");
    expect(status.steps.long).toMatchObject({ state: "stopped", error: "the execution was stopped" });
    expect(status.steps.next?.state).toBe("skipped");
    expect(events.at(-1)).toMatchObject({ event: "execution_finished", state: "stopped" });
  });

  it("fails agent steps without an invoker and times the whole execution out", async () => {
    const { status } = await run({
      name: "limits",
      timeout: "400ms",
      steps: [
        step("call", { run: undefined, agent: { agent: "rpcutil", action: "ping" }, on_failure: "continue" }),
        step("long", { run: "sleep 30" }),
        step("never", { needs: ["long"] }),
      ],
    });
    expect(status.steps.call).toMatchObject({ state: "failed", error: "agent steps need a node to run on" });
    expect(status.state).toBe("failed");
    expect(status.error).toBe("the execution timed out after 0.4s");
    expect(status.steps.long).toMatchObject({ state: "failed", error: "the execution timed out" });
    expect(status.steps.never?.state).toBe("skipped");
  });

  it("runs agent steps through the invoker", async () => {
    const dir = prepare(root, {
      name: "agents",
      steps: [
        { name: "ok", agent: { agent: "rpcutil", action: "ping", inputs: { x: 1 } } },
        { name: "bad", agent: { agent: "rpcutil", action: "boom" }, needs: ["ok"] },
      ],
    });
    const calls: unknown[] = [];
    const status = await runExecution(dir, {
      sink: memorySink(),
      invoker: {
        call: (agent, action, inputs) => {
          calls.push([agent, action, inputs]);
          return Promise.resolve(
            action === "ping"
              ? { statuscode: 0, statusmsg: "OK", data: { pong: 1 } }
              : { statuscode: 5, statusmsg: "kaput", data: {} },
          );
        },
      },
    });
    expect(calls).toEqual([
      ["rpcutil", "ping", { x: 1 }],
      ["rpcutil", "boom", {}],
    ]);
    expect(status.steps.ok).toMatchObject({ state: "succeeded", exit_code: 0 });
    expect(status.steps.ok?.output_tail).toContain('"pong":1');
    expect(status.steps.bad).toMatchObject({ state: "failed", exit_code: 5, error: "rpcutil#boom: kaput" });
  });

  it("refuses directories that are not executions and executions that already ended", async () => {
    await expect(runExecution(join(root, ".."), { sink: memorySink() })).rejects.toMatchObject({
      code: "invalid",
    });
    const { dir } = await run({ name: "once", steps: [step("a")] });
    await expect(runExecution(dir, { sink: memorySink() })).rejects.toMatchObject({ code: "state" });
  });
});
