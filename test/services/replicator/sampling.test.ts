import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ReplicatorError } from "../../../src/services/replicator/errors.js";
import {
  Sampler,
  decodeGossip,
  encodeGossip,
  type SampledMessage,
  type SamplingEvent,
  type SamplingOptions,
  type TrackedItem,
} from "../../../src/services/replicator/sampling.js";
import { lineLogger } from "../../../src/core/util/index.js";

const T0 = Date.parse("2024-05-01T12:00:00Z");
const S = 1000;
const enc = new TextEncoder();

function json(doc: unknown, subject = "reg.n1"): SampledMessage {
  return { subject, data: enc.encode(JSON.stringify(doc)) };
}

function raw(subject: string, data = "x", headers?: Record<string, string>): SampledMessage {
  return {
    subject,
    data: enc.encode(data),
    ...(headers && { headers: { get: (k: string) => headers[k] ?? "" } }),
  };
}

interface Rig {
  s: Sampler;
  clock: { t: number };
  events: Array<[SamplingEvent, string, TrackedItem]>;
  logs: string[];
}

function rig(o: Partial<SamplingOptions> = {}): Rig {
  const clock = { t: T0 };
  const logs: string[] = [];
  const s = new Sampler({
    stream: "REG",
    replicator: "sr1",
    inspectField: "sender",
    inspectDurationMs: 60 * S,
    warnDurationMs: 30 * S,
    now: () => clock.t,
    random: () => 0,
    logger: lineLogger((level, line) => logs.push(`${level} ${line}`)),
    ...o,
  });
  const events: Rig["events"] = [];
  for (const ev of ["new", "timeout", "recover", "expire"] as const)
    s.on(ev, (v, i) => events.push([ev, v, i]));
  return { s, clock, events, logs };
}

/** decide, and record the copy when it is one (as the copier does) */
function offer(s: Sampler, msg: SampledMessage): boolean {
  const d = s.decide(msg);
  if (d.copy) s.copied(d.value);
  return d.copy;
}

describe("Sampler copy decision", () => {
  it("copies a value once per interval, splayed by up to 10%", () => {
    const { s, clock } = rig();
    const m = json({ sender: "n1", load: 1 });
    expect(offer(s, m)).toBe(true);
    for (let t = 10; t <= 50; t += 10) {
      clock.t = T0 + t * S;
      expect(offer(s, m), `at ${t}s`).toBe(false);
    }
    // deadline is now - (interval - 1 s - splay): with no splay, due after 59 s
    clock.t = T0 + 59 * S;
    expect(offer(s, m)).toBe(false);
    clock.t = T0 + 59 * S + 1;
    expect(offer(s, m)).toBe(true);
    expect(s.get("n1")?.copied).toBe(T0 + 59 * S + 1);

    // the largest splay (random just under 1) makes it due up to 6 s earlier
    const late = rig({ random: () => 0.999 });
    expect(offer(late.s, m)).toBe(true);
    late.clock.t = T0 + 53 * S;
    expect(offer(late.s, m)).toBe(false);
    late.clock.t = T0 + 53.1 * S;
    expect(offer(late.s, m)).toBe(true);
  });

  it("a value seen but whose copy was not stored is copied again", () => {
    const { s, clock } = rig();
    const m = json({ sender: "n1" });
    expect(s.decide(m).copy).toBe(true); // copy failed: copied() never called
    clock.t += S;
    expect(s.decide(m).copy).toBe(true);
  });

  it("copies at once when the size changes by size_trigger or more, either way", () => {
    const { s, clock } = rig({ sizeTrigger: 10 });
    const sized = (n: number) => json({ sender: "n1", pad: "x".repeat(n) });
    expect(offer(s, sized(20))).toBe(true);
    clock.t += S;
    expect(offer(s, sized(29))).toBe(false); // +9
    clock.t += S;
    expect(offer(s, sized(39))).toBe(true); // +10 from the last seen size
    clock.t += S;
    expect(offer(s, sized(29))).toBe(true); // -10
    clock.t += S;
    expect(offer(s, sized(25))).toBe(false);
    // without size_trigger a size change alone does nothing
    const plain = rig();
    expect(offer(plain.s, sized(20))).toBe(true);
    plain.clock.t += S;
    expect(offer(plain.s, sized(2000))).toBe(false);
  });

  it("copies when the previous message was empty and this one is not", () => {
    const { s, clock } = rig({ inspectField: "", inspectSubjectToken: 2 });
    expect(offer(s, raw("reg.n1", ""))).toBe(true);
    clock.t += S;
    expect(offer(s, raw("reg.n1", ""))).toBe(false);
    clock.t += S;
    expect(offer(s, raw("reg.n1", "data"))).toBe(true);
    clock.t += S;
    expect(offer(s, raw("reg.n1", "data"))).toBe(false);
  });

  it("the force field copies every time and is counted; its value may be null", () => {
    const { s, clock } = rig({ inspectForceField: "meta.force" });
    expect(offer(s, json({ sender: "n1" }))).toBe(true);
    clock.t += S;
    expect(offer(s, json({ sender: "n1" }))).toBe(false);
    expect(offer(s, json({ sender: "n1", meta: { force: false } }))).toBe(true);
    expect(offer(s, json({ sender: "n1", meta: { force: null } }))).toBe(true);
    expect(offer(s, json({ sender: "n1", meta: {} }))).toBe(false);
    expect(s.counters.forced).toBe(2);
    expect(s.valueOf(json({ sender: "n1", meta: { force: 1 } }))).toEqual({ value: "n1", force: true });
  });

  it("messages without a value are always copied, counted and not tracked", () => {
    const { s } = rig();
    for (const m of [
      raw("reg.n1", "not json"),
      raw("reg.n1", "{broken"),
      raw("reg.n1", '"a string"'),
      json({ other: "n1" }),
      json({ sender: "" }),
      json({ sender: null }),
    ])
      expect(offer(s, m)).toBe(true);
    expect(s.counters.withoutValue).toBe(6);
    expect(s.size).toBe(0);
  });
});

