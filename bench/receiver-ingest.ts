// Receiver ingest rate: N async replies waiting in CHORUS_REPLIES, drained by 1 and by 2
// `chorus receiver run` processes (one durable consumer, ack after commit) into SQLite and
// into PostgreSQL, against, in the same run and broker: a raw core NATS subscription
// receiving the same replies, a raw JetStream consume (explicit ack per message) draining
// the same number from a stream, and raw batched SQL inserts of the same rows through the
// drivers (better-sqlite3 prepared statement, pg multi-row insert; 500 rows a transaction).
// Not part of the tests. Run: bench/receiver-ingest.sh [--replies 200000] [--runs 3]
// (the .sh builds dist/ first: the receivers are the built CLI).
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { jetstream, jetstreamManager, AckPolicy } from "@nats-io/jetstream";
import Database from "better-sqlite3";
import pg from "pg";
import { stringify } from "yaml";
import { BrokerSupervisor, brokerSettings, freeLoopbackPort } from "../src/broker/index.js";
import { loadConfig } from "../src/core/config/index.js";
import {
  asyncReplySubject,
  encodeMessage,
  encodeReply,
  encodeSecureReply,
  encodeTransport,
  newRequestId,
  nowNanos,
} from "../src/core/protocol/index.js";
import { createDevSetup } from "../src/apps/setup/index.js";
import type { NatsConnection } from "../src/core/connector/index.js";
import { REPLIES_STREAM, parseReply, repliesStreamConfig } from "../src/services/receiver/index.js";
import { ensureStreams } from "../src/services/streams/index.js";
import { startPostgres } from "../test/helpers/postgres.js";
import { connectAs } from "./credentials.js";

const { values: opt } = parseArgs({
  options: {
    replies: { type: "string", default: "200000" },
    runs: { type: "string", default: "3" },
    batch: { type: "string", default: "500" },
    stores: { type: "string", default: "sqlite,postgres" },
  },
});
const N = Number(opt.replies);
const RUNS = Number(opt.runs);
const BATCH = Number(opt.batch);
const STORES = opt.stores.split(",");
// the built CLI of the repo this runs from (bench/ts.sh runs in the repo root)
const BIN = join(process.cwd(), "bin", "chorus.js");

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const rate = (n: number, ms: number) => Math.round((n / ms) * 1000);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const CALLER = "choria=bench";
// one request: every run stores into an empty store
const ID = newRequestId();

function replies(id: string): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < N; i++) {
    const sender = `node${i}.example.net`;
    const body = JSON.stringify({ action: "ping", statuscode: 0, statusmsg: "OK", data: { pong: i } });
    const reply = encodeReply({
      message: encodeMessage(body),
      request: id,
      sender,
      agent: "rpcutil",
      time: nowNanos(),
    });
    out.push(encodeTransport(encodeSecureReply(reply), { sender }));
  }
  return out;
}

async function publishAll(nc: NatsConnection, subject: string, msgs: Buffer[]): Promise<void> {
  for (let i = 0; i < msgs.length; i++) {
    nc.publish(subject, msgs[i] as Buffer);
    if (i % 2000 === 1999) await nc.flush();
  }
  await nc.flush();
}

/** Raw core NATS: one subscription receives N replies as they are published. */
async function rawSubscription(sub: NatsConnection, pub: NatsConnection, msgs: Buffer[]): Promise<number> {
  const subject = asyncReplySubject("mcollective", CALLER, newRequestId());
  let got = 0;
  let done!: () => void;
  const all = new Promise<void>((r) => (done = r));
  const s = sub.subscribe(subject, {
    callback: () => {
      if (++got === msgs.length) done();
    },
  });
  await sub.flush();
  const t = performance.now();
  await publishAll(pub, subject, msgs);
  await all;
  const ms = performance.now() - t;
  s.unsubscribe();
  return rate(msgs.length, ms);
}

