import { describe, expect, it } from "vitest";
import {
  ADVISORY_PROTOCOL,
  Advisor,
  advisorySubject,
  newEventId,
  wireAdvisor,
  type AdvisorOptions,
  type AgeAdvisory,
} from "../../../src/services/replicator/advisor.js";
import { Sampler } from "../../../src/services/replicator/sampling.js";

const T0 = Date.parse("2024-05-01T12:00:00Z");
const S = 1000;
const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

interface Sent {
  subject: string;
  advisory: AgeAdvisory;
  msgId: string | undefined;
}

function rig(o: Partial<AdvisorOptions> = {}, failures = 0) {
  const clock = { t: T0 };
  const sent: Sent[] = [];
  let attempts = 0;
  const outcomes: string[] = [];
  const a = new Advisor({
    subject: "choria.sr.%s.%v",
    reliable: false,
    replicator: "sr1",
    inspectField: "sender",
    now: () => clock.t,
    retryDelayMs: () => 1,
    observe: (outcome, event) => outcomes.push(`${outcome}:${event}`),
    publish: (subject, data, msgId) => {
      attempts++;
      if (attempts <= failures) return Promise.reject(new Error(`fail ${attempts}`));
      sent.push({ subject, advisory: JSON.parse(Buffer.from(data).toString()) as AgeAdvisory, msgId });
      return Promise.resolve();
    },
    ...o,
  });
  return { a, clock, sent, outcomes, attempts: () => attempts };
}

async function until(cond: () => boolean, ms = 1000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 1));
  }
}

/** decode a KSUID's first four bytes: seconds since its 2014 epoch */
function ksuidSeconds(id: string): number {
  let n = 0n;
  for (const c of id) n = n * 62n + BigInt(BASE62.indexOf(c));
  return Number(n >> 128n) + 1_400_000_000;
}

describe("advisory subject and id", () => {
  it("templates %s and %v, the value one safe token", () => {
    expect(advisorySubject("adv.%s.%v", "timeout", "n1")).toBe("adv.timeout.n1");
    expect(advisorySubject("adv.%s.%v", "expire", "web1.example.net")).toBe("adv.expire.web1_example_net");
    expect(advisorySubject("adv.%v", "new", "a b*c>d\te")).toBe("adv.a_b_c_d_e");
    expect(advisorySubject("adv.%v", "new", "")).toBe("adv._");
    expect(advisorySubject("%s.x.%s", "recover", "v")).toBe("recover.x.recover");
    expect(advisorySubject("adv.fixed", "new", "v")).toBe("adv.fixed");
  });

  it("event ids are KSUIDs: 27 base62 characters carrying the time, unique", () => {
    const ids = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const id = newEventId(T0);
      expect(id).toMatch(/^[0-9A-Za-z]{27}$/);
      expect(ksuidSeconds(id)).toBe(T0 / 1000);
      ids.add(id);
    }
    expect(ids.size).toBe(200);
    // time ordered across seconds
    expect(newEventId(T0) < newEventId(T0 + 2 * S)).toBe(true);
  });
});