describe("Sampler value sources", () => {
  it("inspect_field: gjson-style paths, numbers and objects as text", () => {
    const { s } = rig({ inspectField: "meta.host" });
    expect(s.valueOf(json({ meta: { host: "web1" } })).value).toBe("web1");
    expect(s.valueOf(json({ meta: { host: 42 } })).value).toBe("42");
    expect(s.valueOf(json({ meta: { host: true } })).value).toBe("true");
    expect(s.valueOf(json({ meta: { host: { a: 1 } } })).value).toBe('{"a":1}');
    expect(s.valueOf(raw("x", '  \n{"meta":{"host":"ws"}}')).value).toBe("ws");
    expect(s.valueOf(json({ meta: "flat" })).value).toBe("");
    const arr = rig({ inspectField: "nodes.1.name" }).s;
    expect(arr.valueOf(json({ nodes: [{ name: "a" }, { name: "b" }] })).value).toBe("b");
  });

  it("inspect_subject_token: N-th token, -1 whole subject, short subjects have none", () => {
    const tok = rig({ inspectField: "", inspectSubjectToken: 2 }).s;
    expect(tok.valueOf(raw("reg.n1.extra")).value).toBe("n1");
    expect(tok.valueOf(raw("reg.n1")).value).toBe("n1");
    expect(tok.valueOf(raw("reg")).value).toBe("");
    const first = rig({ inspectField: "", inspectSubjectToken: 1 }).s;
    expect(first.valueOf(raw("reg.n1")).value).toBe("reg");
    const last = rig({ inspectField: "", inspectSubjectToken: 3 }).s;
    expect(last.valueOf(raw("a.b.c")).value).toBe("c");
    expect(last.valueOf(raw("a.b")).value).toBe("");
    const whole = rig({ inspectField: "", inspectSubjectToken: -1 });
    expect(whole.s.valueOf(raw("reg.n1.x")).value).toBe("reg.n1.x");
    // and it really samples (Choria only samples with inspect_field)
    expect(offer(whole.s, raw("reg.n1"))).toBe(true);
    whole.clock.t += S;
    expect(offer(whole.s, raw("reg.n1"))).toBe(false);
    expect(offer(whole.s, raw("reg.n2"))).toBe(true);
  });

  it("inspect_header: the header value, none when absent", () => {
    const { s, clock } = rig({ inspectField: "", inspectHeader: "Node" });
    expect(s.valueOf(raw("x", "d", { Node: "n7" })).value).toBe("n7");
    expect(s.valueOf(raw("x", "d", { Other: "n7" })).value).toBe("");
    expect(s.valueOf(raw("x", "d")).value).toBe("");
    expect(offer(s, raw("x", "d", { Node: "n7" }))).toBe(true);
    clock.t += S;
    expect(offer(s, raw("y", "d", { Node: "n7" }))).toBe(false);
    expect(offer(s, raw("y", "d"))).toBe(true);
  });

  it("rejects options that cannot sample", () => {
    const base = { stream: "S", replicator: "r", inspectDurationMs: 60 * S, warnDurationMs: 30 * S };
    expect(() => new Sampler(base)).toThrow(ReplicatorError);
    expect(() => new Sampler({ ...base, inspectHeader: "h", inspectForceField: "f" })).toThrow(
      /needs inspect_field/,
    );
    expect(() => new Sampler({ ...base, inspectField: "f", inspectDurationMs: 0 })).toThrow(ReplicatorError);
    expect(() => new Sampler({ ...base, inspectSubjectToken: -2 })).toThrow(ReplicatorError);
    expect(new Sampler({ ...base, inspectSubjectToken: -1 }).size).toBe(0);
  });
});

