import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Spool } from "../../../src/services/submission/index.js";
import { startJsBroker, type JsBroker } from "./jsbroker.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let broker: JsBroker;
let dir: string;

beforeAll(async () => {
  broker = await startJsBroker();
  dir = mkdtempSync(join(tmpdir(), "chorus-spool-"));
});

afterAll(async () => {
  await broker?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("reliable submission through a broker crash", () => {
  it("delivers 1000 reliable messages exactly once and in order when the broker is killed midway", async () => {
    const adminCred = await broker.client("choria=admin", { streams_admin: true });
    const admin = await broker.connect(adminCred);
    await (
      await jetstreamManager(admin)
    ).streams.add({
      name: "SUBMISSIONS",
      subjects: ["mcollective.submission.in.>"],
      duplicate_window: 120_000_000_000,
    });
    await admin.close();

    const cred = await broker.server("node1.example.net", ["mcollective"], { submission: true });
    // the node's connection reconnects by itself, as the server's does
    const nc = await broker.connect(cred, { reconnect: true });
    const spool = new Spool({
      dir,
      identity: "node1.example.net",
      collective: "mcollective",
      maxSpoolSize: 1000,
      pollIntervalMs: 50,
      ackTimeoutMs: 500,
      retryMinMs: 100,
      retryMaxMs: 500,
    });
    spool.start(nc);

    const N = 1000;
    let killed = false;
    for (let i = 0; i < N; i++) {
      spool.submit({
        subject: "crash.test",
        payload: String(i),
        sender: "test",
        reliable: true,
        priority: 2,
      });
      if (i % 25 === 24) await sleep(1); // let the publisher run alongside
      if (!killed && spool.stats().published >= 300) {
        killed = true;
        await broker.kill();
        await sleep(1000);
        await broker.restart();
      }
    }
    if (!killed) {
      await broker.kill();
      await sleep(1000);
      await broker.restart();
    }
    const deadline = Date.now() + 60_000;
    while (spool.stats().pending[2]! > 0 && Date.now() < deadline) await sleep(50);
    await spool.stop();
    const st = spool.stats();
    expect(st.pending).toEqual([0, 0, 0, 0, 0]);
    expect(st.corrupt + st.exhausted + st.expired).toBe(0);

    const check = await broker.connect(await broker.client("choria=check", { streams_admin: true }));
    const jsm = await jetstreamManager(check);
    const info = await jsm.streams.info("SUBMISSIONS");
    expect(info.state.messages).toBe(N);
    const seen: number[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const m = await jsm.streams.getMessage("SUBMISSIONS", { seq });
      seen.push(Number(m!.string()));
    }
    // exactly once: every index present, none twice; and in submission order
    expect(new Set(seen).size).toBe(N);
    expect(seen).toEqual(Array.from({ length: N }, (_, i) => i));
    console.log(
      `reliable crash test: published ${st.published}, retries ${st.retries}, duplicates dropped by the stream ${st.duplicates}`,
    );
  }, 120_000);
});
