// The Large Scale Design end to end: two cells and a centre, each with its own trust,
// laid out by createOverlaySetup and run in this process. Emulated fleets enrol through
// each cell's provisioner; users log in to each cell's AAA; workflow jobs run as
// asynchronous requests. Cell 1 is then partitioned from the centre by stopping its
// replicator (the only link between them; no network namespace is used): it keeps
// serving logins, requests and jobs; nothing of it reaches the centre; after healing,
// every event, job event, audit record and reply arrives, each exactly once.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import { pino } from "pino";
import { OverlayRun, renderCounts, type CellCounts } from "../../../src/apps/demo/index.js";
import { createOverlaySetup } from "../../../src/apps/setup/index.js";
import {
  encodeLifecycleEvent,
  lifecycleSubject,
  newLifecycleEvent,
} from "../../../src/services/lifecycle/index.js";
import { parseSourceHeader } from "../../../src/services/replicator/index.js";
import { connectNats } from "../../../src/core/connector/index.js";
import { replyPrefix } from "../../../src/core/protocol/index.js";
import { loadSeedFile } from "../../../src/core/security/index.js";
import { readAll } from "../../services/replicator/fixture.js";

const NODES = 8;
const WORKFLOW = `name: overlay
steps:
  - name: one
    run: "echo one"
  - name: two
    needs: [one]
    run: "echo two"
`;

let dir: string;
let run: OverlayRun;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "chorus-overlays-"));
  const setup = await createOverlaySetup({ dir, cells: 2 });
  run = new OverlayRun(setup, { nodesPerCell: NODES, logger: pino({ level: "silent" }) });
  await run.startCentre();
  for (const c of setup.cells) await run.startCell(c);
}, 180_000);

afterAll(async () => {
  await run?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, check: () => Promise<boolean>, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

const of = (counts: CellCounts[], cell: string) => counts.find((c) => c.cell === cell)?.streams ?? [];
const drained = (counts: CellCounts[], cell: string) =>
  of(counts, cell).every((s) => s.atCentre === s.inCell);

/**
 * One round of work in a cell: a login and a signed ping, a lifecycle event, every node's
 * registration (as on its interval), an async workflow job.
 */
async function work(cell: string): Promise<{ requestId: string; answered: number; registered: number }> {
  const rc = run.cells.get(cell);
  if (!rc) throw new Error(`no cell ${cell}`);
  const user = await run.loginClient(cell);
  try {
    const ping = await user.request("rpcutil", "ping", {}, {});
    // a node's lifecycle event, as its server publishes them
    const ev = newLifecycleEvent("alive", {
      identity: rc.nodes[0] as string,
      component: "server",
      version: "0.1.0",
    });
    rc.admin.publish(lifecycleSubject(ev), encodeLifecycleEvent(ev));
    const registered = await rc.emulator.registerNow();
    const sent = await rc.client.requestAsync(
      "job",
      "run_workflow",
      { workflow: WORKFLOW },
      { nodes: rc.nodes },
    );
    return { requestId: sent.requestId, answered: ping.replies.length, registered };
  } finally {
    await user.close();
  }
}

describe("two cells and a centre", () => {
  it("a partitioned cell keeps working alone and its data reaches the centre exactly once after healing", async () => {
    const tables: string[] = [];
    // before: both cells linked
    const before = await Promise.all(["cell1", "cell2"].map(work));
    expect(before.map((b) => b.answered)).toEqual([NODES, NODES]);
    expect(before.map((b) => b.registered)).toEqual([NODES, NODES]);
    const api = run.receiverApi();
    for (const b of before)
      await until(`request ${b.requestId} complete at the centre`, async () => {
        const st = (await api.status(b.requestId).catch(() => undefined)) as { replied?: number } | undefined;
        return st?.replied === NODES;
      });
    await until("both cells drained", async () => {
      const c = await run.counts();
      return drained(c, "cell1") && drained(c, "cell2") && of(c, "cell1").every((s) => s.inCell > 0);
    });
    const c0 = await run.counts();
    tables.push(renderCounts("before the partition:", c0));

    // during: cell1 cut off from the centre, still serving
    tables.push(
      "partition: by stopping cell1's replicator, the only link from the cell to the centre (no network namespace)",
    );
    await run.partition("cell1");
    const during = await Promise.all(["cell1", "cell2"].map(work));
    expect(during.map((d) => d.answered)).toEqual([NODES, NODES]);
    await until("cell1's new work stored in cell1", async () => {
      const c = await run.counts();
      return of(c, "cell1").every((s, i) => s.inCell > (of(c0, "cell1")[i]?.inCell ?? 0));
    });
    await until("cell2 still drained to the centre", async () => drained(await run.counts(), "cell2"));
    await sleep(1500);
    const c1 = await run.counts();
    tables.push(renderCounts("during the partition (cell1's replicator stopped):", c1));
    // nothing of cell1's new data at the centre
    expect(of(c1, "cell1").map((s) => s.atCentre)).toEqual(of(c0, "cell1").map((s) => s.atCentre));
    const stuck = (await api.status(during[0]?.requestId as string).catch(() => undefined)) as
      { replied?: number } | undefined;
    expect(stuck?.replied ?? 0).toBe(0);

    // after: healed, everything arrives once
    await run.heal("cell1");
    await until("cell1 drained after healing", async () => drained(await run.counts(), "cell1"));
    await until(`request ${during[0]?.requestId} complete at the centre`, async () => {
      const st = (await api.status(during[0]?.requestId as string).catch(() => undefined)) as
        { replied?: number } | undefined;
      return st?.replied === NODES;
    });
    await sleep(1000);
    const c2 = await run.counts();
    tables.push(renderCounts("after healing:", c2));
    process.stdout.write(`${tables.join("\n")}\n`);
    expect(drained(c2, "cell1")).toBe(true);
    expect(drained(c2, "cell2")).toBe(true);
    for (const s of of(c2, "cell1"))
      expect(s.atCentre).toBeGreaterThan(of(c1, "cell1").find((x) => x.name === s.name)?.atCentre ?? 0);

    // exactly once: every copy at the centre is a distinct source message
    const c = run.setup.centre;
    const admin = await connectNats({
      servers: [c.brokerUrl],
      name: "check",
      caFile: c.caFile,
      seedHex: loadSeedFile(join(c.dir, "credentials/broker.seed")).seedHex,
      natsJwt: readFileSync(join(c.dir, "credentials/broker.jwt.nats"), "utf8").trim(),
      inboxPrefix: replyPrefix(c.collective, "choria=broker.chorus.local"),
      logger: { info() {}, warn() {}, error() {} },
    });
    try {
      const jsm = await jetstreamManager(admin);
      for (const stream of ["CELL1_EVENTS", "CELL1_REGISTRATION", "CELL1_JOBS", "CELL1_AUDIT"]) {
        const msgs = await readAll(jsm, stream);
        const seqs = msgs.map((m) => parseSourceHeader(m.source)?.seq);
        expect(new Set(seqs).size, stream).toBe(msgs.length);
      }
    } finally {
      await admin.close();
    }
  }, 240_000);
});
