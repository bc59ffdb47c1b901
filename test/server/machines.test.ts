import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client } from "../../src/client/index.js";
import { buildFilter } from "../../src/core/filter/index.js";
import { machineSettings, parseConfig } from "../../src/core/config/index.js";
import {
  Server,
  ServerMachineHost,
  serverMachineOptions,
  type MachineStateInfo,
} from "../../src/server/index.js";
import { freePort, natsServerBinary } from "../helpers/nats.js";
import { COLLECTIVE, makeFixture, quietLogger, sleep, type Fixture } from "./helpers.js";

/** A nats-server with JetStream that can be stopped and started again on the same port and store. */
class Broker {
  proc: ChildProcess | undefined;
  constructor(
    readonly dir: string,
    readonly port: number,
  ) {}
  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }
  async start(): Promise<void> {
    const conf = join(this.dir, "nats.conf");
    writeFileSync(
      conf,
      `listen: "127.0.0.1:${this.port}"\njetstream { store_dir: "${join(this.dir, "js")}" }\n`,
    );
    const proc = spawn(natsServerBinary(), ["-c", conf], { stdio: "ignore" });
    this.proc = proc;
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        const nc = await connect({ servers: this.url, reconnect: false });
        await nc.close();
        return;
      } catch (err) {
        if (Date.now() > deadline || proc.exitCode !== null) throw err;
        await sleep(50);
      }
    }
  }
  async stop(): Promise<void> {
    const p = this.proc;
    this.proc = undefined;
    if (!p || p.exitCode !== null) return;
    const done = new Promise((r) => p.once("exit", r));
    p.kill("SIGTERM");
    await done;
  }
}

