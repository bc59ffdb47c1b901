import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  renderScoutAction,
  renderScoutStatus,
  scoutAction,
  scoutActionRows,
  scoutRows,
  scoutStatus,
  stateCounts,
} from "../../../src/apps/cli/scout.js";
import { Emulator, emulatedIdentity } from "../../../src/apps/emulator/index.js";
import { Client, type RpcResult } from "../../../src/client/index.js";
import { chorusAsync } from "../../helpers/cli.js";
import { startSecureFleet, type SecureFleet } from "../../helpers/fleet.js";

const quiet = pino({ level: "silent" });

function result(
  replies: { sender: string; statuscode?: number; statusmsg?: string; data: Record<string, unknown> }[],
): RpcResult {
  return {
    agent: "scout",
    action: "checks",
    replies: replies.map((r) => ({
      sender: r.sender,
      statuscode: r.statuscode ?? 0,
      statusmsg: r.statusmsg ?? "OK",
      data: r.data,
      time: new Date(),
    })),
    stats: {
      requestid: "x",
      discovered: replies.length,
      responses: replies.length,
      ok: replies.length,
      failed: 0,
      noResponses: [],
      unexpected: [],
      discoverMs: 1,
      publishMs: 0,
      requestMs: 1,
      startTime: new Date(),
      dropped: { malformed: 0, hash: 0, signature: 0, request: 0, duplicate: 0 } as never,
    },
  };
}

describe("scout status rendering", () => {
  const r = result([
    {
      sender: "b.example",
      data: {
        checks: [
          {
            name: "mailq",
            state: "CRITICAL",
            status: {
              output: "CRITICAL: 120 messages|count=120\nlong text",
              check_time: 1_700_000_000,
              history: [{ status: 0 }, { status: 2 }],
            },
          },
          { name: "heartbeat", state: "OK", status: { output: "1700000000", history: [{ status: 0 }] } },
        ],
      },
    },
    { sender: "a.example", data: { checks: [{ name: "heartbeat", state: "OK", status: null }] } },
    { sender: "c.example", statuscode: 1, statusmsg: "machines not available", data: {} },
  ]);

  it("lists node, check, state and the first output line, sorted, with history names", () => {
    const { rows, errors } = scoutRows(r);
    expect(rows.map((x) => [x.node, x.check, x.state, x.output])).toEqual([
      ["a.example", "heartbeat", "OK", ""],
      ["b.example", "heartbeat", "OK", "1700000000"],
      ["b.example", "mailq", "CRITICAL", "CRITICAL: 120 messages|count=120"],
    ]);
    expect(rows[2]?.history).toEqual(["OK", "CRITICAL"]);
    expect(errors).toEqual([{ node: "c.example", message: "machines not available" }]);
    expect(stateCounts(rows)).toEqual([
      ["OK", 2],
      ["WARNING", 0],
      ["CRITICAL", 1],
      ["UNKNOWN", 0],
    ]);
    const text = renderScoutStatus(rows, errors);
    expect(text).toMatch(/^NODE\s+CHECK\s+STATE\s+OUTPUT\n/);
    expect(text).toContain("b.example  mailq      CRITICAL  CRITICAL: 120 messages|count=120\n");
    expect(text).toContain("c.example: machines not available\n");
    expect(text).toContain("3 checks on 2 nodes: OK 2, WARNING 0, CRITICAL 1, UNKNOWN 0\n");
  });

  it("counts MAINTENANCE and other states after the four check states", () => {
    const rows = scoutRows(
      result([
        {
          sender: "a",
          data: {
            checks: [
              { name: "x", state: "MAINTENANCE" },
              { name: "y", state: "OK" },
            ],
          },
        },
      ]),
    ).rows;
    expect(stateCounts(rows).slice(-1)).toEqual([["MAINTENANCE", 1]]);
  });

  it("prints trigger/maintenance/resume per node and the totals", () => {
    const rows = scoutActionRows(
      result([
        { sender: "n2", data: { transitioned: ["a"], skipped: ["b"], failed: [] } },
        {
          sender: "n1",
          statuscode: 1,
          statusmsg: "Some checks could not be transitioned",
          data: { failed: ["zz"] },
        },
      ]),
    );
    expect(rows.map((x) => x.node)).toEqual(["n1", "n2"]);
    const text = renderScoutAction("trigger", rows);
    expect(text).toContain("n1  error: Some checks could not be transitioned\n");
    expect(text).toContain("n2  transitioned: a  skipped: b  failed: -\n");
    expect(text).toContain("trigger on 2 nodes: 1 transitioned, 1 skipped, 1 failed, 1 node in error\n");
  });
});

