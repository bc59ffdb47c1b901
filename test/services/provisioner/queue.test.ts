// The persistent work queue: dedupe, and a provisioner killed mid-batch whose nodes a
// second one finishes, each node configured exactly once.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import {
  PROVISIONING_CONSUMER,
  PROVISIONING_STREAM,
  WorkQueue,
  parseWorkItem,
  queueSubject,
  type ProvisionerService,
} from "../../../src/services/provisioner/index.js";
import { provisioningFixture, until, type ProvisioningFixture, type TestNode } from "./fixture.js";

let fx: ProvisioningFixture;
let running: ProvisionerService[] = [];

beforeAll(async () => {
  fx = await provisioningFixture();
});
afterAll(async () => {
  await fx?.stop();
});
afterEach(async () => {
  for (const p of running) await p.stop();
  running = [];
  await fx.purgeQueue();
});

async function provisioner(
  ...args: Parameters<ProvisioningFixture["provisioner"]>
): Promise<ProvisionerService> {
  const p = await fx.provisioner(...args);
  running.push(p);
  return p;
}

describe("provisioning work queue", () => {
  it("keeps one item per node and drops re-offers within the duplicate window", async () => {
    const nc = await fx.choriaConnection();
    const q = new WorkQueue(nc, { ackWaitMs: 5000, duplicateWindowMs: 120_000 });
    await q.ensure();
    const info = await (await jetstreamManager(nc, { checkAPI: false })).streams.info(PROVISIONING_STREAM);
    expect(info.config.retention).toBe("workqueue");
    expect(info.config.max_msgs_per_subject).toBe(1);

    expect(await q.enqueue("q1.example.net", "event")).toBe("queued");
    expect(await q.enqueue("q1.example.net", "discovery")).toBe("duplicate");
    expect(await q.enqueue("q2.example.net", "discovery")).toBe("queued");
    expect(await q.depth()).toEqual({ waiting: 2, inProgress: 0 });

    const m = await q.next(2000);
    expect(m).toBeDefined();
    const item = parseWorkItem(m!);
    expect(item).toMatchObject({ identity: "q1.example.net", source: "event" });
    expect(m!.subject).toBe(queueSubject("q1.example.net"));
    // held, not acked: still one item for the node
    expect(await q.enqueue("q1.example.net", "event")).toBe("duplicate");
    expect(await q.depth()).toEqual({ waiting: 1, inProgress: 1 });
    expect(await m!.ackAck()).toBe(true);
    // done just now: a node restarting out of provisioning mode is not queued again
    expect(await q.enqueue("q1.example.net", "discovery")).toBe("duplicate");
    expect((await q.depth()).inProgress).toBe(0);

    // an item that is not one is dropped, not retried forever
    expect(parseWorkItem({ data: new TextEncoder().encode("{nope") })).toBeUndefined();
    const ci = await (
      await jetstreamManager(nc, { checkAPI: false })
    ).consumers.info(PROVISIONING_STREAM, PROVISIONING_CONSUMER);
    expect(ci.config.ack_policy).toBe("explicit");
  });

  it.each([
    // as kill -9: nothing given back; what it held returns after queue_ack_wait
    { how: "kill", graceMs: 0 },
    // stop() lets the nodes in progress finish, then gives up its place
    { how: "stop", graceMs: 30_000 },
    // stop() whose grace runs out mid-configure: that node waits out ack_wait, the rest go back at once
    { how: "stop-grace", graceMs: 100 },
  ] as const)(
    "a provisioner ended mid-batch ($how) leaves its nodes to the next one; each is configured once",
    async ({ how, graceMs }) => {
      const ids = ["batch1", "batch2", "batch3", "batch4", "batch5"].map((n) => `${how}-${n}.example.net`);
      const nodes: TestNode[] = [];
      for (const id of ids) {
        const n = await fx.node(id);
        n.configureDelayMs = 1200;
        nodes.push(n);
      }
      const configures = () => nodes.reduce((a, n) => a + (n.calls.configure ?? 0), 0);
      const first = await fx.provisioner({ workers: 2 }, { stopGraceMs: graceMs });
      await until("the first configure", () => configures() >= 1);
      if (how === "kill") await first.kill();
      else await first.stop();
      expect(nodes.filter((n) => (n.calls.jwt ?? 0) > 0).length).toBeGreaterThanOrEqual(1);
      const byFirst = await first.metrics.value("choria_provisioner_provisioned");
      if (how === "stop") expect(byFirst).toBeGreaterThanOrEqual(1);
      else expect(byFirst).toBe(0);

      const second = await provisioner({ workers: 2 });
      await Promise.all(nodes.map((n) => n.whenNormal(60_000)));
      for (const n of nodes) expect([n.identity, n.calls.configure]).toEqual([n.identity, 1]);
      await until(
        "all counted",
        async () => byFirst + (await second.metrics.value("choria_provisioner_provisioned")) === ids.length,
      );
      // the node whose configure the first one sent was only restarted by the second
      if (how !== "stop")
        expect(
          await second.metrics.value("chorus_provisioner_items_total", { outcome: "already_done" }),
        ).toBeGreaterThanOrEqual(1);
    },
    // a loaded CI machine: the held nodes wait out queue_ack_wait, then five enrolments
    90_000,
  );

  it("only the elected leader provisions; another takes over when it stops", async () => {
    const a = await provisioner({ leader_election: true }, { electionTtlMs: 2000, candidate: "a" });
    const b = await provisioner({ leader_election: true }, { electionTtlMs: 2000, candidate: "b" });
    await until("a leader", () => a.isActive || b.isActive);
    const [leader, other] = a.isActive ? [a, b] : [b, a];
    expect(other.isActive).toBe(false);
    expect(await other.metrics.value("choria_provisioner_paused")).toBe(1);
    expect(await leader.metrics.value("choria_provisioner_paused")).toBe(0);

    const n1 = await fx.node("ha1.example.net");
    await n1.whenNormal();
    expect(await other.metrics.value("choria_provisioner_provisioned")).toBe(0);

    await leader.stop();
    running = running.filter((p) => p !== leader);
    await until("failover", () => other.isActive, 10_000);
    const n2 = await fx.node("ha2.example.net");
    await n2.whenNormal();
    expect(await other.metrics.value("choria_provisioner_provisioned")).toBe(1);
  });
});
