import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager, type JetStreamManager, type StreamInfo } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closeNats, connectNats, type NatsConnection } from "../../../src/core/connector/index.js";
import { encodeMessage, encodeRequest, newRequestId, nowNanos } from "../../../src/core/protocol/index.js";
import {
  createClientToken,
  generateKeyPair,
  orgIssuer,
  sign,
  type KeyPair,
} from "../../../src/core/security/index.js";
import {
  FileAuditor,
  JetStreamAuditor,
  auditMessageId,
  type AuditRecord,
} from "../../../src/services/aaa/auditors.js";
import { RequestSigner } from "../../../src/services/aaa/signer.js";
import { freePort, natsServerBinary } from "../../helpers/nats.js";

let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "chorus-aaa-audit-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function record(n: number, pad = 0): AuditRecord {
  return {
    protocol: "io.choria.signer.v1.signature_audit",
    callerid: "up=alice",
    action: "allow",
    site: "t",
    time: 1_700_000_000 + n,
    request: { id: `req-${n}`, pad: "x".repeat(pad) },
  };
}

const lines = (p: string): AuditRecord[] =>
  existsSync(p)
    ? readFileSync(p, "utf8")
        .split("\n")
        .filter((l) => l !== "")
        .map((l) => JSON.parse(l) as AuditRecord)
    : [];

describe("FileAuditor", () => {
  it("writes JSON lines to a 0600 file, every concurrent record once", async () => {
    const path = join(dir, "plain.log");
    writeFileSync(path, "", { mode: 0o644 });
    const a = new FileAuditor({ path });
    await Promise.all(Array.from({ length: 200 }, (_, i) => a.audit(record(i))));
    await a.close();
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const got = lines(path).map((r) => (r.request as { id: string }).id);
    expect(new Set(got).size).toBe(200);
    expect(got).toHaveLength(200);
    await expect(a.audit(record(1))).rejects.toThrow(/closed/);
  });

  it("rotates by size and keeps only the newest files", async () => {
    const path = join(dir, "rot.log");
    const a = new FileAuditor({ path, rotateBytes: 1000, keep: 2 });
    for (let i = 0; i < 40; i++) await a.audit(record(i, 150));
    await a.close();
    const cur = lines(path);
    const r1 = lines(`${path}.1`);
    const r2 = lines(`${path}.2`);
    expect(existsSync(`${path}.3`)).toBe(false);
    for (const p of [path, `${path}.1`, `${path}.2`]) {
      expect(statSync(p).size).toBeLessThanOrEqual(1000);
      expect(statSync(p).mode & 0o777).toBe(0o600);
    }
    const ids = [...r2, ...r1, ...cur].map((r) => Number((r.request as { id: string }).id.slice(4)));
    // the newest records, in order, ending with the last one written
    expect(ids.at(-1)).toBe(39);
    expect(ids).toEqual(Array.from({ length: ids.length }, (_, i) => 40 - ids.length + i));
    expect(ids.length).toBeLessThan(40);
  });

  it("fails the audit when the file cannot be written", async () => {
    const errors: Error[] = [];
    const a = new FileAuditor({ path: join(dir, "missing", "x.log"), onError: (e) => errors.push(e) });
    await expect(a.audit(record(1))).rejects.toThrow(/ENOENT/);
    expect(errors).toHaveLength(1);
    await a.close();
  });
});

// ---------------------------------------------------------------------------
// JetStream: a plain nats-server that can be killed and restarted on the same port and store

