// Workflows on a mixed fleet, as a user runs them: 50 emulated nodes and two real
// `chorus server run` processes with submission spools, the job agent called through
// its generated typed client, events read back from the broker's CHORUS_JOBS stream.
import { spawn, type ChildProcess } from "node:child_process";
import { appendFileSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Emulator, emulatedIdentity } from "../../src/apps/emulator/index.js";
import { issueServerCredential } from "../../src/apps/setup/index.js";
import { Client } from "../../src/client/index.js";
import { JobClient } from "../../src/client/generated/index.js";
import type { NatsConnection } from "../../src/core/connector/index.js";
import { InputError, builtinDDL, type AgentDDL } from "../../src/core/ddl/index.js";
import { StatusCode } from "../../src/core/protocol/index.js";
import { loadSeedFile, orgIssuer, type NatsTrust } from "../../src/core/security/index.js";
import type { ExecutionStatus } from "../../src/services/jobs/index.js";
import { JOBS_STREAM } from "../../src/services/streams/index.js";
import { startSecureFleet, type SecureFleet } from "../helpers/fleet.js";
import { freePort } from "../helpers/nats.js";
import { connectAs } from "../services/lifecycle/connect.js";

const BIN = fileURLToPath(new URL("../../bin/chorus.js", import.meta.url));
const quiet = pino({ level: "silent" });
const SERVERS = ["job1.example.net", "job2.example.net"];
const EMULATED = Array.from({ length: 50 }, (_, i) => emulatedIdentity(i + 1));
const ALL = [...SERVERS, ...EMULATED];

let fleet: SecureFleet;
let emulator: Emulator;
let client: Client;
let jobs: JobClient;
let reader: NatsConnection;
let jsm: JetStreamManager;
let statsPort: number;
const procs = new Map<string, ChildProcess>();
const logs = new Map<string, string>();

function startServer(identity: string): ChildProcess {
  const child = spawn(
    process.execPath,
    [BIN, "server", "run", "--config", fleet.setup.serverConfigs[identity]!],
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  const keep = (d: Buffer) => logs.set(identity, (logs.get(identity) ?? "") + d.toString());
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  procs.set(identity, child);
  return child;
}

async function until<T>(
  what: string,
  fn: () => Promise<T | undefined> | T | undefined,
  ms = 20_000,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}\n${[...logs].join("\n")}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Every node in `nodes` answers rpcutil#ping. */
async function answering(nodes: string[]): Promise<void> {
  await until(`${nodes.join(", ")} to answer`, async () => {
    const r = await client.request("rpcutil", "ping", {}, { nodes, timeoutMs: 2000 });
    return r.stats.ok === nodes.length || undefined;
  });
}

interface StoredEvent {
  id: string;
  type: string;
  source: string;
  subject?: string;
  data: { event: string; execution_id: string; step?: string; state?: string };
}

/** CHORUS_JOBS read in order from where the last call stopped. */
const stored: StoredEvent[] = [];
let lastSeq = 0;
async function readStream(): Promise<StoredEvent[]> {
  const info = await jsm.streams.info(JOBS_STREAM);
  while (lastSeq < info.state.last_seq) {
    lastSeq++;
    const m = await jsm.streams.getMessage(JOBS_STREAM, { seq: lastSeq });
    if (m) stored.push(m.json<StoredEvent>());
  }
  return stored;
}

/** Per event type, how many `execution` has in the stream (output chunks left out: their number depends on timing). */
function counts(events: StoredEvent[], execution: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const e of events) {
    if (e.data.execution_id !== execution || e.data.event === "output") continue;
    out[e.data.event] = (out[e.data.event] ?? 0) + 1;
  }
  return out;
}

const EXACT = { execution_started: 1, started: 3, finished: 3, execution_finished: 1 };

beforeAll(async () => {
  fleet = await startSecureFleet({ servers: SERVERS });
  const setup = fleet.setup;
  // `setup dev` gives the emulator no submission right yet: reissue its credential with it
  await issueServerCredential(
    {
      issuer: orgIssuer(loadSeedFile(setup.issuerSeedFile)),
      trust: JSON.parse(readFileSync(join(setup.dir, "nats-trust.json"), "utf8")) as NatsTrust,
    },
    {
      seedFile: join(setup.dir, "credentials", "emulator.seed"),
      tokenFile: join(setup.dir, "credentials", "emulator.jwt"),
    },
    {
      identity: "emulator.chorus.local",
      collectives: [setup.collective],
      validityS: 3600,
      permissions: { service_host: true, submission: true },
      extraNats: { sub: [`${setup.collective}.node.>`] },
    },
  );
  statsPort = await freePort();
  for (const id of SERVERS) {
    mkdirSync(join(setup.dir, id));
    // the jobs directory defaults to <spool's parent>/jobs
    appendFileSync(
      setup.serverConfigs[id]!,
      `\nplugin.choria.submission.spool = ${id}/spool\n` +
        (id === SERVERS[0] ? `plugin.choria.stats_port = ${statsPort}\n` : ""),
    );
    startServer(id);
  }
  emulator = Emulator.fromConfigFile(setup.emulatorConfig, { nodes: EMULATED.length, logger: quiet });
  await emulator.start();
  client = await Client.fromConfigFile(setup.clientConfig, { logger: quiet });
  jobs = new JobClient(client, { nodes: ALL });
  reader = await connectAs(setup, setup.client);
  jsm = await jetstreamManager(reader);
  await answering(SERVERS);
}, 60_000);