async function waitFor<T>(what: string, fn: () => T | undefined | false, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** A machine whose exec watcher follows a flag file: present / absent. */
function flagMachine(flag: string): string {
  return `name: flag
version: 1.0.0
initial_state: unknown
transitions:
  - { name: present, from: [unknown, absent], destination: present }
  - { name: absent, from: [unknown, present], destination: absent }
watchers:
  - name: probe
    type: exec
    interval: 1s
    success_transition: present
    fail_transition: absent
    properties:
      command: test -f ${flag}
`;
}

/** A machine moved only by hand (its watcher runs in a state it never enters). */
const LIGHT = `name: light
version: 1.2.3
initial_state: off
transitions:
  - { name: switch_on, from: ["off"], destination: "on" }
  - { name: switch_off, from: ["on"], destination: "off" }
  - { name: park, from: [parked], destination: parked }
watchers:
  - name: idle
    type: exec
    state_match: [parked]
    properties:
      command: "true"
`;

/** go-choria's Scout check machine with a plugin that exits `code`. */
function scoutCheck(name: string, code: number): string {
  const states = "[UNKNOWN, OK, WARNING, CRITICAL]";
  const any = "[UNKNOWN, OK, WARNING, CRITICAL, FORCE_CHECK]";
  return `name: ${name}
version: 1.0.0
initial_state: UNKNOWN
transitions:
${["UNKNOWN", "OK", "WARNING", "CRITICAL"].map((s) => `  - { name: ${s}, from: ${any}, destination: ${s} }`).join("\n")}
  - { name: FORCE_CHECK, from: ${states}, destination: FORCE_CHECK }
  - { name: MAINTENANCE, from: ${any}, destination: MAINTENANCE }
  - { name: RESUME, from: [MAINTENANCE], destination: FORCE_CHECK }
watchers:
  - name: check
    type: nagios
    interval: 1s
    state_match: [UNKNOWN, OK, WARNING, CRITICAL, FORCE_CHECK]
    properties:
      plugin: "exit ${code}"
`;
}

function writeMachine(store: string, dir: string, yaml: string): void {
  mkdirSync(join(store, dir), { recursive: true });
  writeFileSync(join(store, dir, "machine.yaml"), yaml);
}

let fx: Fixture;
let broker: Broker;
let base: string;
const servers: Server[] = [];

beforeAll(async () => {
  fx = makeFixture();
  base = mkdtempSync(join(tmpdir(), "chorus-machines-"));
  broker = new Broker(base, await freePort());
  await broker.start();
  const nc = await connect({ servers: broker.url });
  await (await jetstreamManager(nc)).streams.add({ name: "CHORIA_MACHINE", subjects: ["choria.machine.>"] });
  await nc.close();
});

afterAll(async () => {
  await Promise.allSettled(servers.map((s) => s.stop()));
  await broker.stop();
  rmSync(base, { recursive: true, force: true });
  fx.cleanup();
});

async function startServer(identity: string, store: string, statsPort?: number): Promise<Server> {
  const server = new Server({
    identity,
    collectives: [COLLECTIVE],
    security: fx.serverSecurity(identity),
    servers: [broker.url],
    facts: { role: "test" },
    logger: process.env.DEBUG_MACHINES ? pino({ level: "debug" }) : quietLogger,
    machines: { store, pollMs: 200 },
    ...(statsPort !== undefined && { statsPort }),
  });
  servers.push(server);
  await server.start();
  return server;
}

function client(): Client {
  return new Client({ security: fx.clientSecurity, servers: [broker.url], collective: COLLECTIVE });
}

/** Transition events stored in CHORIA_MACHINE after sequence `after`, oldest first. */
async function storedTransitions(after = 0): Promise<{ seq: number; data: Record<string, unknown> }[]> {
  const nc: NatsConnection = await connect({ servers: broker.url });
  try {
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info("CHORIA_MACHINE");
    const out: { seq: number; data: Record<string, unknown> }[] = [];
    for (let seq = Math.max(after + 1, info.state.first_seq); seq <= info.state.last_seq; seq++) {
      const m = await jsm.streams.getMessage("CHORIA_MACHINE", { seq }).catch(() => null);
      if (!m || m.subject !== "choria.machine.transition") continue;
      const ev = m.json<{ type: string; data: Record<string, unknown> }>();
      expect(ev.type).toBe("io.choria.machine.v1.transition");
      out.push({ seq, data: ev.data });
    }
    return out;
  } finally {
    await nc.close();
  }
}

describe("a server with a machine store", () => {
  let server: Server;
  let store: string;

  beforeAll(async () => {
    store = join(base, "store1");
    writeMachine(store, "light", LIGHT);
    writeMachine(store, "broken", "name: broken\nversion: nope\n");
    server = await startServer("machines1.example", store, 0);
    await waitFor("light running", () => server.machines?.states().find((m) => m.name === "light"));
  });

  it("lists its machines with choria_util#machine_states and reports the broken one", async () => {
    const c = client();
    try {
      const res = await c.request(
        "choria_util",
        "machine_states",
        {},
        { timeoutMs: 2000, discoveryTimeoutMs: 500 },
      );
      expect(res.replies).toHaveLength(1);
      const r = res.replies[0]!;
      expect(r.statuscode).toBe(0);
      const data = r.data as {
        machine_names: string[];
        machine_ids: string[];
        states: Record<string, MachineStateInfo>;
        problems: { path: string; reason: string }[];
      };
      expect(data.machine_names).toEqual(["light 1.2.3"]);
      const id = data.machine_ids[0]!;
      expect(data.states[id]).toMatchObject({
        name: "light",
        version: "1.2.3",
        state: "off",
        path: join(store, "light"),
        id,
        available_transitions: ["switch_on"],
        scout: false,
      });
      expect(Math.abs(data.states[id]!.start_time - Date.now() / 1000)).toBeLessThan(60);
      // the broken machine does not stop the others and says what is wrong
      expect(data.problems).toHaveLength(1);
      expect(data.problems[0]!.path).toContain(join(store, "broken"));
      expect(data.problems[0]!.reason).toMatch(/initial_state: is required/);

      const one = await c.request(
        "choria_util",
        "machine_state",
        { name: "light" },
        { timeoutMs: 2000, discoveryTimeoutMs: 500 },
      );
      expect(one.replies[0]!.data).toMatchObject({ name: "light", state: "off", id });
      const none = await c.request(
        "choria_util",
        "machine_state",
        { name: "nothere" },
        { timeoutMs: 2000, discoveryTimeoutMs: 500 },
      );
      expect(none.replies[0]!.statuscode).toBe(1);
      expect(none.replies[0]!.statusmsg).toBe("Could not find a matching machine");
    } finally {
      await c.close();
    }
  });

  it("moves a machine with choria_util#machine_transition and publishes the transition CloudEvent", async () => {
    const before = await storedTransitions();
    const after = before.length > 0 ? before[before.length - 1]!.seq : 0;
    const c = client();
    try {
      const res = await c.request(
        "choria_util",
        "machine_transition",
        { name: "light", transition: "switch_on" },
        { timeoutMs: 2000, discoveryTimeoutMs: 500 },
      );
      expect(res.replies[0]).toMatchObject({ statuscode: 0, data: { success: true } });
      expect(server.machines!.states().find((m) => m.name === "light")!.state).toBe("on");
      const got = await waitForAsync(async () => {
        const t = await storedTransitions(after);
        return t.length > 0 ? t : undefined;
      });
      expect(got[0]!.data).toMatchObject({
        identity: "machines1.example",
        machine: "light",
        version: "1.2.3",
        transition: "switch_on",
        from_state: "off",
        to_state: "on",
      });
      // not valid from "on": refused, and the machine stays where it is
      const bad = await c.request(
        "choria_util",
        "machine_transition",
        { name: "light", transition: "switch_on" },
        { timeoutMs: 2000, discoveryTimeoutMs: 500 },
      );
      expect(bad.replies[0]).toMatchObject({ statuscode: 1, data: { success: false } });
      expect(bad.replies[0]!.statusmsg).toMatch(/switch_on is not valid while in on state/);
    } finally {
      await c.close();
    }
  });

  it("fills rpcutil#inventory machines and the choria data plugin", async () => {
    const c = client();
    try {
      const inv = await c.request("rpcutil", "inventory", {}, { timeoutMs: 2000, discoveryTimeoutMs: 500 });
      expect(inv.replies[0]!.data).toMatchObject({
        machines: [{ name: "light", version: "1.2.3", state: "on" }],
      });
      const d = await c.request(
        "rpcutil",
        "get_data",
        { source: "choria" },
        { timeoutMs: 2000, discoveryTimeoutMs: 500 },
      );
      expect(d.replies[0]!.data).toMatchObject({ machines: ["light"], machines_count: 1 });
    } finally {
      await c.close();
    }
  });

  it("exports machine counts, transitions and problems to Prometheus", async () => {
    const text = await (await fetch(`http://127.0.0.1:${server.statsPort!}/metrics`)).text();
    expect(text).toMatch(/^chorus_machines_running 1$/m);
    expect(text).toMatch(/^chorus_machines_problems 1$/m);
    expect(text).toMatch(/^chorus_machine_transitions\{machine="light"\} 1$/m);
    expect(text).toMatch(/^chorus_machine_events_sent [1-9]\d*$/m);
  });
});

async function waitForAsync<T>(fn: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error("timed out");
    await sleep(100);
  }
}

