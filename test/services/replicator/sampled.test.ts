// Sampling between real brokers, with each of the three value sources (a JSON field, a
// header, a subject token), over one scripted timeline: what is copied, and the age
// advisories published on the source side.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstream, type JetStreamManager } from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/transport-node";
import { pino } from "pino";
import type { NatsConnection } from "../../../src/core/connector/index.js";
import { Replicator, type AgeAdvisory } from "../../../src/services/replicator/index.js";
import { JsBroker, jsmOf, replicatorConfig } from "./fixture.js";

const silent = pino({ level: "silent" });
let src: JsBroker;
let dst: JsBroker;
let sNc: NatsConnection;
let dJsm: JetStreamManager;
let state: string;

beforeAll(async () => {
  [src, dst] = await Promise.all([JsBroker.start(), JsBroker.start()]);
  sNc = await src.connect("src");
  dJsm = await jsmOf(await dst.connect("dst"));
  state = mkdtempSync(join(tmpdir(), "chorus-sr-state-"));
}, 30_000);

afterAll(async () => {
  await sNc?.close();
  await Promise.all([src?.stop(), dst?.stop()]);
  rmSync(state, { recursive: true, force: true });
});

const SOURCES = {
  field: "inspect_field: node.name",
  header: "inspect_header: Node",
  token: "inspect_subject_token: 3",
} as const;
type Source = keyof typeof SOURCES;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("sampling with advisories", () => {
  it("copies one message per value per interval and advises new, timeout, recover and expire, for each value source", async () => {
    const jsm = await jsmOf(sNc);
    const names = Object.keys(SOURCES) as Source[];
    for (const n of names) await jsm.streams.add({ name: `S_${n.toUpperCase()}`, subjects: [`s.${n}.*`] });
    const r = new Replicator(
      replicatorConfig(
        [
          "name: SAMPLE",
          `state_store: ${state}`,
          "streams:",
          ...names.flatMap((n) => [
            `  - name: ${n}`,
            `    stream: S_${n.toUpperCase()}`,
            `    source_url: ${src.url}`,
            `    target_url: ${dst.url}`,
            `    ${SOURCES[n]}`,
            "    inspect_duration: 4s",
            "    warn_duration: 2s",
            `    advisory: { subject: "adv.${n}.%s.%v" }`,
          ]),
        ].join("\n"),
      ),
      { logger: silent, sampling: { scrubIntervalMs: 100 } },
    );
    // adv.<stream>.<event>.<value>, and the body
    const advisories: { stream: string; event: string; value: string; body: AgeAdvisory }[] = [];
    const sub = sNc.subscribe("adv.>", {
      callback: (_e, m) => {
        const [, stream, event, value] = m.subject.split(".") as [string, string, string, string];
        advisories.push({ stream, event, value, body: JSON.parse(m.string()) as AgeAdvisory });
      },
    });
    await sNc.flush();
    await r.start();
    const js = jetstream(sNc);
    const send = async (value: string) => {
      for (const n of names) {
        const h = natsHeaders();
        h.set("Node", value);
        await js.publish(`s.${n}.${value}`, JSON.stringify({ node: { name: value } }), { headers: h });
      }
    };
    try {
      // a: every 250 ms for 5.5 s; b: once; c: once, then again at 2.7 s, after its timeout
      await send("a");
      await send("b");
      await send("c");
      const t0 = Date.now();
      let cAgain = false;
      while (Date.now() - t0 < 5500) {
        await sleep(250);
        await send("a");
        if (!cAgain && Date.now() - t0 > 2700) {
          await send("c");
          cAgain = true;
        }
      }
      await sleep(300);
      for (const n of names) {
        const got = (value: string) =>
          advisories.filter((x) => x.stream === n && x.value === value).map((x) => x.event);
        expect(got("a"), `${n}: a`).toEqual(["new"]);
        expect(got("b"), `${n}: b`).toEqual(["new", "timeout", "expire"]);
        // c is back at 2.7 s (recover) and silent again for 2 s before the end (timeout)
        expect(got("c"), `${n}: c`).toEqual(["new", "timeout", "recover", "timeout"]);
        // a: published 23 times, copied once per ~3-4 s; b and c copied when new (and c when back)
        const info = await dJsm.streams.info(`S_${n.toUpperCase()}`);
        const copies = info.state.messages;
        expect(copies, `${n}: copies`).toBeGreaterThanOrEqual(4);
        expect(copies, `${n}: copies`).toBeLessThanOrEqual(6);
      }
      const metrics = await r.metrics.registry.metrics();
      expect(metrics).toMatch(
        /choria_stream_replicator_replicator_skipped_messages\{stream="S_TOKEN"[^}]*\} (1\d|2\d)/,
      );
      expect(metrics).toMatch(
        /choria_stream_replicator_advisor_total_messages\{[^}]*event="timeout"[^}]*\} 3/,
      );
    } finally {
      sub.unsubscribe();
      await r.stop();
    }
    // the state survives: saved at stop, in Choria's shape
    const saved = JSON.parse(readFileSync(join(state, "S_FIELD_field.json"), "utf8")) as {
      Items: Record<string, { seen: string; copied: string }>;
    };
    expect(Object.keys(saved.Items).sort()).toEqual(["a", "c"]);
    const body = advisories.find((x) => x.stream === "field" && x.event === "timeout")?.body;
    expect(body).toMatchObject({
      protocol: "io.choria.sr.v2.age_advisory",
      inspect_field: "node.name",
      replicator: "SAMPLE",
      event: "timeout",
      value: "b",
    });
    expect(body?.age).toBeGreaterThanOrEqual(2);
  }, 60_000);
});