interface Broker {
  url: string;
  kill(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

async function startBroker(): Promise<Broker> {
  const bdir = mkdtempSync(join(tmpdir(), "chorus-aaa-js-"));
  const store = join(bdir, "js");
  mkdirSync(store);
  const port = await freePort();
  const monitor = await freePort();
  const conf = join(bdir, "nats.conf");
  writeFileSync(
    conf,
    `listen: "127.0.0.1:${port}"\nhttp: "127.0.0.1:${monitor}"\njetstream {\n  store_dir: "${store}"\n}\n`,
  );
  let proc: ChildProcess | undefined;
  const start = async () => {
    const p = spawn(natsServerBinary(), ["-c", conf], { stdio: ["ignore", "ignore", "pipe"] });
    let logs = "";
    p.stderr?.on("data", (d: Buffer) => (logs += d.toString()));
    proc = p;
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      if (p.exitCode !== null) throw new Error(`nats-server exited: ${logs}`);
      try {
        const res = await fetch(`http://127.0.0.1:${monitor}/healthz?js-enabled-only=true`);
        if (res.ok) return;
      } catch {
        // not up yet
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`nats-server not ready: ${logs}`);
  };
  const kill = async () => {
    const p = proc;
    if (!p || p.exitCode !== null) return;
    const done = new Promise((r) => p.once("exit", r));
    p.kill("SIGKILL");
    await done;
  };
  await start();
  return {
    url: `nats://127.0.0.1:${port}`,
    kill,
    start,
    async stop() {
      await kill();
      rmSync(bdir, { recursive: true, force: true });
    },
  };
}

const quiet = { info: () => {}, warn: () => {}, error: () => {} };
const STREAM = "CHORUS_AAA_AUDIT";
const SUBJECT = "chorus.aaa.audit";

// After a broker restart the admin connection may still be in its reconnect wait, or
// JetStream may still be recovering its store, while the auditor's connection is
// already back; ask again for a while instead of failing on the first timeout.
async function streamInfo(jsm: JetStreamManager): Promise<StreamInfo> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      return await jsm.streams.info(STREAM);
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

async function storedIds(jsm: JetStreamManager): Promise<string[]> {
  const info = await streamInfo(jsm);
  const ids: string[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
    const m = await jsm.streams.getMessage(STREAM, { seq });
    if (!m) continue;
    const r = m.json<AuditRecord>();
    expect(r.protocol).toBe("io.choria.signer.v1.signature_audit");
    ids.push((r.request as { id: string }).id);
  }
  return ids;
}

describe("JetStreamAuditor", () => {
  let broker: Broker;
  let nc: NatsConnection;
  let admin: NatsConnection;
  let jsm: JetStreamManager;

  beforeAll(async () => {
    broker = await startBroker();
    const opts = { servers: [broker.url], reconnect: true, reconnectTimeWaitMs: 100, logger: quiet };
    nc = await connectNats({ ...opts, name: "aaa-auditor" });
    admin = await connectNats({ ...opts, name: "aaa-test-admin" });
    jsm = await jetstreamManager(admin);
  }, 30_000);
  afterAll(async () => {
    await closeNats(nc).catch(() => {});
    await closeNats(admin).catch(() => {});
    await broker.stop();
  });

  async function freshStream(): Promise<void> {
    await jsm.streams.delete(STREAM).catch(() => false);
    // 2 minutes, Choria's default duplicate window
    await jsm.streams.add({ name: STREAM, subjects: [SUBJECT], duplicate_window: 120_000_000_000 });
  }

  it("keeps signing through a broker outage and stores exactly one record per signed request", async () => {
    await freshStream();
    const spoolFile = join(dir, "burst.spool");
    const auditor = await JetStreamAuditor.create({
      nc,
      subject: SUBJECT,
      stream: STREAM,
      spoolFile,
      ackTimeoutMs: 500,
      retryMs: 100,
    });
    const orgKp = generateKeyPair();
    const org = orgIssuer(orgKp);
    const delegatorKp = generateKeyPair();
    const userKp: KeyPair = generateKeyPair();
    const signer = new RequestSigner({
      site: "t",
      issuers: [orgKp.publicHex],
      signerToken: createClientToken(
        {
          callerid: "aaa=signer",
          publicKeyHex: delegatorKp.publicHex,
          validityS: 3600,
          permissions: { authentication_delegator: true },
        },
        org,
      ),
      signerSeedHex: delegatorKp.seedHex,
      maxValiditySeconds: 7200,
      authorizer: { name: "all", authorize: () => ({ allowed: true, reason: "ok" }) },
      auditors: [auditor],
    });
    const token = createClientToken(
      {
        callerid: "up=alice",
        publicKeyHex: userKp.publicHex,
        validityS: 3600,
        permissions: { signed_fleet_management: true },
      },
      org,
    );
    const signOne = async (): Promise<string | undefined> => {
      const id = newRequestId();
      const bytes = encodeRequest({
        message: encodeMessage('{"agent":"rpcutil","action":"ping","data":{}}'),
        id,
        sender: "laptop",
        caller: "up=alice",
        collective: "mcollective",
        agent: "rpcutil",
        ttl: 60,
        time: nowNanos(),
      });
      const out = await signer.sign({
        token,
        signature: sign(userKp.seedHex, bytes).toString("hex"),
        request: bytes,
      });
      return out.ok ? id : undefined;
    };

    const signed: string[] = [];
    const wave = async (n: number) => {
      const ids = await Promise.all(Array.from({ length: n }, () => signOne()));
      for (const id of ids) if (id) signed.push(id);
    };
    await wave(100);
    // kill the broker while a wave is in flight
    const during = wave(100);
    await broker.kill();
    await during;
    await wave(100);
    expect(signed).toHaveLength(300);
    expect(auditor.spooled).toBeGreaterThan(0);
    // publishes to the dead broker time out and are counted, then retried
    const deadline = Date.now() + 5000;
    while (auditor.errors === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(auditor.errors).toBeGreaterThan(0);
    // the spool holds what the broker has not acknowledged, in a file only we can read
    expect(statSync(spoolFile).mode & 0o777).toBe(0o600);

    await broker.start();
    await auditor.flushed(30_000);
    await auditor.close();

    const ids = await storedIds(jsm);
    expect(ids).toHaveLength(300);
    expect(new Set(ids)).toEqual(new Set(signed));
  }, 90_000);

  it("re-sends the spool after a crash, and JetStream drops what it already stored", async () => {
    await freshStream();
    const spoolFile = join(dir, "crash.spool");
    const first = await JetStreamAuditor.create({ nc, subject: SUBJECT, spoolFile, ackTimeoutMs: 2000 });
    for (let i = 0; i < 5; i++) await first.audit(record(i));
    await first.flushed();
    await first.close();
    expect(await storedIds(jsm)).toHaveLength(5);

    // a crash that lost the ack markers of records 3 and 4, with two records never sent
    const spooled = (n: number) => {
      const line = JSON.stringify(record(n));
      return `${JSON.stringify({ id: auditMessageId(line), r: record(n) })}\n`;
    };
    writeFileSync(spoolFile, spooled(3) + spooled(4) + spooled(5) + spooled(6) + '{"id":"torn', {
      mode: 0o600,
    });
    const second = await JetStreamAuditor.create({ nc, subject: SUBJECT, spoolFile, ackTimeoutMs: 2000 });
    expect(second.spooled).toBe(4);
    await second.flushed();
    await second.close();
    const ids = await storedIds(jsm);
    expect(ids.sort()).toEqual(["req-0", "req-1", "req-2", "req-3", "req-4", "req-5", "req-6"]);

    // and a clean restart has nothing left to send
    const third = await JetStreamAuditor.create({ nc, subject: SUBJECT, spoolFile });
    expect(third.spooled).toBe(0);
    await third.close();
  }, 60_000);

  it("fails audits once the spool is full, so nothing unaudited is signed", async () => {
    await freshStream();
    await jsm.streams.delete(STREAM); // nothing will ever ack
    const errors: Error[] = [];
    const a = await JetStreamAuditor.create({
      nc,
      subject: SUBJECT,
      spoolFile: join(dir, "full.spool"),
      maxSpool: 3,
      ackTimeoutMs: 200,
      retryMs: 50,
      onError: (e) => errors.push(e),
    });
    for (let i = 0; i < 3; i++) await a.audit(record(i));
    await expect(a.audit(record(3))).rejects.toThrow(/spool is full/);
    expect(errors.some((e) => /spool is full/.test(e.message))).toBe(true);
    expect(a.spooled).toBe(3);
    await a.close();
    // the three survive for the next start
    const b = await JetStreamAuditor.create({ nc, subject: SUBJECT, spoolFile: join(dir, "full.spool") });
    expect(b.spooled).toBe(3);
    await b.close();
  }, 30_000);
});