describe("Scout", () => {
  let ok: Server;
  let bad: Server;

  beforeAll(async () => {
    const s1 = join(base, "scout-ok");
    const s2 = join(base, "scout-bad");
    writeMachine(s1, "disk", scoutCheck("disk", 0));
    writeMachine(s2, "disk", scoutCheck("disk", 2));
    [ok, bad] = await Promise.all([startServer("ok.example", s1), startServer("bad.example", s2)]);
    // both checks have run once
    await waitFor("checks ran", () =>
      [ok, bad].every((s) => ["OK", "CRITICAL"].includes(s.machines?.states()[0]?.state ?? "")),
    );
  });

  const opts = (identity: string) => ({
    timeoutMs: 3000,
    discoveryTimeoutMs: 500,
    filter: { identity: [identity] },
  });

  it("lists checks with their nagios state", async () => {
    const c = client();
    try {
      const res = await c.request("scout", "checks", {}, opts("bad.example"));
      const checks = res.replies[0]!.data.checks as Record<string, unknown>[];
      expect(checks).toHaveLength(1);
      expect(checks[0]).toMatchObject({ name: "disk", state: "CRITICAL", version: "1.0.0" });
      expect(checks[0]!.status).toMatchObject({ status: "CRITICAL" });
    } finally {
      await c.close();
    }
  });

  it('discovers only the node whose check fails with scout("disk").state', async () => {
    const c = client();
    try {
      // among the nodes with the check (a node without it has no state, and "!=" holds there, as in go-choria)
      const failing = await c.discover({
        timeoutMs: 1000,
        filter: buildFilter({
          identity: ["/^(ok|bad)\\.example$/"],
          compound: ['scout("disk").state != "OK"'],
        }),
      });
      expect(failing).toEqual(["bad.example"]);
      // across the whole fleet
      const critical = await c.discover({
        timeoutMs: 1000,
        filter: buildFilter({ compound: ['scout("disk").state == "CRITICAL"'] }),
      });
      expect(critical).toEqual(["bad.example"]);
      const healthy = await c.discover({
        timeoutMs: 1000,
        filter: buildFilter({ compound: ['scout("disk").state == "OK"'] }),
      });
      expect(healthy).toEqual(["ok.example"]);
    } finally {
      await c.close();
    }
  });

  it("maintenance, resume and trigger move the check machine", async () => {
    const c = client();
    const state = () => ok.machines!.states()[0]!.state;
    try {
      const m = await c.request("scout", "maintenance", { checks: ["disk"] }, opts("ok.example"));
      expect(m.replies[0]).toMatchObject({
        statuscode: 0,
        data: { transitioned: ["disk"], failed: [], skipped: [] },
      });
      expect(state()).toBe("MAINTENANCE");
      // a trigger during maintenance is skipped; an unknown check fails the request
      const t = await c.request("scout", "trigger", { checks: ["disk", "nope"] }, opts("ok.example"));
      expect(t.replies[0]).toMatchObject({
        statuscode: 1,
        data: { transitioned: [], failed: ["nope"], skipped: ["disk"] },
      });
      const r = await c.request("scout", "resume", {}, opts("ok.example"));
      expect(r.replies[0]!.data).toMatchObject({ transitioned: ["disk"] });
      // RESUME goes to FORCE_CHECK, whose check runs at once and moves it back to OK
      await waitFor("OK after resume", () => state() === "OK");
      const tr = await c.request("scout", "trigger", {}, opts("ok.example"));
      expect(tr.replies[0]!.data).toMatchObject({ transitioned: ["disk"] });
      await waitFor("OK after trigger", () => state() === "OK");
      const g = await c.request("scout", "goss_validate", { yaml_rules: "x" }, opts("ok.example"));
      expect(g.replies[0]!.statuscode).toBe(1);
      expect(g.replies[0]!.statusmsg).toMatch(/goss is not supported/);
    } finally {
      await c.close();
    }
  });
});