describe("Sampler events", () => {
  it("new, timeout once advised, recover, expire, and no expire when older than 2x", () => {
    const { s, clock, events } = rig();
    const m = json({ sender: "n1" });
    const at = (sec: number) => (clock.t = T0 + sec * S);
    offer(s, m);
    expect(events).toEqual([["new", "n1", { seen: T0, copied: 0, advised: false, size: m.data.length }]]);
    at(1);
    offer(s, m);
    events.length = 0;

    at(30);
    s.scrub(); // 29 s unseen: not past warn
    expect(events).toEqual([]);
    at(32);
    s.scrub();
    expect(events.map(([e, v]) => [e, v])).toEqual([["timeout", "n1"]]);
    expect(events[0]?.[2].seen).toBe(T0 + S);
    // not advised yet: Choria repeats the timeout until it is
    s.scrub();
    expect(events.length).toBe(2);
    s.markAdvised("n1");
    s.scrub();
    at(40);
    s.scrub();
    expect(events.length).toBe(2);

    events.length = 0;
    at(45);
    offer(s, m); // 44 s gap: between warn and interval
    expect(events.map(([e, v]) => [e, v])).toEqual([["recover", "n1"]]);
    // the recover item is the one before this sighting: its age is the gap
    expect(events[0]?.[2]).toMatchObject({ seen: T0 + S, advised: false });
    expect(s.get("n1")).toMatchObject({ seen: T0 + 45 * S, advised: false });

    // a short gap is no recover
    events.length = 0;
    at(50);
    offer(s, m);
    expect(events).toEqual([]);

    at(50 + 61);
    s.scrub();
    expect(events.map(([e, v]) => [e, v])).toEqual([["expire", "n1"]]);
    expect(s.size).toBe(0);
    expect(s.get("n1")).toBeUndefined();

    // seen again after expiry: new again
    events.length = 0;
    offer(s, m);
    expect(events.map(([e]) => e)).toEqual(["new"]);

    // unseen over twice the interval by the time of the scrub: deleted silently
    events.length = 0;
    at(50 + 61 + 121);
    s.scrub();
    expect(s.size).toBe(0);
    expect(events).toEqual([]);
  });

  it("a listener that throws does not break decide", () => {
    const { s, logs } = rig();
    s.on("new", () => {
      throw new Error("boom");
    });
    expect(s.decide(json({ sender: "n1" })).copy).toBe(true);
    expect(s.size).toBe(1);
    expect(logs.some((l) => l.startsWith("error") && l.includes("boom"))).toBe(true);
  });
});

