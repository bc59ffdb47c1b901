import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsConnection } from "../../../src/core/connector/index.js";
import { decodeLifecycleEvent } from "../../../src/services/lifecycle/index.js";
import {
  acquireGovernorSlot,
  addGovernor,
  evictGovernorEntry,
  governorEntries,
  governorInfo,
  governorStreamConfig,
  listGovernors,
  removeGovernor,
  resetGovernor,
  runGoverned,
} from "../../../src/services/streams/index.js";
import { governorPeriodStreamConfig } from "../../../src/services/streams/governor.js";
import { startJsBroker, type JsBroker } from "../submission/jsbroker.js";

let broker: JsBroker;
let admin: NatsConnection;
let worker: NatsConnection;
let clientWorker: NatsConnection;
let dir: string;
const C = "mcollective";

beforeAll(async () => {
  broker = await startJsBroker();
  dir = mkdtempSync(join(tmpdir(), "chorus-gov-"));
  admin = await broker.connect(await broker.client("choria=admin", { streams_admin: true, org_admin: true }));
  // governed jobs usually run on nodes with the server credential (which may send lifecycle events)
  worker = await broker.connect(
    await broker.server("worker.example.net", [C], { governor: true, streams: true }),
  );
  // a user with governor + streams_user, nothing more
  clientWorker = await broker.connect(
    await broker.client("choria=worker", { governor: true, streams_user: true }),
  );
});

