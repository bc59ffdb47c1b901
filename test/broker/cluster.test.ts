import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BrokerSupervisor, brokerStatus, serverName, type BrokerStatus } from "../../src/broker/index.js";
import { brokerSettings, loadConfig } from "../../src/core/config/index.js";
import { connectNats, type NatsConnection } from "../../src/core/connector/index.js";
import { loadSeedFile } from "../../src/core/security/index.js";
import { Client } from "../../src/client/index.js";
import { Emulator } from "../../src/apps/emulator/index.js";
import { createDevSetup, type DevSetup } from "../../src/apps/setup/index.js";
import { lineLogger } from "../../src/core/util/index.js";
import { chorusAsync } from "../helpers/cli.js";
import { freePort } from "../helpers/nats.js";

// A 3-broker cluster exactly as `chorus setup dev --brokers 3` writes it (TLS routes
// verified by certificate, JWT auth, clustered JetStream), each broker a real
// nats-server under its BrokerSupervisor; brokers are killed with a real SIGKILL.

const NODES = 1000;
const quiet = pino({ level: "silent" });
const silent = lineLogger(() => undefined);

let dir: string;
let setup: DevSetup;
const brokers: BrokerSupervisor[] = [];

/** Resolves when every broker reports its managed streams in place (R3 needs all three). */
function streamsReady(b: BrokerSupervisor): Promise<void> {
  return new Promise((resolve, reject) => {
    b.once("streams", () => resolve());
    b.once("servicesError", reject);
  });
}

/** The broker's own org_admin credential, connected to the given brokers only. */
async function adminConnection(servers: string[]): Promise<NatsConnection> {
  return connectNats({
    servers,
    name: "cluster test",
    caFile: setup.caFile,
    natsJwt: readFileSync(join(dir, "credentials", "broker.jwt.nats"), "utf8").trim(),
    seedHex: loadSeedFile(join(dir, "credentials", "broker.seed")).seedHex,
    reconnectTimeWaitMs: 200,
    logger: silent,
  });
}