describe("a node whose broker goes away", () => {
  it("keeps running its machines and sends the transitions, in order, when the broker returns", async () => {
    const store = join(base, "offline");
    const flag = join(base, "offline.flag");
    writeMachine(store, "flag", flagMachine(flag));
    const server = await startServer("offline.example", store);
    const state = () => server.machines!.states()[0]?.state;
    await waitFor("absent", () => state() === "absent");
    // the first transition (unknown -> absent) reached the stream
    const first = await waitForAsync(async () => {
      const t = (await storedTransitions()).filter((e) => e.data.identity === "offline.example");
      return t.length > 0 ? t : undefined;
    });
    const after = first[first.length - 1]!.seq;

    await broker.stop();
    const local: string[] = [];
    writeFileSync(flag, "");
    await waitFor("present while offline", () => state() === "present");
    local.push("present");
    rmSync(flag);
    await waitFor("absent while offline", () => state() === "absent");
    local.push("absent");
    writeFileSync(flag, "");
    await waitFor("present again while offline", () => state() === "present");
    local.push("present");
    expect(server.machines!.events.stats.queued).toBeGreaterThanOrEqual(3);

    await broker.start();
    const got = await waitForAsync(async () => {
      const t = (await storedTransitions(after)).filter((e) => e.data.identity === "offline.example");
      return t.length >= 3 ? t : undefined;
    }, 20_000);
    expect(got.map((e) => e.data.transition)).toEqual(local);
    expect(got.map((e) => `${String(e.data.from_state)}>${String(e.data.to_state)}`)).toEqual([
      "absent>present",
      "present>absent",
      "absent>present",
    ]);
    expect(server.machines!.events.stats).toMatchObject({ queued: 0, dropped: 0 });
  }, 40_000);
});

describe("configuration", () => {
  it("reads go-choria's machine keys with their defaults and refuses bad ones, naming the key", () => {
    const cfg = parseConfig(
      [
        "plugin.choria.machine.store = machines",
        "plugin.machines.download = true",
        "plugin.machines.signing_key = " + "ab".repeat(32),
        "plugin.machines.poll_interval = 30s",
        "plugin.scout.agent_disabled = true",
      ].join("\n"),
      "/etc/chorus/server.conf",
    );
    const m = machineSettings(cfg);
    expect(m).toMatchObject({
      store: "/etc/chorus/machines",
      download: true,
      bucket: "CHORIA_PLUGINS",
      key: "plugins",
      purge: true,
      pollIntervalMs: 30_000,
      specSigningKey: "ab".repeat(32),
      scoutAgentDisabled: true,
      maxQueuedEvents: 10_000,
    });
    expect(serverMachineOptions(m, "/etc/chorus/node.jwt")).toMatchObject({
      store: "/etc/chorus/machines",
      scoutAgent: false,
      tokenFile: "/etc/chorus/node.jwt",
      download: { bucket: "CHORIA_PLUGINS", key: "plugins", pollIntervalMs: 30_000, purge: true },
    });
    expect(serverMachineOptions(machineSettings(parseConfig("", "/x.conf")))).toBeUndefined();
    expect(() =>
      machineSettings(parseConfig("plugin.choria.machine.signing_key = nothex", "/etc/s.conf")),
    ).toThrow(/s\.conf:1: plugin\.choria\.machine\.signing_key: "nothex" is not a hex ed25519 public key/);
  });

  it("plugin.machines.download runs the machines manager, which waits for the broker without failing", async () => {
    const store = join(base, "download");
    mkdirSync(store, { recursive: true });
    const host = new ServerMachineHost({
      identity: "dl.example",
      collective: COLLECTIVE,
      directory: store,
      log: quietLogger,
      facts: () => ({}),
      download: { bucket: "CHORIA_PLUGINS", key: "plugins", pollIntervalMs: 60_000, purge: true },
    });
    await host.start();
    try {
      expect(host.states()).toEqual([
        expect.objectContaining({ name: "machines_manager", state: "MANAGE", scout: false }),
      ]);
      expect(host.problems()).toEqual([]);
    } finally {
      await host.stop(0);
    }
  });
});