describe("chorus scout against emulated nodes", () => {
  let fleet: SecureFleet;
  let emulator: Emulator;
  let client: Client;
  const N = 14;

  beforeAll(async () => {
    fleet = await startSecureFleet();
    emulator = Emulator.fromConfigFile(fleet.setup.emulatorConfig, {
      nodes: N,
      logger: quiet,
      machines: { scoutChecks: 1, failEvery: 7 },
    });
    await emulator.start();
    client = await Client.fromConfigFile(fleet.setup.clientConfig, { logger: quiet });
    // UNKNOWN -> OK everywhere, then OK -> CRITICAL on nodes 7 and 14
    for (let i = 0; i < 200 && ((await emulator.machinesStats())?.transitions ?? 0) < N + 2; i++)
      await new Promise((r) => setTimeout(r, 50));
  }, 60_000);
  afterAll(async () => {
    await client?.close();
    await emulator?.stop();
    await fleet?.stop();
  });

  it("status shows every node's check and counts per state; exit 0", async () => {
    let out = "";
    const code = await scoutStatus(
      client,
      { discoveryWindow: true },
      new AbortController().signal,
      (s) => (out += s),
    );
    expect(code).toBe(0);
    expect(out).toContain(`${N} checks on ${N} nodes: OK 12, WARNING 0, CRITICAL 2, UNKNOWN 0\n`);
    expect(out).toMatch(new RegExp(`${emulatedIdentity(7).replace(/\./g, "\\.")}\\s+check_1\\s+CRITICAL`));
  });

  it("status with a filter by check state addresses only the failing nodes", async () => {
    let out = "";
    const code = await scoutStatus(
      client,
      { select: ['scout("check_1").state == "CRITICAL"'], discoveryWindow: true },
      new AbortController().signal,
      (s) => (out += s),
    );
    expect(code).toBe(0);
    expect(out).toContain("2 checks on 2 nodes: OK 0, WARNING 0, CRITICAL 2, UNKNOWN 0\n");
  });

  it("trigger runs the check on the chosen node; an unknown check fails with exit 2", async () => {
    let out = "";
    const node = emulatedIdentity(3);
    const ok = await scoutAction(
      client,
      "trigger",
      ["check_1"],
      { identity: [node] },
      new AbortController().signal,
      (s) => (out += s),
    );
    expect(out).toContain(`${node}  transitioned: check_1  skipped: -  failed: -\n`);
    expect(ok).toBe(0);
    out = "";
    let err = "";
    const bad = await scoutAction(
      client,
      "trigger",
      ["nosuch"],
      { identity: [node] },
      new AbortController().signal,
      (s) => (out += s),
      (s) => (err += s),
    );
    expect(bad).toBe(2);
    expect(out).toContain("error: Some checks could not be transitioned");
  });

  it("the chorus binary runs scout status and maintenance (exit codes from the command table)", async () => {
    const env = { CHORUS_CONFIG: fleet.setup.clientConfig };
    const m = await chorusAsync(["scout", "maintenance", "check_1", "-I", emulatedIdentity(1)], env);
    expect(m.stderr).toBe("");
    expect(m.stdout).toContain("maintenance on 1 node: 1 transitioned, 0 skipped, 0 failed");
    expect(m.status).toBe(0);
    const s = await chorusAsync(["scout", "status", "--json", "-I", emulatedIdentity(1)], env);
    expect(s.status).toBe(0);
    const doc = JSON.parse(s.stdout) as { checks: { state: string }[] };
    expect(doc.checks.map((c) => c.state)).toEqual(["MAINTENANCE"]);
    const none = await chorusAsync(["scout", "status", "-F", "role=nosuch", "--discovery-timeout", "1"], env);
    expect(none.status).toBe(1);
    expect(none.stderr).toContain("no nodes matched the filter");
  });
});