afterAll(async () => {
  await Promise.all(
    [...procs.values()].map(
      (p) =>
        new Promise<void>((resolve) => {
          if (p.exitCode !== null || p.signalCode !== null) return resolve();
          p.once("exit", () => resolve());
          p.kill("SIGTERM");
        }),
    ),
  );
  await reader?.close();
  await client?.close();
  await emulator?.stop();
  await fleet?.stop();
});

describe("a workflow on 50 emulated nodes and 2 servers", () => {
  it("runs everywhere, is queried by its workflow id, and every node's events are in CHORUS_JOBS exactly", async () => {
    const workflow = [
      "name: three-steps",
      "steps:",
      "  - name: one",
      "    run: echo one",
      "  - name: two",
      "    needs: [one]",
      "    run: [sh, -c, 'echo two on $CHORUS_EXECUTION_ID']",
      "  - name: three",
      "    needs: [two]",
      "    agent: { agent: rpcutil, action: ping }",
    ].join("\n");
    const started = await jobs.runWorkflow({ workflow });
    expect(started.replies.map((r) => [r.sender, r.statuscode, r.statusmsg]).sort()).toEqual(
      ALL.map((n) => [n, 0, "OK"]).sort(),
    );
    const executions = new Map(started.replies.map((r) => [r.sender, r.data.execution_id as string]));
    expect(new Set(executions.values()).size).toBe(ALL.length);
    const wf = new Set(started.replies.map((r) => r.data.workflow_id));
    expect(wf.size).toBe(1);
    const workflowId = [...wf][0] as string;

    const done = await until("every node to finish", async () => {
      const q = await jobs.queryWorkflow({ id: workflowId }, { timeoutMs: 10_000 });
      return q.replies.length === ALL.length && q.replies.every((r) => r.data.state !== "running")
        ? q.replies
        : undefined;
    });
    for (const r of done) {
      expect([r.sender, r.data.state, r.data.execution_id]).toEqual([
        r.sender,
        "succeeded",
        executions.get(r.sender),
      ]);
      const steps = r.data.steps as ExecutionStatus["steps"];
      expect(Object.values(steps).map((s) => s.state)).toEqual(["succeeded", "succeeded", "succeeded"]);
      expect(steps.two?.output_tail).toBe(`two on ${executions.get(r.sender)}\n`);
      // the agent step ran rpcutil#ping on the node itself (in the manager, or in the emulator)
      expect(steps.three?.output_tail).toMatch(/"statuscode":0.*"pong":\d+/);
    }

    const events = await until("all events in the stream", async () => {
      const ev = await readStream();
      return [...executions.values()].every((x) => counts(ev, x).execution_finished === 1) ? ev : undefined;
    });
    for (const [node, x] of executions) {
      expect([node, counts(events, x)]).toEqual([node, EXACT]);
      const mine = events.filter((e) => e.data.execution_id === x);
      expect(new Set(mine.map((e) => e.source))).toEqual(new Set([`chorus://${node}/jobs/${x}`]));
      expect(mine.every((e) => e.type === `io.chorus.jobs.v1.${e.data.event}`)).toBe(true);
    }
    expect(new Set(events.map((e) => e.id)).size).toBe(events.length);
    const emu = (await emulator.shardStats())[0]?.jobs;
    expect(emu).toMatchObject({ nodes: EMULATED.length, lost: 0 });
  }, 45_000);
});

