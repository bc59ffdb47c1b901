import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  EmulatedMachines,
  Emulator,
  EmulatorError,
  emulatedFacts,
  emulatedIdentity,
} from "../../../src/apps/emulator/index.js";
import { Client } from "../../../src/client/index.js";
import { startSecureFleet, type SecureFleet } from "../../helpers/fleet.js";

const quiet = pino({ level: "silent" });
const N = 1000;
const EVERY = 7;
const failing = Array.from({ length: N }, (_, i) => i + 1)
  .filter((i) => i % EVERY === 0)
  .map(emulatedIdentity)
  .sort();

async function until(what: string, ok: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("Scout at fleet scale: emulated nodes running Scout checks", () => {
  let fleet: SecureFleet;
  let emulator: Emulator;
  let client: Client;

  beforeAll(async () => {
    fleet = await startSecureFleet();
    emulator = Emulator.fromConfigFile(fleet.setup.emulatorConfig, {
      nodes: N,
      logger: quiet,
      machines: { scoutChecks: 2, failEvery: EVERY },
    });
    await emulator.start();
    client = await Client.fromConfigFile(fleet.setup.clientConfig, { logger: quiet });
    // every check leaves UNKNOWN for OK; the faulty nodes' checks then go CRITICAL
    await until("every check to settle", async () => {
      const s = await emulator.machinesStats();
      return (s?.transitions ?? 0) >= 2 * (N + failing.length);
    });
  }, 90_000);
  afterAll(async () => {
    await client?.close();
    await emulator?.stop();
    await fleet?.stop();
  });

  it(`discovery by check state finds exactly the ${failing.length} failing nodes among ${N}`, async () => {
    expect(failing).toHaveLength(142);
    const critical = await client.discover({
      filter: { compound: [[{ expr: 'scout("check_1").state == "CRITICAL"' }]] } as never,
      timeoutMs: 5_000,
      windowed: true,
    });
    expect([...critical].sort()).toEqual(failing);
    const notOk = await client.discover({
      filter: { compound: [[{ expr: 'scout("check_2").state != "OK"' }]] } as never,
      timeoutMs: 5_000,
      windowed: true,
    });
    expect([...notOk].sort()).toEqual(failing);
    // a check no node has matches none
    const none = await client.discover({
      filter: { compound: [[{ expr: 'scout("nosuch").state == "OK"' }]] } as never,
      timeoutMs: 3_000,
      windowed: true,
    });
    expect(none).toEqual([]);
  });

  it("the scout agent reports the checks, with the nagios watcher's status and history", async () => {
    const nodes = [emulatedIdentity(6), emulatedIdentity(7)];
    const r = await client.request("scout", "checks", {}, { nodes });
    expect(r.stats.ok).toBe(2);
    const bySender = new Map(r.replies.map((x) => [x.sender, x.data.checks as Record<string, unknown>[]]));
    const healthy = bySender.get(emulatedIdentity(6)) ?? [];
    const faulty = bySender.get(emulatedIdentity(7)) ?? [];
    expect(healthy.map((c) => [c.name, c.state])).toEqual([
      ["check_1", "OK"],
      ["check_2", "OK"],
    ]);
    expect(faulty.map((c) => [c.name, c.state])).toEqual([
      ["check_1", "CRITICAL"],
      ["check_2", "CRITICAL"],
    ]);
    const status = healthy[0]?.status as { history: unknown[]; plugin: string };
    expect(status.plugin).toBe("heartbeat");
    expect(status.history.length).toBeGreaterThanOrEqual(1);
  });

  it("maintenance and resume move a check on the chosen nodes only", async () => {
    const node = emulatedIdentity(14);
    const m = await client.request("scout", "maintenance", { checks: ["check_1"] }, { nodes: [node] });
    expect(m.replies[0]?.data.transitioned).toEqual(["check_1"]);
    const inMaint = await client.discover({
      filter: { compound: [[{ expr: 'scout("check_1").state == "MAINTENANCE"' }]] } as never,
      timeoutMs: 3_000,
      windowed: true,
    });
    expect(inMaint).toEqual([node]);
    const r = await client.request("scout", "resume", { checks: ["check_1"] }, { nodes: [node] });
    expect(r.replies[0]?.data.transitioned).toEqual(["check_1"]);
    // resumed: UNKNOWN, the heartbeat runs (OK) and the fault takes it back to CRITICAL
    await until("the resumed check to fail again", async () => {
      const c = await client.request("scout", "checks", {}, { nodes: [node] });
      const checks = (c.replies[0]?.data.checks ?? []) as { name: string; state: string }[];
      return checks.find((x) => x.name === "check_1")?.state === "CRITICAL";
    });
  });

  it("publishes the transitions of every node on choria.machine.transition", async () => {
    const s = await emulator.machinesStats();
    expect(s?.machines).toBe(2 * N);
    expect(s?.watchers).toBe(4 * N);
    // every event went out (none waiting, none dropped)
    expect(s?.events.dropped).toBe(0);
    expect(s?.events.sent).toBeGreaterThanOrEqual(s?.transitions ?? Infinity);
  });
});

describe("emulator machines from a directory", () => {
  let dir: string;
  let fleet: SecureFleet;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "chorus-em-machines-"));
    fleet = await startSecureFleet();
  }, 60_000);
  afterAll(async () => {
    await fleet?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("refuses a broken machine once, before any node starts, naming the file and key", () => {
    mkdirSync(join(dir, "bad"));
    writeFileSync(
      join(dir, "bad", "machine.yaml"),
      "name: bad\nversion: 1.0.0\ninitial_state: idle\ntransitions:\n  - { name: go, from: [idle], destination: busy }\nwatchers:\n  - name: w\n    type: nosuch\n",
    );
    let err: unknown;
    try {
      new EmulatedMachines({ directory: dir }, quiet);
    } catch (e) {
      err = e;
    } finally {
      rmSync(join(dir, "bad"), { recursive: true });
    }
    expect(err).toBeInstanceOf(EmulatorError);
    expect((err as Error).message).toContain(join(dir, "bad", "machine.yaml"));
    expect((err as Error).message).toContain("watchers[0]");
  });

  it("worker-thread shards run the nodes' Scout checks too (discovery and summed figures)", async () => {
    const em = Emulator.fromConfigFile(fleet.setup.emulatorConfig, {
      nodes: 70,
      firstIndex: 1,
      workers: 2,
      logger: quiet,
      machines: { scoutChecks: 1, failEvery: 7 },
    });
    await em.start();
    const client = await Client.fromConfigFile(fleet.setup.clientConfig, { logger: quiet });
    try {
      await until("the checks to settle", async () => ((await em.machinesStats())?.transitions ?? 0) >= 80);
      const s = await em.machinesStats();
      expect(s?.machines).toBe(70);
      expect(s?.watchers).toBe(140);
      const critical = await client.discover({
        filter: { compound: [[{ expr: 'scout("check_1").state == "CRITICAL"' }]] } as never,
        timeoutMs: 3_000,
        windowed: true,
      });
      expect([...critical].sort()).toEqual(
        Array.from({ length: 10 }, (_, k) => emulatedIdentity(7 * (k + 1))).sort(),
      );
    } finally {
      await client.close();
      await em.stop();
    }
  });

  it("every node runs its own instance of the directory's machines; choria_util sees them", async () => {
    mkdirSync(join(dir, "flip"));
    writeFileSync(
      join(dir, "flip", "machine.yaml"),
      [
        "name: flip",
        "version: 1.0.0",
        "initial_state: off",
        "transitions:",
        "  - { name: turn_on, from: [off], destination: on }",
        "  - { name: turn_off, from: [on], destination: off }",
        "watchers:",
        "  - name: up",
        "    type: expression",
        "    state_match: [off]",
        "    interval: 1s",
        "    success_transition: turn_on",
        "    properties: { success_when: 'facts.role == \"web\"' }",
        "",
      ].join("\n"),
    );
    const em = Emulator.fromConfigFile(fleet.setup.emulatorConfig, {
      nodes: 20,
      logger: quiet,
      machines: { directory: dir },
    });
    await em.start();
    const client = await Client.fromConfigFile(fleet.setup.clientConfig, { logger: quiet });
    try {
      const web = Array.from({ length: 20 }, (_, i) => i + 1)
        .filter((i) => emulatedFacts(i).role === "web")
        .map(emulatedIdentity)
        .sort();
      expect(web.length).toBeGreaterThan(0);
      await until("the web nodes to turn on", async () => {
        const r = await client.request(
          "choria_util",
          "machine_state",
          { name: "flip" },
          {
            nodes: Array.from({ length: 20 }, (_, i) => emulatedIdentity(i + 1)),
          },
        );
        const on = r.replies.filter((x) => x.data.state === "on").map((x) => x.sender);
        return r.replies.length === 20 && on.sort().join() === web.join();
      });
      // a transition through choria_util moves one node's instance only
      const first = web[0] as string;
      const t = await client.request(
        "choria_util",
        "machine_transition",
        { name: "flip", transition: "turn_off" },
        { nodes: [first] },
      );
      expect(t.replies[0]?.data.success).toBe(true);
    } finally {
      await client.close();
      await em.stop();
    }
  });
});