function brokerNamed(name: string | undefined): number {
  const i = brokers.findIndex((b) => serverName(b.settings.identity) === name);
  if (i < 0) throw new Error(`no broker is named ${name}`);
  return i;
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ""}`);
}

/** SIGKILL on the nats-server process itself, then waits for its supervisor to restart it. */
function kill9(i: number): Promise<void> {
  const b = brokers[i] as BrokerSupervisor;
  const pid = b.pid as number;
  expect(pid).toBeGreaterThan(1);
  const back = new Promise<void>((resolve) => b.once("restarted", () => resolve()));
  process.kill(pid, "SIGKILL");
  return back;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "chorus-cluster-"));
  const ports = await Promise.all(Array.from({ length: 6 }, () => freePort()));
  setup = await createDevSetup({
    dir,
    brokers: 3,
    brokerPorts: ports.slice(0, 3),
    peerPorts: ports.slice(3),
    force: true,
  });
  expect(setup.brokerConfigs).toHaveLength(3);
  const settings = setup.brokerConfigs.map((c) => brokerSettings(loadConfig(c)));
  await Promise.all(
    setup.brokerConfigs.map(async (c) => {
      const b = new BrokerSupervisor({
        settings: brokerSettings(loadConfig(c)),
        backoff: { initialMs: 3000, maxMs: 3000 },
        stopGraceMs: 3000,
      });
      brokers.push(b);
      const streams = streamsReady(b);
      await b.start();
      await streams;
    }),
  );
  expect(settings.map((s) => s.peers.length)).toEqual([2, 2, 2]);
}, 60_000);

afterAll(async () => {
  await Promise.all(brokers.map((b) => b.stop()));
  rmSync(dir, { recursive: true, force: true });
}, 30_000);

describe("3-broker cluster", () => {
  it("replicates every managed stream over the three brokers (R3) with one meta leader", async () => {
    const nc = await adminConnection([setup.brokerUrl]);
    try {
      const jsm = await jetstreamManager(nc);
      const info = await jsm.streams.info("CHORIA_EVENTS");
      expect(info.config.num_replicas).toBe(3);
      expect(info.cluster?.leader).toBeTruthy();
      expect(info.cluster?.replicas ?? []).toHaveLength(2);
      const names = brokers.map((b) => serverName(b.settings.identity));
      expect(new Set(names).size).toBe(3);
    } finally {
      await nc.close();
    }
  });

  it("a ping of 1 000 nodes spread over the brokers survives a broker killed during it", async () => {
    const emulators: Emulator[] = [];
    const per = Math.ceil(NODES / 3);
    let client: Client | undefined;
    try {
      for (let i = 0; i < 3; i++) {
        const count = Math.min(per, NODES - i * per);
        // each third of the fleet starts on its own broker and learns the others from it
        const e = Emulator.fromConfigFile(setup.emulatorConfig, {
          nodes: count,
          firstIndex: 1 + i * per,
          servers: [setup.brokerUrls[i] as string],
          logger: quiet,
          workers: 0,
          jobs: false,
        });
        await e.start();
        emulators.push(e);
      }
      // the client sits on broker 1, the one that is killed
      client = await Client.fromConfigFile(setup.clientConfig, {
        servers: [setup.brokerUrl],
        logger: quiet,
      });
      const before = await client.ping({ timeoutMs: 3000 });
      expect(before.replies).toHaveLength(NODES);

      const t0 = performance.now();
      const during = client.ping({ timeoutMs: 3000 });
      await new Promise((r) => setTimeout(r, 20));
      const restarted = kill9(0);
      const duringResult = await during;
      const duringMs = performance.now() - t0;
      // The in-flight replies through the dead broker may be lost; the ping ends on time.
      expect(duringMs).toBeLessThan(8000);
      expect(duringResult.replies.length).toBeLessThanOrEqual(NODES);

      // While broker 1 is still down, the nodes that were on it and the client are on
      // the other two, and every node answers a ping started after the kill.
      const after = await waitFor("all nodes answering after the kill", async () => {
        const r = await (client as Client).ping({ timeoutMs: 2000 });
        return r.replies.length === NODES ? r : undefined;
      });
      expect(new Set(after.replies.map((r) => r.sender)).size).toBe(NODES);
      await restarted;
      const again = await waitFor("all nodes answering after the restart", async () => {
        const r = await (client as Client).ping({ timeoutMs: 2000 });
        return r.replies.length === NODES ? r : undefined;
      });
      expect(again.replies).toHaveLength(NODES);
    } finally {
      await client?.close();
      await Promise.all(emulators.map((e) => e.stop()));
    }
  }, 90_000);

  it("an acked JetStream publish burst survives killing the stream leader: nothing lost, nothing twice", async () => {
    const STREAM = "BURST";
    const TOTAL = 5000;
    const setupNc = await adminConnection(setup.brokerUrls);
    let nc: NatsConnection | undefined;
    try {
      const jsm = await jetstreamManager(setupNc);
      await jsm.streams.add({ name: STREAM, subjects: ["chorus.test.burst.>"], num_replicas: 3 });
      const leader = (await jsm.streams.info(STREAM)).cluster?.leader;
      const victim = brokerNamed(leader);
      // the publisher is on the leader's broker, so the kill cuts its connection too
      nc = await adminConnection([setup.brokerUrls[victim] as string]);
      const js = jetstream(nc, { timeout: 2000 });
      const acked = new Map<string, number>();
      let failures = 0;
      let killed: Promise<void> | undefined;
      const publishOne = async (i: number): Promise<void> => {
        const id = `m-${i}`;
        // A client retries an unacked publish with the same Nats-Msg-Id; the stream
        // keeps one copy whatever happened to the first attempt.
        for (let attempt = 0; attempt < 30; attempt++) {
          try {
            const ack = await js.publish(`chorus.test.burst.${i % 10}`, id, { msgID: id });
            acked.set(id, ack.seq);
            return;
          } catch {
            failures++;
            await new Promise((r) => setTimeout(r, 200));
          }
        }
      };
      const WINDOW = 64;
      let next = 0;
      await Promise.all(
        Array.from({ length: WINDOW }, async () => {
          while (next < TOTAL) {
            const i = next++;
            if (i === 1000) killed = kill9(victim);
            await publishOne(i);
          }
        }),
      );
      expect(killed).toBeDefined();
      expect(failures).toBeGreaterThan(0); // the kill really hit publishes in flight
      expect(acked.size).toBe(TOTAL);

      // Read everything back from the surviving replicas (the killed leader may still be down).
      const seen = new Map<string, number[]>();
      const admin = jsm as JetStreamManager;
      const state = await waitFor("the stream's new leader", async () => {
        const info = await admin.streams.info(STREAM);
        return info.cluster?.leader ? info.state : undefined;
      });
      // creating the reader needs a JetStream meta leader too: the killed broker may have
      // been it, and the election can outlast one API timeout under load
      const c = await waitFor("a reader on the stream", () => jetstream(setupNc).consumers.get(STREAM));
      const msgs = await c.fetch({ max_messages: state.messages, expires: 10_000 });
      for await (const m of msgs) {
        const id = m.string();
        seen.set(id, [...(seen.get(id) ?? []), m.seq]);
        if (seen.size === state.messages && m.info.pending === 0) break;
      }
      const twice = [...seen].filter(([, seqs]) => seqs.length > 1);
      expect(twice).toEqual([]);
      const missing = [...acked].filter(([id, seq]) => !seen.get(id)?.includes(seq));
      expect(missing).toEqual([]);
      expect(state.messages).toBe(TOTAL);
      await killed;
    } finally {
      await nc?.close();
      await setupNc.close();
    }
  }, 90_000);

  it("chorus broker status shows peers, leaders and lag, and a killed peer (exit 1)", async () => {
    // the CLI finds the monitoring port the running supervisor recorded
    const ok = await chorusAsync([
      "broker",
      "status",
      "--config",
      setup.brokerConfigs[0] as string,
      "--json",
    ]);
    expect(ok.stderr).toBe("");
    expect(ok.status).toBe(0);
    const healthy = JSON.parse(ok.stdout) as BrokerStatus;
    expect(healthy.serverName).toBe("broker-1.chorus.local");
    expect(healthy.cluster).toBe("CHORUS");
    expect(new Set(healthy.routes.map((r) => r.remoteId)).size).toBe(2);
    expect(healthy.routes.every((r) => r.rtt !== "")).toBe(true);
    expect(healthy.meta?.clusterSize).toBe(3);
    expect(healthy.meta?.leader).toMatch(/^broker-[123]\.chorus\.local$/);
    const events = healthy.streams.find((x) => x.name === "CHORIA_EVENTS");
    expect(events?.leader).toMatch(/^broker-[123]\.chorus\.local$/);
    expect(events?.replicas.length).toBe(2);
    // asked of the leader or of a follower, the stream's peers are the same three brokers:
    // the leader, and two followers that do not include it (one may be the broker asked)
    const all = ["broker-1.chorus.local", "broker-2.chorus.local", "broker-3.chorus.local"];
    for (const b of brokers) {
      const st = await brokerStatus(b?.monitorUrl as string, 2);
      const ev = st.streams.find((x) => x.name === "CHORIA_EVENTS");
      const names = ev?.replicas.map((r) => r.name) ?? [];
      expect(names).not.toContain(ev?.leader);
      expect([ev?.leader, ...names].sort()).toEqual(all);
      expect(ev?.replicas.filter((r) => r.self).map((r) => r.name)).toEqual(
        st.serverName === ev?.leader ? [] : [st.serverName],
      );
      expect(st.meta?.replicas.map((r) => r.name)).not.toContain(st.meta?.leader);
    }
    expect(healthy.problems).toEqual([]);
    const text = await chorusAsync(["broker", "status", "--config", setup.brokerConfigs[0] as string]);
    expect(text.stdout).toMatch(/peers: 2 of 2 connected/);
    expect(text.stdout).toMatch(/JetStream meta leader: broker-/);
    expect(text.stdout).toMatch(/status: OK/);

    const restarted = kill9(2);
    const down = await waitFor("broker 3 missing from broker 1's status", async () => {
      const st = await brokerStatus(brokers[0]?.monitorUrl as string, 2);
      return st.problems.length > 0 ? st : undefined;
    });
    expect(down.problems).toContain("1 of 2 configured peers not connected");
    const cli = await chorusAsync(["broker", "status", "--config", setup.brokerConfigs[0] as string]);
    if (brokers[2]?.pid === undefined) {
      expect(cli.status).toBe(1);
      expect(cli.stdout).toMatch(/peers: 1 of 2 connected/);
    }
    await restarted;
    // once back, the peer rejoins and every stream has its leader and replicas again
    await waitFor("a healthy cluster again", async () => {
      const st = await brokerStatus(brokers[0]?.monitorUrl as string, 2);
      return st.problems.length === 0 && st.routes.length >= 2 ? st : undefined;
    });
  }, 60_000);
});