describe("a server killed in the middle of a workflow", () => {
  it("leaves the manager running; restarted, it finds the execution, which finishes and reports each event once", async () => {
    const id = SERVERS[0]!;
    const workflow = JSON.stringify({
      name: "survive-crash",
      steps: [
        { name: "before", run: "true" },
        { name: "nap", needs: ["before"], run: "sleep 3" },
        {
          name: "whoami",
          needs: ["nap"],
          agent: { agent: "rpcutil", action: "get_config_item", inputs: { item: "identity" } },
        },
      ],
    });
    const r = await jobs.runWorkflow({ workflow }, { nodes: [id] });
    expect(r.replies[0]?.statuscode).toBe(0);
    const exec = r.replies[0]!.data.execution_id as string;
    const statusFile = join(fleet.setup.dir, id, "jobs", exec, "status.json");
    const status = (): ExecutionStatus => JSON.parse(readFileSync(statusFile, "utf8")) as ExecutionStatus;
    await until("the nap step to run", () => status().steps.nap?.state === "running" || undefined);

    const server = procs.get(id)!;
    const gone = new Promise((resolve) => server.once("exit", resolve));
    server.kill("SIGKILL");
    await gone;
    const manager = status().manager_pid;
    expect(manager).toBeGreaterThan(0);
    expect(() => process.kill(manager, 0)).not.toThrow();
    expect(status().state).toBe("running");

    startServer(id);
    await answering([id]);
    const found = await jobs.queryWorkflow({ id: exec }, { nodes: [id] });
    // found again, not marked lost: its manager is alive
    expect(found.replies[0]?.data).toMatchObject({ execution_id: exec });
    expect(["running", "succeeded"]).toContain(found.replies[0]?.data.state);

    const final = await until("the execution to finish", async () => {
      const q = await jobs.queryWorkflow({ id: exec }, { nodes: [id] });
      return q.replies[0]?.data.state === "running" ? undefined : q.replies[0]?.data;
    });
    expect(final.state).toBe("succeeded");
    const steps = final.steps as ExecutionStatus["steps"];
    // the manager built the node from its config for the agent step
    expect(steps.whoami?.output_tail).toContain(`"value":"${id}"`);
    expect(steps.nap?.duration_ms).toBeGreaterThanOrEqual(2900);

    const events = await until("the execution's events", async () => {
      const ev = await readStream();
      return counts(ev, exec).execution_finished === 1 ? ev : undefined;
    });
    // give a duplicate (a resend after the lost ack) time to show up
    await new Promise((res) => setTimeout(res, 1500));
    await readStream();
    const mine = stored.filter((e) => e.data.execution_id === exec);
    expect(counts(stored, exec)).toEqual(EXACT);
    expect(new Set(mine.map((e) => e.id)).size).toBe(mine.length);
    expect(events.length).toBeLessThanOrEqual(stored.length);
  }, 45_000);
});

describe("refusals", () => {
  it("a bad workflow is refused by every node naming the step and field, and counted", async () => {
    const workflow = JSON.stringify({
      name: "bad",
      steps: [
        { name: "a", run: "true" },
        { name: "b", run: "true", timeout: "soon" },
      ],
    });
    const r = await jobs.runWorkflow({ workflow });
    expect(r.replies).toHaveLength(ALL.length);
    for (const reply of r.replies) {
      expect([reply.sender, reply.statuscode]).toEqual([reply.sender, StatusCode.InvalidData]);
      expect(reply.statusmsg).toContain('steps[1] "b".timeout');
    }
    const metrics = await (await fetch(`http://127.0.0.1:${statsPort}/metrics`)).text();
    expect(metrics).toMatch(/^chorus_jobs_invalid_workflows 1$/m);
    expect(metrics).toMatch(/^chorus_jobs_running 0$/m);
  });

  it("malformed and unknown ids get clear errors", async () => {
    const bad = await jobs.queryWorkflow({ id: "abc" }, { nodes: SERVERS });
    expect(bad.replies.map((r) => [r.statuscode, r.statusmsg])).toEqual(
      SERVERS.map(() => [
        StatusCode.InvalidData,
        'invalid id "abc": expected an execution id (27 letters and digits) or a workflow id (wf_ and 20 hex digits)',
      ]),
    );
    const unknown = await jobs.stopWorkflow(
      { id: "wf_00000000000000000000" },
      { nodes: [SERVERS[1]!, EMULATED[0]!] },
    );
    expect(unknown.replies.map((r) => r.statusmsg)).toEqual([
      "no execution of workflow wf_00000000000000000000 on this node",
      "no execution of workflow wf_00000000000000000000 on this node",
    ]);
    // a path never leaves the client: the DDL refuses it
    await expect(jobs.queryWorkflow({ id: "../../etc" })).rejects.toThrow(InputError);
  });

  it("an oversized workflow is refused by the DDL, in the client and on the node", async () => {
    const big = `name: big\nsteps:\n  - name: a\n    run: "true"\n#${"x".repeat(70_000)}\n`;
    await expect(jobs.runWorkflow({ workflow: big })).rejects.toThrow(/longer than the maximum of 65536/);
    // a client with a laxer DDL sends it anyway; the node's own DDL refuses it
    const lax = structuredClone(builtinDDL("job")) as AgentDDL;
    lax.actions.find((a) => a.action === "run_workflow")!.input.workflow!.maxlength = 0;
    const r = await client.request("job", "run_workflow", { workflow: big }, { nodes: SERVERS, ddl: lax });
    expect(r.replies.map((x) => [x.statuscode, x.statusmsg])).toEqual(
      SERVERS.map(() => [
        StatusCode.InvalidData,
        'input "workflow" is longer than the maximum of 65536 characters',
      ]),
    );
  });
});