describe("Sampler state file", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "chorus-sampling-"));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it("saves in Choria's shape and loads it back", () => {
    const stateFile = join(dir, "REG_sr1.json");
    const a = rig({ stateFile });
    offer(a.s, json({ sender: "n1", x: 1 }));
    a.s.decide(json({ sender: "n2" })); // never copied
    a.s.markAdvised("n2");
    expect(a.s.save()).toBe(true);
    const doc = JSON.parse(readFileSync(stateFile, "utf8")) as { Items: Record<string, unknown> };
    expect(doc).toEqual({
      Items: {
        n1: { seen: "2024-05-01T12:00:00.000Z", copied: "2024-05-01T12:00:00.000Z", size: 21 },
        n2: { seen: "2024-05-01T12:00:00.000Z", copied: "0001-01-01T00:00:00Z", advised: true, size: 15 },
      },
    });

    const b = rig({ stateFile });
    b.clock.t = T0 + 10 * S;
    b.s.load();
    expect(b.s.size).toBe(2);
    expect(b.s.get("n1")).toEqual(a.s.get("n1"));
    expect(b.s.get("n2")).toEqual({ seen: T0, copied: 0, advised: true, size: 15 });
    // the loaded copy time holds: no copy yet
    expect(offer(b.s, json({ sender: "n1", x: 1 }))).toBe(false);
    expect(b.events).toEqual([]);
  });

  it("reads a Go-written file: nanoseconds, offsets, zero times; drops expired items silently", () => {
    const stateFile = join(dir, "s.json");
    writeFileSync(
      stateFile,
      JSON.stringify({
        Items: {
          live: { seen: "2024-05-01T13:59:50.123456789+02:00", copied: "2024-05-01T11:59:40Z", size: 5 },
          old: { seen: "2024-05-01T11:58:00Z", copied: "0001-01-01T00:00:00Z", size: 1 },
          bad: { seen: "yesterday", size: 1 },
        },
      }),
    );
    const r = rig({ stateFile });
    r.s.load();
    expect(r.s.get("live")).toEqual({
      seen: T0 - 10 * S + 123,
      copied: T0 - 20 * S,
      advised: false,
      size: 5,
    });
    expect(r.s.size).toBe(1);
    expect(r.events).toEqual([]);
    expect(r.logs.some((l) => l.startsWith("warn") && l.includes("skipped=1"))).toBe(true);
  });

  it("a corrupt state file: starts empty with a warning", () => {
    const stateFile = join(dir, "s.json");
    for (const content of ["{not json", "[1,2]", '{"Items": 5}', "null"]) {
      writeFileSync(stateFile, content);
      const r = rig({ stateFile });
      expect(() => r.s.load()).not.toThrow();
      expect(r.s.size).toBe(0);
    }
    const r = rig({ stateFile });
    writeFileSync(stateFile, "{not json");
    r.s.load();
    expect(r.logs.some((l) => l.startsWith("warn") && l.includes("starting without state"))).toBe(true);
    // and it is replaced by the next save
    offer(r.s, json({ sender: "n1" }));
    r.s.save();
    expect(Object.keys((JSON.parse(readFileSync(stateFile, "utf8")) as { Items: object }).Items)).toEqual([
      "n1",
    ]);
  });

  it("save leaves expired items out and removes the file when nothing is live", () => {
    const stateFile = join(dir, "s.json");
    const r = rig({ stateFile });
    offer(r.s, json({ sender: "n1" }));
    r.clock.t = T0 + 40 * S;
    offer(r.s, json({ sender: "n2" }));
    r.clock.t = T0 + 61 * S;
    r.s.save();
    expect(Object.keys((JSON.parse(readFileSync(stateFile, "utf8")) as { Items: object }).Items)).toEqual([
      "n2",
    ]);
    r.clock.t = T0 + 200 * S;
    r.s.save();
    expect(existsSync(stateFile)).toBe(false);
  });

  it("a failing save is counted, not thrown", () => {
    const r = rig({ stateFile: join(dir, "file", "s.json") });
    writeFileSync(join(dir, "file"), "a file where a directory should be");
    offer(r.s, json({ sender: "n1" }));
    expect(r.s.save()).toBe(false);
    expect(r.s.counters.saveErrors).toBe(1);
  });

  it("start scrubs and saves on its timer; stop saves", () => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    try {
      const stateFile = join(dir, "s.json");
      const r = rig({ stateFile, scrubIntervalMs: 1000 });
      r.s.start();
      offer(r.s, json({ sender: "n1" }));
      r.clock.t = T0 + 31 * S;
      vi.advanceTimersByTime(999);
      expect(r.events.map(([e]) => e)).toEqual(["new"]);
      expect(existsSync(stateFile)).toBe(false);
      vi.advanceTimersByTime(1);
      expect(r.events.map(([e]) => e)).toEqual(["new", "timeout"]);
      expect(existsSync(stateFile)).toBe(true);
      offer(r.s, json({ sender: "n2" }));
      r.s.stop();
      expect(Object.keys((JSON.parse(readFileSync(stateFile, "utf8")) as { Items: object }).Items)).toEqual([
        "n1",
        "n2",
      ]);
      vi.advanceTimersByTime(5000);
      expect(r.events.filter(([e]) => e === "timeout").length).toBe(1);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe("Sampler gossip", () => {
  it("drain gives the values seen since the last drain, starting with the first drain", () => {
    const { s, clock } = rig();
    offer(s, json({ sender: "before" }));
    expect(s.drainGossip()).toEqual({});
    offer(s, json({ sender: "n1" }));
    clock.t += S;
    offer(s, json({ sender: "n2" }));
    offer(s, json({ sender: "n1" }));
    s.decide(json({ other: 1 }));
    const d = s.drainGossip();
    expect(Object.keys(d).sort()).toEqual(["n1", "n2"]);
    expect(d.n1).toEqual({ seen: T0 + S, copied: T0, advised: false, size: 15 });
    expect(s.drainGossip()).toEqual({});
  });

  it("a peer's items stop a duplicate copy; older news does not roll back newer", () => {
    const a = rig();
    const b = rig();
    a.s.drainGossip();
    offer(a.s, json({ sender: "n1" }));
    for (const [v, i] of Object.entries(decodeGossip(encodeGossip(a.s.drainGossip())))) b.s.adopt(v, i);
    expect(b.s.counters.adopted).toBe(1);
    expect(b.events).toEqual([]); // adopted items are no "new"
    b.clock.t += 5 * S;
    expect(offer(b.s, json({ sender: "n1" }))).toBe(false);

    // late gossip about an older sighting keeps b's newer one, takes a later copy time
    b.s.adopt("n1", { seen: T0 - 50 * S, copied: T0 + S, advised: true, size: 1 });
    expect(b.s.get("n1")).toEqual({ seen: T0 + 5 * S, copied: T0 + S, advised: false, size: 15 });
    b.s.adopt("n1", { seen: T0 + 6 * S, copied: 0, advised: true, size: 3 });
    expect(b.s.get("n1")).toEqual({ seen: T0 + 6 * S, copied: T0 + S, advised: true, size: 3 });

    // junk from the network is ignored
    b.s.adopt("", { seen: T0, copied: T0, advised: false, size: 1 });
    b.s.adopt("x", { seen: "soon", copied: 0, advised: false, size: 1 } as unknown as TrackedItem);
    b.s.adopt("y", null as unknown as TrackedItem);
    expect(b.s.size).toBe(1);
  });

  it("decodes Choria's one-item gossip and rejects junk", () => {
    const choria = enc.encode(
      JSON.stringify({ seen: "2024-05-01T12:00:00Z", copied: "0001-01-01T00:00:00Z", size: 12, value: "n9" }),
    );
    expect(decodeGossip(choria)).toEqual({ n9: { seen: T0, copied: 0, advised: false, size: 12 } });
    expect(decodeGossip(enc.encode("nope"))).toEqual({});
    expect(decodeGossip(enc.encode('{"seen":"2024-05-01T12:00:00Z","size":1}'))).toEqual({});
    expect(decodeGossip(enc.encode('{"Items":{"a":{"seen":"x"},"b":{"seen":0,"size":2}}}'))).toEqual({
      b: { seen: 0, copied: 0, advised: false, size: 2 },
    });
  });
});
