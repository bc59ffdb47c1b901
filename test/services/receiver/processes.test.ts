// Two `chorus receiver run` processes (the built CLI) share one durable consumer and one
// store; one is killed with SIGKILL in the middle of a burst. Nothing is lost, nothing is
// stored twice: what the dead one held unacked is redelivered to the other after ack_wait.
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sql } from "kysely";
import { jetstreamManager } from "@nats-io/jetstream";
import { REPLIES_STREAM, ReplyStore, parseStoreUrl } from "../../../src/services/receiver/index.js";
import { freePort } from "../../helpers/nats.js";
import { startPostgres, type TestPostgres } from "../../helpers/postgres.js";
import {
  newRequestId,
  receiverFleet,
  recordBytes,
  recordSubjectFor,
  replyBytes,
  replySubjectFor,
  until,
  type ReceiverFleet,
} from "./fixture.js";

const BIN = fileURLToPath(new URL("../../../bin/chorus.js", import.meta.url));
const N = 20_000;

let f: ReceiverFleet;
let pgServer: TestPostgres;
beforeAll(async () => {
  [f, pgServer] = await Promise.all([receiverFleet(), startPostgres()]);
}, 60_000);
afterAll(async () => {
  await f?.stop();
  await pgServer?.stop();
});

async function counter(port: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return Number(
    new RegExp(`^chorus_receiver_${name}_total\\{kind="reply"\\} (\\d+)`, "m").exec(text)?.[1] ?? 0,
  );
}
const stored = (port: number) => counter(port, "stored");

function exited(c: ChildProcess): Promise<unknown> {
  return c.exitCode !== null || c.signalCode !== null
    ? Promise.resolve()
    : new Promise((r) => c.once("exit", r));
}

describe.each([
  ["SQLite", () => "sqlite:shared.db"],
  ["PostgreSQL", () => pgServer.url],
])("two receiver processes on one %s store", (_name, storeUrl) => {
  it(`lose nothing and store nothing twice when one is killed mid-burst of ${N}`, async () => {
    const consumer = `KILL_${_name.toUpperCase()}`;
    // an empty stream: the earlier run's replies would fill the victim's batch first (the
    // first run finds none: the receivers create the stream)
    await (await jetstreamManager(f.pub)).streams.purge(REPLIES_STREAM).catch(() => undefined);
    const ports = [await freePort(), await freePort()];
    const children = ports.map((port, i) => {
      // the second one (the victim) commits only when 10 000 replies or 60 s have gathered,
      // so whatever it has received when it is killed is unacked: the kill always lands on
      // work in hand, not between batches
      const hold = i === 1 ? { batch: 10_000, flush_interval: "60s" } : {};
      const file = f.writeConfig(
        { store: storeUrl(), consumer, ack_wait: "2s", monitor_port: port, http_listen: "", ...hold },
        `kill-${consumer}-${i}.yaml`,
      );
      const child = spawn(process.execPath, [BIN, "receiver", "run", "--config", file], {
        stdio: ["ignore", "ignore", "pipe"],
      });
      let stderr = "";
      child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
      child.once("exit", (code, signal) => {
        if (signal !== "SIGKILL" && signal !== "SIGTERM" && code !== 0)
          throw new Error(`receiver ${i} exited ${code}: ${stderr}`);
      });
      return child;
    });
    const loc = parseStoreUrl(storeUrl(), f.fleet.setup.dir);
    if (!loc) throw new Error("bad store url");
    let store: ReplyStore | undefined;
    try {
      // both up: serving metrics, and their consumer exists
      await until(
        async () =>
          (
            await Promise.all(
              ports.map((p) =>
                stored(p).then(
                  () => true,
                  () => false,
                ),
              ),
            )
          ).every(Boolean),
        20_000,
        "receivers",
      );
      store = await ReplyStore.open(loc);
      const id = newRequestId();
      const nodes = Array.from({ length: N }, (_, i) => `node${i}.example.net`);
      // the record is published twice and every 10th reply twice: duplicates on top of redeliveries
      f.pub.publish(recordSubjectFor(id), recordBytes({ request_id: id, nodes }));
      const subject = replySubjectFor(id);
      const msgs = nodes.map((n) => replyBytes(id, n));
      const publish = async (from: number, to: number) => {
        for (let i = from; i < to; i++) {
          f.pub.publish(subject, msgs[i] as Buffer);
          if (i % 10 === 0) f.pub.publish(subject, msgs[i] as Buffer);
          if (i % 1000 === 999) await f.pub.flush();
        }
        await f.pub.flush();
      };
      await publish(0, N / 2);
      // kill the second one while it holds received replies it has not stored (nor acked)
      const victim = ports[1] as number;
      await until(
        async () => (await counter(victim, "received")) > 0,
        20_000,
        "the second receiver receiving",
      );
      expect(await stored(victim)).toBe(0);
      children[1]?.kill("SIGKILL");
      f.pub.publish(recordSubjectFor(id), recordBytes({ request_id: id, nodes }));
      await publish(N / 2, N);
      await until(async () => (await store?.status(id))?.replied === N, 60_000, `${N} replies stored`);
      // a little longer: anything stored twice would show now
      await new Promise((r) => setTimeout(r, 500));
      const st = await store.status(id);
      expect(st).toMatchObject({
        replied: N,
        ok: N,
        discovered: N,
        unexpected: 0,
        complete: true,
        known: true,
      });
      const rows = await sql<{
        n: number;
        d: number;
      }>`select count(*) as n, count(distinct sender) as d from chorus_replies where request_id = ${id}`.execute(
        store.db,
      );
      expect(Number(rows.rows[0]?.n)).toBe(N);
      expect(Number(rows.rows[0]?.d)).toBe(N);
      expect((await store.counts()).requests).toBeGreaterThanOrEqual(1);
      // the victim stored nothing, so every row in the store came through the survivor (the
      // PostgreSQL run's new consumer also reads the SQLite run's replies from the stream)
      const all = await sql<{ n: number }>`select count(*) as n from chorus_replies`.execute(store.db);
      expect(await stored(ports[0] as number)).toBe(Number(all.rows[0]?.n));
      // some messages went out twice: what the killed receiver held was redelivered
      const jsm = await jetstreamManager(f.pub);
      const si = await jsm.streams.info(REPLIES_STREAM);
      const ci = await jsm.consumers.info(REPLIES_STREAM, consumer);
      expect(ci.delivered.consumer_seq).toBeGreaterThan(si.state.messages);
    } finally {
      for (const c of children) c.kill("SIGTERM");
      await Promise.all(children.map(exited));
      await store?.close();
    }
  }, 90_000);
});
