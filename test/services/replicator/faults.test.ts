// Faults for real: `chorus replicator run` (the built CLI) copies 100 000 messages while
// the target broker is killed -9 and restarted and the replicator itself is killed -9 and
// started again; then a partition (the target frozen with SIGSTOP, publishing goes on)
// heals. Afterwards the target holds every source message exactly once, each key's
// messages in source order.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "../../../src/core/connector/index.js";
import { parseSourceHeader } from "../../../src/services/replicator/index.js";
import { JsBroker, jsmOf, publishMany, readAll, until } from "./fixture.js";

const BIN = fileURLToPath(new URL("../../../bin/chorus.js", import.meta.url));
const DIST = fileURLToPath(new URL("../../../dist/services/replicator/copier.js", import.meta.url));
const SRC = fileURLToPath(new URL("../../../src/services/replicator/copier.ts", import.meta.url));

let src: JsBroker;
let dst: JsBroker;
let sNc: NatsConnection;
let sJsm: JetStreamManager;
let dir: string;

beforeAll(async () => {
  if (!existsSync(DIST) || statSync(DIST).mtimeMs < statSync(SRC).mtimeMs)
    throw new Error(
      "dist/ is older than src/services/replicator: run `npm run build` first (this test runs bin/chorus.js)",
    );
  dir = mkdtempSync(join(tmpdir(), "chorus-sr-faults-"));
  [src, dst] = await Promise.all([JsBroker.start(), JsBroker.start()]);
  sNc = await src.connect("src");
  sJsm = await jsmOf(sNc);
}, 30_000);

afterAll(async () => {
  await sNc?.close();
  await Promise.all([src?.stop(), dst?.stop()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function run(config: string): ChildProcess {
  const child = spawn(process.execPath, [BIN, "replicator", "run", "--config", config], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  child.once("exit", (code, signal) => {
    if (signal === null && code !== 0) process.stderr.write(`replicator exited ${code}: ${stderr}\n`);
  });
  return child;
}

async function kill9(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const gone = new Promise((r) => c.once("exit", r));
  c.kill("SIGKILL");
  await gone;
}

async function stop(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const gone = new Promise((r) => c.once("exit", r));
  c.kill("SIGTERM");
  await gone;
}

/** Messages in the target stream (0 while its broker is down). */
async function targetCount(stream: string): Promise<number> {
  const r = await fetch(`http://127.0.0.1:${dst.monitorPort}/jsz?streams=true&accounts=true`).catch(
    () => undefined,
  );
  if (!r?.ok) return 0;
  const j = (await r.json()) as {
    account_details?: { stream_detail?: { name: string; state: { messages: number } }[] }[];
  };
  for (const a of j.account_details ?? [])
    for (const s of a.stream_detail ?? []) if (s.name === stream) return s.state.messages;
  return 0;
}

/** Every source sequence 1..n exactly once on the target, each key's in increasing order. */
async function checkCopies(stream: string, n: number, keyOf: (subject: string) => string): Promise<void> {
  const nc = await dst.connect("check");
  try {
    const msgs = await readAll(await jsmOf(nc), stream);
    const seqs = msgs.map((m) => parseSourceHeader(m.source)?.seq as number);
    const seen = new Set(seqs);
    expect(seqs.length).toBe(n);
    expect(seen.size).toBe(n);
    for (let s = 1; s <= n; s++)
      if (!seen.has(s)) expect.fail(`source message ${s} is missing on the target`);
    const last = new Map<string, number>();
    for (const [i, m] of msgs.entries()) {
      const k = keyOf(m.subject);
      const seq = seqs[i] as number;
      if (seq <= (last.get(k) ?? 0)) expect.fail(`key ${k}: ${seq} after ${last.get(k)}`);
      last.set(k, seq);
    }
  } finally {
    await nc.close();
  }
}

function config(stream: string, target: string, extra = ""): string {
  const file = join(dir, `${stream}.yaml`);
  writeFileSync(
    file,
    [
      "name: FAULTS",
      "loglevel: warn",
      "streams:",
      `  - stream: ${stream}`,
      `    source_url: ${src.url}`,
      `    target_url: ${dst.url}`,
      `    target_stream: ${target}`,
      "    parallel: { subject_token: 2, workers: 64 }",
      extra,
      "",
    ].join("\n"),
  );
  return file;
}

describe("the replicator under faults", () => {
  it("copies 100 000 messages exactly once, in order per key, through a target broker crash and a replicator crash", async () => {
    const N = 100_000;
    await sJsm.streams.add({ name: "FAULT", subjects: ["fault.>"] });
    const file = config("FAULT", "FAULT_COPY");
    let rep = run(file);
    const publishing = publishMany(sNc, N, (i) => `fault.k${i % 200}.x`);
    try {
      await until(async () => (await targetCount("FAULT_COPY")) > 15_000, 60_000, "15 000 copies");
      await dst.kill9();
      await new Promise((r) => setTimeout(r, 1500));
      await dst.up();
      await until(async () => (await targetCount("FAULT_COPY")) > 45_000, 60_000, "45 000 copies");
      await kill9(rep);
      await new Promise((r) => setTimeout(r, 500));
      rep = run(file);
      await publishing;
      await until(async () => (await targetCount("FAULT_COPY")) >= N, 90_000, `${N} copies`);
      await new Promise((r) => setTimeout(r, 1000));
      expect(await targetCount("FAULT_COPY")).toBe(N);
      await checkCopies("FAULT_COPY", N, (s) => s.split(".")[1] as string);
    } finally {
      await publishing.catch(() => undefined);
      await stop(rep);
    }
  }, 240_000);

  it("drains what piled up during a partition (the target frozen) once it heals", async () => {
    const N = 10_000;
    await sJsm.streams.add({ name: "PART", subjects: ["part.>"] });
    const rep = run(config("PART", "PART_COPY"));
    try {
      await publishMany(sNc, 2000, (i) => `part.k${i % 50}.x`);
      await until(async () => (await targetCount("PART_COPY")) === 2000, 30_000, "2 000 copies before");
      // a partition: the target stops answering, its TCP connections stay open
      dst.proc?.kill("SIGSTOP");
      await publishMany(sNc, N - 2000, (i) => `part.k${i % 50}.x`, undefined, 2000);
      await new Promise((r) => setTimeout(r, 3000));
      dst.proc?.kill("SIGCONT");
      await until(async () => (await targetCount("PART_COPY")) >= N, 60_000, `${N} copies after healing`);
      await new Promise((r) => setTimeout(r, 1000));
      expect(await targetCount("PART_COPY")).toBe(N);
      await checkCopies("PART_COPY", N, (s) => s.split(".")[1] as string);
    } finally {
      dst.proc?.kill("SIGCONT");
      await stop(rep);
    }
  }, 120_000);
});
