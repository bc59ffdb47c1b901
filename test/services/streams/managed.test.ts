import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  LEADER_ELECTION_BUCKET,
  ensureManagedStreams,
  managedStreamConfigs,
  nanos,
} from "../../../src/services/streams/index.js";
import { startSecureFleet, type SecureFleet } from "../../helpers/fleet.js";
import { connectAs } from "../lifecycle/connect.js";

describe("managed stream definitions", () => {
  it("has go-choria's streams, subjects and default retention", () => {
    const byName = Object.fromEntries(managedStreamConfigs().map((c) => [c.name, c]));
    expect(byName.CHORIA_EVENTS?.subjects).toEqual(["choria.lifecycle.>"]);
    expect(byName.CHORIA_EVENTS?.max_age).toBe(nanos(24 * 3_600_000));
    expect(byName.CHORIA_MACHINE?.subjects).toEqual(["choria.machine.>"]);
    expect(byName.CHORIA_STREAM_ADVISORIES?.max_age).toBe(nanos(168 * 3_600_000));
    expect(byName.KV_CHORIA_LEADER_ELECTION?.subjects).toEqual([`$KV.${LEADER_ELECTION_BUCKET}.>`]);
    expect(byName.KV_CHORIA_LEADER_ELECTION?.max_age).toBe(nanos(60_000));
    expect(byName.KV_CHORIA_LEADER_ELECTION?.max_msgs_per_subject).toBe(1);
  });

  it("resolves replicas -1 to the peer count and refuses silly election TTLs", () => {
    const three = managedStreamConfigs({ peers: 3, eventReplicas: -1, machineReplicas: 1 });
    expect(three.find((c) => c.name === "CHORIA_EVENTS")?.num_replicas).toBe(3);
    expect(three.find((c) => c.name === "CHORIA_MACHINE")?.num_replicas).toBe(1);
    expect(() => managedStreamConfigs({ leaderElectionTtlMs: 500 })).toThrow(/between 1s and 1h/);
    expect(() => managedStreamConfigs({ leaderElectionTtlMs: 2 * 3_600_000 })).toThrow(/between 1s and 1h/);
  });
});

describe("managed streams in a JetStream broker", () => {
  let fleet: SecureFleet;
  beforeAll(async () => {
    fleet = await startSecureFleet({
      brokerConfig: [
        "plugin.choria.network.stream.event_retention = 2h",
        "plugin.choria.network.stream.leader_election_ttl = 30s",
      ].join("\n"),
    });
  }, 60_000);
  afterAll(async () => fleet?.stop());

  it("creates them at broker start with retention from config", async () => {
    const nc = await connectAs(fleet.setup, fleet.setup.client);
    try {
      const jsm = await jetstreamManager(nc);
      const events = await jsm.streams.info("CHORIA_EVENTS");
      expect(events.config.subjects).toEqual(["choria.lifecycle.>"]);
      expect(events.config.max_age).toBe(nanos(2 * 3_600_000));
      expect((await jsm.streams.info("CHORIA_MACHINE")).config.max_age).toBe(nanos(24 * 3_600_000));
      const adv = await jsm.streams.info("CHORIA_STREAM_ADVISORIES");
      expect(adv.config.subjects).toEqual(["$JS.EVENT.ADVISORY.>"]);
      const le = await jsm.streams.info("KV_CHORIA_LEADER_ELECTION");
      expect(le.config.max_age).toBe(nanos(30_000));
    } finally {
      await nc.close();
    }
  });

  it("puts drifted settings back and leaves matching ones alone", async () => {
    const nc = await connectAs(fleet.setup, "broker");
    try {
      const first = await ensureManagedStreams(nc, {
        eventRetentionMs: 3_600_000,
        leaderElectionTtlMs: 30_000,
      });
      expect(first.find((r) => r.name === "CHORIA_EVENTS")?.action).toBe("updated");
      expect(first.find((r) => r.name === "KV_CHORIA_LEADER_ELECTION")?.action).toBe("unchanged");
      const jsm = await jetstreamManager(nc);
      expect((await jsm.streams.info("CHORIA_EVENTS")).config.max_age).toBe(nanos(3_600_000));
      const again = await ensureManagedStreams(nc, {
        eventRetentionMs: 3_600_000,
        leaderElectionTtlMs: 30_000,
      });
      expect(again.every((r) => r.action === "unchanged")).toBe(true);
    } finally {
      await nc.close();
    }
  });

  it("lets only streams_admin change streams", async () => {
    const nc = await connectAs(fleet.setup, fleet.setup.client);
    try {
      const jsm = await jetstreamManager(nc);
      await expect(jsm.streams.delete("CHORIA_EVENTS")).rejects.toThrow();
      expect((await jsm.streams.info("CHORIA_EVENTS")).config.name).toBe("CHORIA_EVENTS");
    } finally {
      await nc.close();
    }
  });

  it("the election stream works as the CHORIA_LEADER_ELECTION KV bucket", async () => {
    const nc = await connectAs(fleet.setup, "broker");
    try {
      const kv = await new Kvm(nc).open(LEADER_ELECTION_BUCKET);
      const rev = await kv.create("test-election", "candidate-a");
      await expect(kv.create("test-election", "candidate-b")).rejects.toThrow();
      expect((await kv.get("test-election"))?.string()).toBe("candidate-a");
      await kv.update("test-election", "candidate-a", rev);
      expect((await kv.status()).ttl).toBe(30_000);
    } finally {
      await nc.close();
    }
  });

  it("checks the streams again after nats-server is restarted", async () => {
    const checked = new Promise<string[]>((resolve) =>
      fleet.broker.once("streams", (r) => resolve(r.map((x) => `${x.name}:${x.action}`))),
    );
    process.kill(fleet.broker.pid as number, "SIGKILL");
    const result = await checked;
    expect(result).toContain("CHORIA_EVENTS:updated"); // the earlier test shortened its retention
    expect(result).toContain("KV_CHORIA_LEADER_ELECTION:unchanged");
  }, 30_000);
});