/** Raw JetStream: drains N stored messages through a pull consumer, acking each. */
async function rawJetStream(
  nc: NatsConnection,
  pub: NatsConnection,
  msgs: Buffer[],
  run: number,
): Promise<number> {
  const jsm = await jetstreamManager(nc);
  const name = `BENCH_RAW_${run}`;
  await jsm.streams.add({ name, subjects: [`bench.raw.${run}`] });
  await publishAll(pub, `bench.raw.${run}`, msgs);
  while ((await jsm.streams.info(name)).state.messages < msgs.length) await sleep(50);
  await jsm.consumers.add(name, {
    durable_name: "raw",
    ack_policy: AckPolicy.Explicit,
    max_ack_pending: 20_000,
  });
  const c = await jetstream(nc).consumers.get(name, "raw");
  let got = 0;
  let done!: () => void;
  const all = new Promise<void>((r) => (done = r));
  const t = performance.now();
  const it = await c.consume({
    max_messages: BATCH * 4,
    callback: (m) => {
      m.ack();
      if (++got === msgs.length) done();
    },
  });
  await all;
  const ms = performance.now() - t;
  await it.close();
  await jsm.streams.delete(name);
  return rate(msgs.length, ms);
}

/** The rows the receiver would store for these messages (parsed once, outside the timing). */
function rows(id: string, msgs: Buffer[]) {
  const subject = asyncReplySubject("mcollective", CALLER, id);
  return msgs.map((m) => {
    const p = parseReply(subject, m, Date.now());
    if (p.kind !== "reply") throw new Error("bench reply does not parse");
    return p.row;
  });
}

const COLS = ["request_id", "sender", "statuscode", "statusmsg", "data", "reply_ms", "stored_ms"] as const;
const CREATE = `create table if not exists raw_replies (request_id text not null, sender text not null,
  statuscode integer not null, statusmsg text not null, data text not null, reply_ms bigint not null,
  stored_ms bigint not null, primary key (request_id, sender))`;

function rawSqlite(dir: string, rs: ReturnType<typeof rows>): number {
  const db = new Database(join(dir, "raw.db"));
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  db.exec(`${CREATE} without rowid`);
  const ins = db.prepare(
    `insert into raw_replies (${COLS.join(",")}) values (?,?,?,?,?,?,?) on conflict do nothing`,
  );
  const batch = db.transaction((part: typeof rs) => {
    for (const r of part)
      ins.run(r.request_id, r.sender, r.statuscode, r.statusmsg, r.data, r.reply_ms, r.stored_ms);
  });
  const t = performance.now();
  for (let i = 0; i < rs.length; i += BATCH) batch(rs.slice(i, i + BATCH));
  const ms = performance.now() - t;
  db.close();
  rmSync(join(dir, "raw.db"), { force: true });
  return rate(rs.length, ms);
}

async function rawPostgres(url: string, rs: ReturnType<typeof rows>): Promise<number> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  await c.query(CREATE);
  const t = performance.now();
  for (let i = 0; i < rs.length; i += BATCH) {
    const part = rs.slice(i, i + BATCH);
    const params: unknown[] = [];
    const values = part.map((r, j) => {
      params.push(r.request_id, r.sender, r.statuscode, r.statusmsg, r.data, r.reply_ms, r.stored_ms);
      return `(${COLS.map((_, k) => `$${j * COLS.length + k + 1}`).join(",")})`;
    });
    await c.query("begin");
    await c.query(
      `insert into raw_replies (${COLS.join(",")}) values ${values.join(",")} on conflict do nothing`,
      params,
    );
    await c.query("commit");
  }
  const ms = performance.now() - t;
  await c.query("drop table raw_replies");
  await c.end();
  return rate(rs.length, ms);
}

async function storedTotal(ports: number[]): Promise<number> {
  let n = 0;
  for (const port of ports) {
    try {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const m = /^chorus_receiver_stored_total\{kind="reply"\} (\d+)/m.exec(text);
      n += Number(m?.[1] ?? 0);
    } catch {
      // not listening yet
    }
  }
  return n;
}

/**
 * N replies published into CHORUS_REPLIES while no receiver runs, then `procs` receiver
 * processes drain them: the rate from the first stored reply to the last.
 */
