import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it, vi } from "vitest";
import {
  LIFECYCLE_TYPES,
  LifecycleReporter,
  LifecycleTally,
  decodeLifecycleEvent,
  encodeLifecycleEvent,
  identityMatcher,
  lifecycleSubject,
  lifecycleWatchSubject,
  newLifecycleEvent,
  type LifecycleType,
} from "../../../src/services/lifecycle/index.js";

const fields = {
  identity: "n1.example.net",
  component: "server",
  version: "1.2.3",
  newVersion: "1.2.4",
  governor: "PUPPET",
  sequence: 7,
};

describe("lifecycle events", () => {
  it("carry what the lifecycle schemas require", () => {
    for (const type of ["alive", "provisioned", "shutdown", "startup", "upgraded"] as LifecycleType[]) {
      const schema = JSON.parse(
        readFileSync(join(import.meta.dirname, `../../../schemas/choria/lifecycle/v1/${type}.json`), "utf8"),
      ) as { required: string[]; properties: { protocol: { enum: string[] } } };
      const ev = newLifecycleEvent(type, fields);
      for (const k of schema.required) expect(ev, `${type}.${k}`).toHaveProperty(k);
      expect(schema.properties.protocol.enum).toContain(ev.protocol);
      expect(Number.isInteger(ev.timestamp)).toBe(true);
    }
    const gov = newLifecycleEvent("governor", { ...fields, eventType: "timeouts" });
    expect(gov).toMatchObject({ governor: "PUPPET", sequence: 7, event_type: "timeouts" });
  });

  it("travel as CloudEvents 1.0 on choria.lifecycle.event.<type>.<component>", () => {
    const ev = newLifecycleEvent("startup", fields);
    expect(lifecycleSubject(ev)).toBe("choria.lifecycle.event.startup.server");
    const ce = JSON.parse(Buffer.from(encodeLifecycleEvent(ev)).toString()) as Record<string, unknown>;
    expect(ce).toMatchObject({
      specversion: "1.0",
      source: "io.choria.lifecycle",
      type: "io.choria.lifecycle.v1.startup",
      subject: "n1.example.net",
      id: ev.id,
      datacontenttype: "application/json",
      data: { protocol: "io.choria.lifecycle.v1.startup", identity: "n1.example.net", version: "1.2.3" },
    });
    expect(decodeLifecycleEvent(encodeLifecycleEvent(ev))).toEqual(ev);
  });

  it("decode the legacy format too, and refuse garbage", () => {
    const ev = newLifecycleEvent("shutdown", fields);
    expect(decodeLifecycleEvent(encodeLifecycleEvent(ev, { legacy: true }))).toEqual(ev);
    const old = { ...ev, protocol: "choria:lifecycle:shutdown:1" };
    expect(decodeLifecycleEvent(Buffer.from(JSON.stringify(old))).identity).toBe("n1.example.net");
    expect(() => decodeLifecycleEvent(Buffer.from("nope"))).toThrow(/not JSON/);
    expect(() => decodeLifecycleEvent(Buffer.from('{"protocol":"io.choria.lifecycle.v1.bogus"}'))).toThrow(
      /unknown lifecycle protocol/,
    );
    expect(() => newLifecycleEvent("startup", { ...fields, component: "a.b c" })).toThrow(/subject token/);
    expect(LIFECYCLE_TYPES).toHaveLength(6);
  });

  it("reporter sends startup, alive after a random first delay and then every interval, shutdown", () => {
    vi.useFakeTimers();
    try {
      const sent: string[] = [];
      const r = new LifecycleReporter({
        identity: "n1",
        component: "server",
        version: "1",
        publish: (s) => sent.push(s),
        aliveIntervalMs: 1000,
        aliveFirstDelayMaxMs: 100,
      });
      r.start();
      expect(sent).toEqual(["choria.lifecycle.event.startup.server"]);
      vi.advanceTimersByTime(100);
      expect(sent).toHaveLength(2);
      vi.advanceTimersByTime(2000);
      expect(sent.filter((s) => s.endsWith("alive.server"))).toHaveLength(3);
      r.stop();
      vi.advanceTimersByTime(5000);
      expect(sent.at(-1)).toBe("choria.lifecycle.event.shutdown.server");
      expect(sent).toHaveLength(5);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe("watch filters and tally", () => {
  it("narrows the subject and matches identities exactly or by regex", () => {
    expect(lifecycleWatchSubject({})).toBe("choria.lifecycle.event.*.*");
    expect(lifecycleWatchSubject({ type: "alive", component: "server" })).toBe(
      "choria.lifecycle.event.alive.server",
    );
    expect(identityMatcher("n1")("n1")).toBe(true);
    expect(identityMatcher("n1")("n10")).toBe(false);
    expect(identityMatcher("/^web/")("web3")).toBe(true);
  });

  it("counts nodes by component and version, forgets shut down and silent ones, exports Prometheus", async () => {
    const t = new LifecycleTally({ expireMs: 1000 });
    const ev = (type: LifecycleType, identity: string, version = "1.0") =>
      newLifecycleEvent(type, { identity, component: "server", version, newVersion: "2.0" });
    t.observe(ev("startup", "a"), 0);
    t.observe(ev("alive", "b"), 0);
    t.observe(ev("alive", "c", "0.9"), 0);
    t.observe(ev("upgraded", "c", "0.9"), 0);
    expect(t.counts()).toEqual([
      { component: "server", version: "1.0", count: 2 },
      { component: "server", version: "2.0", count: 1 },
    ]);
    t.observe(ev("shutdown", "a"), 10);
    t.observe(ev("alive", "b"), 900);
    expect(t.expire(1500)).toBe(1); // c went quiet
    expect(t.counts()).toEqual([{ component: "server", version: "1.0", count: 1 }]);
    t.observe(ev("alive", "b"), Date.now());
    const text = await t.registry.metrics();
    expect(text).toContain('choria_lifecycle_tally_versions{component="server",version="1.0"} 1');
    expect(text).toContain('choria_lifecycle_tally_events_total{type="alive"} 4');
  });
});
