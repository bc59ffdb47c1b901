import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  ReceiverConfigError,
  loadReceiverConfig,
  parseReceiverConfig,
  parseStoreUrl,
} from "../../../src/services/receiver/index.js";
import { chorus } from "../../helpers/cli.js";

const dir = mkdtempSync(join(tmpdir(), "chorus-receiver-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("receiver config", () => {
  it("fills Choria-ish defaults, paths from the config's folder", () => {
    const file = join(dir, "receiver.yaml");
    writeFileSync(file, "choria_config: client.conf\n");
    const c = loadReceiverConfig(file);
    expect(c).toMatchObject({
      choria_config: join(dir, "client.conf"),
      store: { kind: "sqlite", path: join(dir, "receiver.db") },
      mode: "stream",
      streamMaxAgeMs: 24 * 3_600_000,
      consumer: "CHORUS_RECEIVER",
      batch: 500,
      flushIntervalMs: 50,
      ackWaitMs: 30_000,
      max_ack_pending: 20_000,
      verify_signatures: false,
      http_listen: { host: "127.0.0.1", port: 8091 },
      loglevel: "info",
    });
    expect(c.monitor_port).toBeUndefined();
  });

  it("takes every key", () => {
    const c = parseReceiverConfig(
      {
        choria_config: "/etc/choria/client.conf",
        store: "postgres://chorus@db.example.net/replies",
        mode: "direct",
        stream_max_age: "2h",
        stream_replicas: 3,
        consumer: "R1",
        batch: 1000,
        flush_interval: "10ms",
        ack_wait: "1m",
        max_ack_pending: 5000,
        verify_signatures: true,
        http_listen: "",
        monitor_port: 9100,
        loglevel: "debug",
        logfile: "/var/log/receiver.log",
      },
      "/etc/chorus/receiver.yaml",
    );
    expect(c).toMatchObject({
      store: { kind: "postgres", url: "postgres://chorus@db.example.net/replies" },
      mode: "direct",
      streamMaxAgeMs: 7_200_000,
      stream_replicas: 3,
      consumer: "R1",
      batch: 1000,
      flushIntervalMs: 10,
      ackWaitMs: 60_000,
      max_ack_pending: 5000,
      verify_signatures: true,
      monitor_port: 9100,
      loglevel: "debug",
      logfile: "/var/log/receiver.log",
    });
    expect(c.http_listen).toBeUndefined();
  });

  it("reads the store URL forms", () => {
    expect(parseStoreUrl("sqlite:data/r.db", "/srv")).toEqual({ kind: "sqlite", path: "/srv/data/r.db" });
    expect(parseStoreUrl("sqlite:///var/lib/r.db", "/srv")).toEqual({
      kind: "sqlite",
      path: "/var/lib/r.db",
    });
    expect(parseStoreUrl("postgresql://u@h:5433/d", "/")).toEqual({
      kind: "postgres",
      url: "postgresql://u@h:5433/d",
    });
    expect(parseStoreUrl("mysql://u@h/d", "/")).toBeUndefined();
    expect(parseStoreUrl("sqlite:", "/")).toBeUndefined();
  });

  it.each([
    [{}, /choria_config: is required/],
    [{ choria_config: "c", store: "mysql://x" }, /store: "mysql:\/\/x" is not sqlite:PATH/],
    [{ choria_config: "c", mode: "pull" }, /mode: must be "stream" or "direct"/],
    [{ choria_config: "c", batch: 0 }, /batch: must be a whole number from 1 to 10000/],
    [{ choria_config: "c", batch: "many" }, /batch: must be a whole number/],
    [{ choria_config: "c", flush_interval: "soon" }, /flush_interval: "soon" is not a duration/],
    [{ choria_config: "c", ack_wait: "10ms" }, /ack_wait: must be at least 1000 ms/],
    [{ choria_config: "c", stream_max_age: "10s" }, /stream_max_age: must be at least/],
    [{ choria_config: "c", consumer: "a.b" }, /consumer: must be 1 to 64 letters/],
    [{ choria_config: "c", http_listen: "localhost" }, /http_listen: "localhost" is not host:port/],
    [{ choria_config: "c", monitor_port: 70000 }, /monitor_port: must be a whole number from 0 to 65535/],
    [{ choria_config: "c", loglevel: "loud" }, /loglevel: must be one of/],
    [{ choria_config: "c", verify_signatures: "yes" }, /verify_signatures: must be true or false/],
    [{ choria_config: "c", brokers: "x" }, /brokers: is not a receiver setting/],
  ])("refuses %j naming the key", (raw, why) => {
    expect(() => parseReceiverConfig(raw, "r.yaml")).toThrow(ReceiverConfigError);
    expect(() => parseReceiverConfig(raw, "r.yaml")).toThrow(why);
    expect(() => parseReceiverConfig(raw, "r.yaml")).toThrow(/^r\.yaml: /);
  });

  it("says which file cannot be read or parsed", () => {
    expect(() => loadReceiverConfig(join(dir, "missing.yaml"))).toThrow(/cannot read .*missing\.yaml/);
    const bad = join(dir, "bad.yaml");
    writeFileSync(bad, "choria_config: [unclosed\n");
    expect(() => loadReceiverConfig(bad)).toThrow(/bad\.yaml: cannot parse/);
  });

  it("`chorus receiver run` reports a config error in one line, exit 1", () => {
    const file = join(dir, "cli.yaml");
    writeFileSync(file, "choria_config: client.conf\nbatch: -1\n");
    const r = chorus(["receiver", "run", "--config", file]);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(`chorus receiver: ${file}: batch: must be a whole number from 1 to 10000\n`);
    const missing = join(dir, "nochoria.yaml");
    writeFileSync(missing, "choria_config: nope.conf\nhttp_listen: ''\n");
    const m = chorus(["receiver", "run", "--config", missing]);
    expect(m.status).toBe(1);
    expect(m.stderr).toMatch(/choria_config: .*nope\.conf does not exist/);
  });
});