afterAll(async () => {
  await broker?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("governors", () => {
  it("uses the go-choria stream shape", () => {
    expect(governorStreamConfig("G", { capacity: 3, expireMs: 60_000, collective: C })).toMatchObject({
      name: "GOVERNOR_G",
      subjects: ["mcollective.governor.G"],
      max_msgs: 3,
      max_age: 60_000_000_000,
      discard: "new",
      duplicate_window: 0,
    });
    expect(() => governorStreamConfig("a.b", { capacity: 1, expireMs: 1, collective: C })).toThrow(
      /invalid governor/,
    );
    expect(() => governorStreamConfig("G", { capacity: 0, expireMs: 1, collective: C })).toThrow(/capacity/);
  });

  it("never runs more than capacity commands at once", async () => {
    // creating governors is for streams_admin; workers only campaign
    await expect(
      addGovernor(clientWorker, "BUILD", { capacity: 2, expireMs: 60_000, collective: C }),
    ).rejects.toMatchObject({
      code: "denied",
    });
    await addGovernor(admin, "BUILD", { capacity: 2, expireMs: 60_000, collective: C });
    const log = join(dir, "concurrency.log");
    // each child counts live siblings via marker files, then holds its slot for a while
    const script = `
      const fs = require("fs"), path = require("path");
      const d = ${JSON.stringify(dir)}, me = path.join(d, "live-" + process.pid);
      fs.writeFileSync(me, "");
      const live = fs.readdirSync(d).filter((f) => f.startsWith("live-")).length;
      fs.appendFileSync(${JSON.stringify(log)}, live + "\\n");
      setTimeout(() => { fs.unlinkSync(me); }, 400);`;
    const events: string[] = [];
    const evSub = admin.subscribe("choria.lifecycle.event.governor.>", {
      callback: (_e, m) => void events.push(decodeLifecycleEvent(m.data).event_type!),
    });
    await admin.flush();
    const codes = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        runGoverned(worker, "BUILD", process.execPath, ["-e", script], {
          collective: C,
          identity: `worker${i}`,
          intervalMs: 50,
          timeoutMs: 30_000,
          stdio: "ignore",
        }),
      ),
    );
    expect(codes).toEqual([0, 0, 0, 0, 0, 0]);
    const counts = readFileSync(log, "utf8").trim().split("\n").map(Number);
    expect(counts).toHaveLength(6);
    expect(Math.max(...counts)).toBeLessThanOrEqual(2);
    // all slots were given back
    expect((await governorInfo(worker, "BUILD")).active).toBe(0);
    await admin.flush();
    await new Promise((r) => setTimeout(r, 100));
    evSub.unsubscribe();
    expect(events.filter((e) => e === "enter")).toHaveLength(6);
    expect(events.filter((e) => e === "exit")).toHaveLength(6);
  }, 60_000);

  it("sends governor lifecycle events from a plain client credential with governor", async () => {
    await addGovernor(admin, "CLIJOB", { capacity: 1, expireMs: 60_000, collective: C });
    const events: string[] = [];
    const evSub = admin.subscribe("choria.lifecycle.event.governor.>", {
      callback: (_e, m) => void events.push(decodeLifecycleEvent(m.data).event_type!),
    });
    await admin.flush();
    const code = await runGoverned(clientWorker, "CLIJOB", process.execPath, ["-e", "0"], {
      collective: C,
      identity: "choria=worker",
      intervalMs: 50,
      timeoutMs: 10_000,
      stdio: "ignore",
    });
    expect(code).toBe(0);
    // the client may publish governor events but no other lifecycle event
    clientWorker.publish("choria.lifecycle.event.startup.cli", "{}");
    await clientWorker.flush();
    await admin.flush();
    await new Promise((r) => setTimeout(r, 200));
    evSub.unsubscribe();
    expect(events).toEqual(["enter", "exit"]);
    await removeGovernor(admin, "CLIJOB");
  });

  it("views, evicts and resets entries", async () => {
    await addGovernor(admin, "OPS", { capacity: 3, expireMs: 60_000, collective: C });
    const a = await acquireGovernorSlot(clientWorker, "OPS", { collective: C, holder: "alpha" });
    const b = await acquireGovernorSlot(clientWorker, "OPS", { collective: C, holder: "beta" });
    expect((await governorEntries(worker, "OPS")).map((e) => e.holder)).toEqual(["alpha", "beta"]);
    expect(await evictGovernorEntry(admin, "OPS", a.seq)).toBe("alpha");
    expect((await governorEntries(worker, "OPS")).map((e) => [e.seq, e.holder])).toEqual([[b.seq, "beta"]]);
    await a.release(); // already evicted: still fine
    await b.release();
    expect((await governorInfo(clientWorker, "OPS")).active).toBe(0);
    await acquireGovernorSlot(clientWorker, "OPS", { collective: C, holder: "gamma" });
    await resetGovernor(admin, "OPS");
    expect((await governorInfo(worker, "OPS")).active).toBe(0);
    expect(await listGovernors(worker, C)).toEqual(["BUILD", "OPS"]);
  });

  it("times out when full and reports it", async () => {
    await addGovernor(admin, "ONE", { capacity: 1, expireMs: 60_000, collective: C });
    const held = await acquireGovernorSlot(worker, "ONE", { collective: C, holder: "holder" });
    const events: string[] = [];
    await expect(
      acquireGovernorSlot(worker, "ONE", {
        collective: C,
        holder: "waiter",
        timeoutMs: 300,
        intervalMs: 50,
        onEvent: (t) => events.push(t),
      }),
    ).rejects.toMatchObject({ code: "timeout" });
    expect(events).toEqual(["timeouts"]);
    await held.release();
    const next = await acquireGovernorSlot(worker, "ONE", { collective: C, holder: "waiter" });
    await next.release();
  });

  it("says so when the governor does not exist", async () => {
    await expect(
      acquireGovernorSlot(worker, "MISSING", { collective: C, holder: "x" }),
    ).rejects.toMatchObject({
      code: "no_governor",
      message: "governor MISSING does not exist",
    });
    await expect(governorInfo(worker, "MISSING")).rejects.toMatchObject({ code: "no_governor" });
    await expect(resetGovernor(admin, "MISSING")).rejects.toMatchObject({ code: "no_governor" });
  });

  it("starts at most period-limit runs per period across workers", async () => {
    expect(
      governorPeriodStreamConfig("R", {
        capacity: 1,
        expireMs: 1,
        periodMs: 3_600_000,
        periodLimit: 10,
        collective: C,
      }),
    ).toMatchObject({
      name: "GOVERNOR_R_PERIOD",
      subjects: ["mcollective.governor.R_PERIOD"],
      max_msgs: 10,
      max_age: 3_600_000_000_000,
      discard: "new",
    });
    expect(() =>
      governorPeriodStreamConfig("R", { capacity: 1, expireMs: 1, periodMs: 1, collective: C }),
    ).toThrow(/both/);
    const PERIOD = 2000;
    await addGovernor(admin, "RATE", {
      capacity: 5,
      expireMs: 60_000,
      periodMs: PERIOD,
      periodLimit: 3,
      collective: C,
    });
    const info = await governorInfo(clientWorker, "RATE");
    expect(info).toMatchObject({ capacity: 5, periodMs: PERIOD, periodLimit: 3, periodUsed: 0 });
    // the period stream is not a governor of its own
    const names = await listGovernors(worker, C);
    expect(names).toContain("RATE");
    expect(names).not.toContain("RATE_PERIOD");

    const log = join(dir, "starts.log");
    // each child records when it started; the suite's own wall time is not asserted. A shell
    // starts in a millisecond where a node child can take most of a second on a loaded machine.
    const script = `date +%s%3N >> '${log}'`;
    const codes = await Promise.all(
      Array.from({ length: 5 }, (_, i) =>
        runGoverned(i % 2 ? worker : clientWorker, "RATE", "/bin/sh", ["-c", script], {
          collective: C,
          identity: `rate${i}`,
          intervalMs: 50,
          timeoutMs: 30_000,
          stdio: "ignore",
          events: false,
        }),
      ),
    );
    expect(codes).toEqual([0, 0, 0, 0, 0]);
    const starts = readFileSync(log, "utf8")
      .trim()
      .split("\n")
      .map(Number)
      .sort((a, b) => a - b);
    expect(starts).toHaveLength(5);
    const [t0, , t2, t3] = starts as [number, number, number, number, number];
    // three fit in the first period; the fourth waited for the oldest entry to age out
    expect(t2 - t0).toBeLessThan(PERIOD);
    expect(t3 - t0).toBeGreaterThanOrEqual(PERIOD - 250);
    const after = await governorInfo(worker, "RATE");
    expect(after.active).toBe(0);
    expect(after.periodUsed).toBeGreaterThan(0);

    // reset clears the period budget too
    await resetGovernor(admin, "RATE");
    expect((await governorInfo(worker, "RATE")).periodUsed).toBe(0);

    // updating without a period drops the limit
    await addGovernor(admin, "RATE", { capacity: 5, expireMs: 60_000, collective: C });
    const plain = await governorInfo(worker, "RATE");
    expect(plain.periodMs).toBeUndefined();
    expect(plain.periodLimit).toBeUndefined();
  }, 60_000);
});