describe("Advisor", () => {
  it("publishes Choria's age advisory JSON to the templated subject, core publish when not reliable", async () => {
    const { a, clock, sent } = rig();
    a.start();
    clock.t = T0 + 31.6 * S;
    expect(a.advise("timeout", "web1.example.net", { seen: T0, copied: T0, advised: false, size: 9 })).toBe(
      true,
    );
    await until(() => sent.length === 1);
    const s = sent[0] as Sent;
    expect(s.subject).toBe("choria.sr.timeout.web1_example_net");
    expect(s.msgId).toBeUndefined();
    expect(s.advisory).toEqual({
      protocol: ADVISORY_PROTOCOL,
      event_id: s.advisory.event_id,
      inspect_field: "sender",
      age: 32,
      seen: T0 / 1000,
      replicator: "sr1",
      timestamp: Math.floor((T0 + 31.6 * S) / 1000),
      event: "timeout",
      value: "web1.example.net",
    });
    expect(s.advisory.event_id).toMatch(/^[0-9A-Za-z]{27}$/);
    // unknown age
    a.advise("new", "n2", { seen: 0, copied: 0, advised: false, size: 0 });
    await until(() => sent.length === 2);
    expect(sent[1]?.advisory).toMatchObject({ age: -1, seen: 0, event: "new" });
    expect(a.counters).toMatchObject({ queued: 2, published: 2, errors: 0 });
    await a.stop();
  });

  it("reliable: retries with the same Nats-Msg-Id until the publish succeeds", async () => {
    const { a, sent, outcomes, attempts } = rig({ reliable: true }, 2);
    a.start();
    a.advise("expire", "n1", { seen: T0, copied: 0, advised: false, size: 1 });
    await until(() => sent.length === 1);
    expect(attempts()).toBe(3);
    expect(sent[0]?.msgId).toBe(sent[0]?.advisory.event_id);
    expect(a.counters).toMatchObject({ published: 1, errors: 2, discarded: 0 });
    expect(outcomes).toEqual(["error:expire", "error:expire", "published:expire"]);
    await a.stop();
  });

  it("reliable gives up after its tries; not reliable tries once", async () => {
    const r = rig({ reliable: true, tries: 4 }, 100);
    r.a.start();
    r.a.advise("new", "n1", { seen: T0, copied: 0, advised: false, size: 1 });
    await until(() => r.a.counters.discarded === 1);
    expect(r.attempts()).toBe(4);
    expect(r.a.counters.errors).toBe(4);
    await r.a.stop();

    const c = rig({ reliable: false }, 100);
    c.a.start();
    c.a.advise("new", "n1", { seen: T0, copied: 0, advised: false, size: 1 });
    c.a.advise("new", "n2", { seen: T0, copied: 0, advised: false, size: 1 });
    await until(() => c.a.counters.discarded === 2);
    expect(c.attempts()).toBe(2);
    await c.a.stop();
  });

  it("a full queue drops and counts; the queue drains in order once started", async () => {
    const { a, sent, outcomes } = rig({ queueSize: 3 });
    const item = { seen: T0, copied: 0, advised: false, size: 1 };
    const queued = ["a", "b", "c", "d", "e"].map((v) => a.advise("timeout", v, item));
    expect(queued).toEqual([true, true, true, false, false]);
    expect(a.counters.dropped).toBe(2);
    expect(outcomes).toEqual(["dropped:timeout", "dropped:timeout"]);
    expect(a.pending).toBe(3);
    a.start();
    await until(() => sent.length === 3);
    expect(sent.map((s) => s.advisory.value)).toEqual(["a", "b", "c"]);
    expect(a.advise("timeout", "f", item)).toBe(true);
    await until(() => sent.length === 4);
    await a.stop();
  });

  it("paused: advisories are discarded, not held; resume publishes again", async () => {
    const { a, sent } = rig();
    const item = { seen: T0, copied: 0, advised: false, size: 1 };
    a.start();
    a.pause();
    a.advise("new", "n1", item);
    await until(() => a.counters.discarded === 1);
    a.resume();
    a.advise("new", "n2", item);
    await until(() => sent.length === 1);
    expect(sent[0]?.advisory.value).toBe("n2");
    await a.stop();
  });

  it("stop ends a retry wait at once and drops the queue", async () => {
    const { a, attempts } = rig({ reliable: true, retryDelayMs: () => 60_000 }, 100);
    a.start();
    a.advise("new", "n1", { seen: T0, copied: 0, advised: false, size: 1 });
    a.advise("new", "n2", { seen: T0, copied: 0, advised: false, size: 1 });
    await until(() => attempts() === 1);
    const t = Date.now();
    await a.stop();
    expect(Date.now() - t).toBeLessThan(1000);
    expect(attempts()).toBe(1);
    expect(a.pending).toBe(0);
  });
});

describe("wireAdvisor", () => {
  it("turns sampler events into advisories; a timeout is marked advised only once queued", async () => {
    const clock = { t: T0 };
    const sampler = new Sampler({
      stream: "REG",
      replicator: "sr1",
      inspectField: "sender",
      inspectDurationMs: 60 * S,
      warnDurationMs: 30 * S,
      now: () => clock.t,
      random: () => 0,
    });
    const { a, sent } = rig({ queueSize: 1, now: () => clock.t });
    wireAdvisor(sampler, a);
    const msg = { subject: "x", data: new TextEncoder().encode('{"sender":"n1"}') };
    sampler.decide(msg);
    expect(a.pending).toBe(1); // "new"

    clock.t = T0 + 31 * S;
    sampler.scrub(); // queue full: the timeout is dropped and n1 stays unadvised
    expect(a.counters.dropped).toBe(1);
    expect(sampler.get("n1")?.advised).toBe(false);

    a.start();
    await until(() => sent.length === 1);
    sampler.scrub(); // retried, queued this time
    expect(sampler.get("n1")?.advised).toBe(true);
    await until(() => sent.length === 2);
    sampler.scrub();
    clock.t = T0 + 45 * S;
    sampler.decide(msg); // recover
    await until(() => sent.length === 3);
    clock.t = T0 + 106 * S;
    sampler.scrub(); // expire
    await until(() => sent.length === 4);
    expect(sent.map((s) => `${s.advisory.event}:${s.advisory.age}`)).toEqual([
      "new:0",
      "timeout:31",
      "recover:45",
      "expire:61",
    ]);
    expect(sent.map((s) => s.subject)[3]).toBe("choria.sr.expire.n1");
    await a.stop();
  });
});
