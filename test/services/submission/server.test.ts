import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Server } from "../../../src/server/index.js";
import { ChoriaSecurity, verify, writeSeedFile } from "../../../src/core/security/index.js";
import { Spool } from "../../../src/services/submission/index.js";
import { startJsBroker, type Cred, type JsBroker } from "./jsbroker.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let broker: JsBroker;
let dir: string;
let jsm: JetStreamManager;
let cred: Cred;
const identity = "node1.example.net";

function security(): ChoriaSecurity {
  writeSeedFile(join(dir, "node.seed"), cred.kp);
  writeFileSync(join(dir, "node.jwt"), cred.token);
  writeFileSync(join(dir, "node.jwt.nats"), cred.natsJwt);
  return new ChoriaSecurity({
    seedFile: join(dir, "node.seed"),
    tokenFile: join(dir, "node.jwt"),
    issuers: [broker.org.publicHex],
    caFile: broker.caFile,
  });
}

const newServer = () =>
  new Server({
    identity,
    collectives: ["mcollective"],
    security: security(),
    servers: [broker.url],
    caFile: broker.caFile,
    lifecycle: false,
    defaultAgents: false,
    logLevel: "silent",
    submission: { spool: join(dir, "spool") },
  });

beforeAll(async () => {
  broker = await startJsBroker();
  dir = mkdtempSync(join(tmpdir(), "chorus-subsrv-"));
  const admin = await broker.connect(await broker.client("choria=admin", { streams_admin: true }));
  jsm = await jetstreamManager(admin);
  await jsm.streams.add({ name: "SUBMISSIONS", subjects: ["mcollective.submission.in.>"] });
  cred = await broker.server(identity, ["mcollective"], { submission: true });
});

afterAll(async () => {
  await broker?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("the server drains its submission spool", () => {
  it("publishes what another process spooled, signed with the node key, and keeps the rest over a stop", async () => {
    // what `chorus tool submit` does: write into the server's spool directory
    const writer = new Spool({ dir: join(dir, "spool"), identity, collective: "mcollective" });
    writer.submit({
      subject: "app.events",
      payload: "before start",
      sender: "cron",
      reliable: true,
      sign: true,
    });

    const server = newServer();
    await server.start();
    expect(server.spool).toBeDefined();
    const deadline = Date.now() + 5000;
    while ((await jsm.streams.info("SUBMISSIONS")).state.messages < 1 && Date.now() < deadline)
      await sleep(50);
    const m = await jsm.streams.getMessage("SUBMISSIONS", { seq: 1 });
    expect(m!.subject).toBe("mcollective.submission.in.app.events");
    expect(m!.string()).toBe("before start");
    expect(m!.header.get("Choria-Identity")).toBe(identity);
    expect(m!.header.get("Choria-Token")).toBe(cred.token);
    const sig = Buffer.from(m!.header.get("Choria-Signature"), "hex");
    expect(verify(cred.kp.publicHex, Buffer.from("before start"), sig)).toBe(true);
    await server.stop();

    // spooled while the server is down: waits on disk, goes out at the next start
    writer.submit({ subject: "app.events", payload: "while stopped", sender: "cron", reliable: true });
    await sleep(200);
    expect((await jsm.streams.info("SUBMISSIONS")).state.messages).toBe(1);
    expect(writer.stats().pending[4]).toBe(1);
    const again = newServer();
    await again.start();
    const d2 = Date.now() + 5000;
    while ((await jsm.streams.info("SUBMISSIONS")).state.messages < 2 && Date.now() < d2) await sleep(50);
    expect((await jsm.streams.getMessage("SUBMISSIONS", { seq: 2 }))!.string()).toBe("while stopped");
    await again.stop();
  }, 30_000);

  it("shows the spool on the server's Prometheus endpoint", async () => {
    const spoolDir = join(dir, "spool-metrics");
    const writer = new Spool({ dir: spoolDir, identity, collective: "mcollective" });
    writer.submit({ subject: "app.metrics", payload: "m1", sender: "cron", reliable: true });
    writeFileSync(join(writer.priorityDir(4), "00000000000000000001-bad.msg"), "{not json");
    const server = new Server({
      identity,
      collectives: ["mcollective"],
      security: security(),
      servers: [broker.url],
      caFile: broker.caFile,
      lifecycle: false,
      defaultAgents: false,
      logLevel: "silent",
      statsPort: 0,
      submission: { spool: spoolDir },
    });
    await server.start();
    try {
      const scrape = async () => (await fetch(`http://127.0.0.1:${server.statsPort}/choria/metrics`)).text();
      let body = await scrape();
      const deadline = Date.now() + 5000;
      while (!/^chorus_submission_sent 1$/m.test(body) && Date.now() < deadline) {
        await sleep(50);
        body = await scrape();
      }
      expect(body).toMatch(/^chorus_submission_sent 1$/m);
      expect(body).toMatch(/^chorus_submission_corrupt 1$/m);
      expect(body).toMatch(/^chorus_submission_failed_tries 0$/m);
      expect(body).toMatch(/^chorus_submission_expired 0$/m);
      for (const p of [0, 1, 2, 3, 4])
        expect(body).toMatch(new RegExp(`^chorus_submission_spool_messages\\{priority="${p}"\\} 0$`, "m"));
    } finally {
      await server.stop();
    }
  }, 30_000);
});