async function receivers(
  setupDir: string,
  clientConfig: string,
  store: string,
  procs: number,
  pub: NatsConnection,
  msgs: Buffer[],
): Promise<number> {
  const consumer = "BENCH";
  const ports: number[] = [];
  const children: ChildProcess[] = [];
  const startAll = async (): Promise<void> => {
    for (let i = 0; i < procs; i++) {
      const port = await freeLoopbackPort();
      ports.push(port);
      const file = join(setupDir, `receiver-${i}.yaml`);
      writeFileSync(
        file,
        stringify({
          choria_config: clientConfig,
          store,
          consumer,
          batch: BATCH,
          http_listen: "",
          monitor_port: port,
          loglevel: "error",
        }),
      );
      // RECEIVER_NODE_FLAGS: e.g. --cpu-prof, to profile the receivers
      const flags = (process.env.RECEIVER_NODE_FLAGS ?? "").split(" ").filter((f) => f !== "");
      const child = spawn(process.execPath, [...flags, BIN, "receiver", "run", "--config", file], {
        stdio: ["ignore", "ignore", "inherit"],
      });
      children.push(child);
    }
  };
  try {
    const jsm = await jetstreamManager(pub);
    await jsm.streams.purge(REPLIES_STREAM);
    for await (const ci of jsm.consumers.list(REPLIES_STREAM))
      await jsm.consumers.delete(REPLIES_STREAM, ci.name);
    await publishAll(pub, asyncReplySubject("mcollective", CALLER, ID), msgs);
    while ((await jsm.streams.info(REPLIES_STREAM)).state.messages < msgs.length) await sleep(50);
    await startAll();
    let first = 0;
    for (;;) {
      const n = await storedTotal(ports);
      if (n > 0 && first === 0) first = performance.now();
      if (n >= msgs.length) return rate(msgs.length, performance.now() - first);
      await sleep(50);
    }
  } finally {
    for (const c of children) c.kill("SIGTERM");
    await Promise.all(
      children.map((c) => (c.exitCode === null ? new Promise((r) => c.once("exit", r)) : null)),
    );
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "chorus-bench-receiver-"));
  const setup = await createDevSetup({ dir, brokerPort: await freeLoopbackPort(), force: true });
  const broker = new BrokerSupervisor({ settings: brokerSettings(loadConfig(setup.brokerConfig)) });
  await broker.start();
  const pub = await connectAs(setup, "broker");
  const sub = await connectAs(setup, "broker");
  const pgServer = STORES.includes("postgres") ? await startPostgres() : undefined;
  const r: Record<string, number[]> = {};
  await ensureStreams(await jetstreamManager(pub), [
    repliesStreamConfig({ streamMaxAgeMs: 3_600_000, stream_replicas: 1 }),
  ]);
  const add = (k: string, v: number) => (r[k] ??= []).push(v);
  try {
    const msgs = replies(ID);
    const rs = rows(ID, msgs);
    for (let run = 0; run < RUNS; run++) {
      add("nats", await rawSubscription(sub, pub, msgs));
      add("jetstream", await rawJetStream(sub, pub, msgs, run));
      if (STORES.includes("sqlite")) add("sql sqlite", rawSqlite(dir, rs));
      if (pgServer) add("sql postgres", await rawPostgres(pgServer.url, rs));
      for (const procs of [1, 2]) {
        if (STORES.includes("sqlite")) {
          const store = `sqlite:${join(dir, `run${run}-${procs}.db`)}`;
          add(
            `receiver sqlite x${procs}`,
            await receivers(dir, setup.adminClientConfig, store, procs, pub, msgs),
          );
        }
        if (pgServer) {
          const c = new pg.Client({ connectionString: pgServer.url });
          await c.connect();
          await c.query(
            "drop table if exists chorus_replies, chorus_requests, kysely_migration, kysely_migration_lock",
          );
          await c.end();
          add(
            `receiver postgres x${procs}`,
            await receivers(dir, setup.adminClientConfig, pgServer.url, procs, pub, msgs),
          );
        }
      }
    }
    const m = Object.fromEntries(Object.entries(r).map(([k, v]) => [k, median(v)]));
    console.log(`replies per run: ${N}, runs: ${RUNS}, batch: ${BATCH}`);
    for (const [k, v] of Object.entries(r))
      console.log(`${k.padEnd(24)} ${String(m[k]).padStart(8)} replies/s  runs ${v.join(", ")}`);
    const ratio = (a: string, b: string) =>
      m[a] !== undefined && m[b] !== undefined ? ((m[a] as number) / (m[b] as number)).toFixed(2) : "-";
    for (const s of ["sqlite", "postgres"]) {
      if (!STORES.includes(s)) continue;
      for (const p of [1, 2]) {
        const k = `receiver ${s} x${p}`;
        console.log(
          `${k}: / raw NATS ${ratio(k, "nats")}, / raw JetStream ${ratio(k, "jetstream")}, / raw SQL ${ratio(k, `sql ${s}`)}`,
        );
      }
    }
  } finally {
    await pub.close();
    await sub.close();
    await pgServer?.stop();
    await broker.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
