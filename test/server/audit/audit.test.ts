import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { directSubject } from "../../../src/core/protocol/index.js";
import { AuditLog, Server, auditTime, type AuditEntry } from "../../../src/server/index.js";
import { startNats, type TestNats } from "../../helpers/nats.js";
import {
  COLLECTIVE,
  auditedServerConfig,
  buildRequest,
  makeFixture,
  parseReply,
  quietLogger,
  sleep,
  type BuiltRequest,
  type Fixture,
  type ParsedReply,
} from "../helpers.js";

let fx: Fixture;
beforeAll(() => {
  fx = makeFixture();
});
afterAll(() => fx?.cleanup());

const lines = (file: string): AuditEntry[] =>
  readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as AuditEntry);

const entry = (i: number): AuditEntry => ({
  timestamp: auditTime(Date.now()),
  request_id: `req${i}`,
  request_time: auditTime(Date.now()),
  caller: "choria=alice",
  sender: "client.example",
  agent: "rpcutil",
  action: "ping",
  data: { i },
});

describe("AuditLog", () => {
  it("formats times as go-choria does", () => {
    expect(auditTime(Date.UTC(2024, 0, 2, 3, 4, 5, 678))).toBe("2024-01-02T03:04:05.678000+0000");
  });

  it("creates the file 0600, tightens an existing one, and keeps every line across close", async () => {
    const file = join(fx.dir, "audit", "new.log");
    const log = new AuditLog({ file });
    for (let i = 0; i < 3; i++) log.record(entry(i));
    await log.close();
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(lines(file).map((l) => l.request_id)).toEqual(["req0", "req1", "req2"]);

    const old = join(fx.dir, "audit", "old.log");
    writeFileSync(old, "", { mode: 0o644 });
    const log2 = new AuditLog({ file: old });
    log2.record(entry(9));
    await log2.close();
    expect(statSync(old).mode & 0o777).toBe(0o600);
  });

  it("record() only queues: 20 000 records return at once and all reach the file by close()", async () => {
    const file = join(fx.dir, "audit", "many.log");
    const log = new AuditLog({ file });
    const t0 = performance.now();
    for (let i = 0; i < 20_000; i++) log.record(entry(i));
    const spent = performance.now() - t0;
    // Nothing has been written synchronously: the request path never waits for the disk.
    expect(log.written).toBe(0);
    expect(spent).toBeLessThan(1000);
    await log.close();
    const got = lines(file);
    expect(got).toHaveLength(20_000);
    expect(got[19_999]?.request_id).toBe("req19999");
  });

  it("reports write errors instead of throwing", async () => {
    const errors: string[] = [];
    mkdirSync(join(fx.dir, "audit", "isadir.log"), { recursive: true });
    const log = new AuditLog({
      file: join(fx.dir, "audit", "isadir.log"),
      onError: (e) => errors.push(e.message),
    });
    log.record(entry(1));
    await log.close();
    expect(errors.length).toBeGreaterThan(0);
  });
});

describe("rpcaudit on a server", () => {
  let nats: TestNats;
  let nc: NatsConnection;
  beforeAll(async () => {
    nats = await startNats();
    nc = await connect({ servers: nats.url });
  });
  afterAll(async () => {
    await nc?.close();
    await nats?.stop();
  });

  async function send(req: BuiltRequest, subject: string, waitMs = 300): Promise<ParsedReply[]> {
    const got: ParsedReply[] = [];
    const sub = nc.subscribe(req.replyTo, { callback: (_e, m) => void got.push(parseReply(m.data)) });
    await nc.flush();
    nc.publish(subject, req.bytes);
    await nc.flush();
    await sleep(waitMs);
    sub.unsubscribe();
    return got;
  }

  it("writes one line per request, allowed or denied, flushed at stop", async () => {
    const id = "audited.example";
    fx.serverSecurity(id);
    const cfgDir = join(fx.dir, "auditcfg");
    // rpcutil: only the test caller may call it; the audit directory is one the server
    // creates: private, as the audit trail names callers
    const auditFile = join(cfgDir, "private", "audit.log");
    const conf = auditedServerConfig(fx, cfgDir, id, nats.url, "private/audit.log");
    const server = await Server.fromConfigFile(conf, { logger: quietLogger });
    await server.start();
    const allowed = buildRequest({
      caller: fx.client,
      agent: "rpcutil",
      body: { action: "get_fact", data: { fact: "os" } },
    });
    const eve = fx.caller({ callerid: "choria=eve" });
    const denied = buildRequest({ caller: eve, agent: "rpcutil", body: { action: "ping" } });
    let r1: ParsedReply[];
    let r2: ParsedReply[];
    try {
      r1 = await send(allowed, directSubject(COLLECTIVE, id));
      r2 = await send(denied, directSubject(COLLECTIVE, id));
    } finally {
      await server.stop();
    }
    expect(r1[0]?.body?.statuscode).toBe(0);
    expect(r2[0]?.body?.statuscode).toBe(1);
    expect(statSync(auditFile).mode & 0o777).toBe(0o600);
    expect(statSync(join(cfgDir, "private")).mode & 0o777).toBe(0o700);
    const got = lines(auditFile);
    expect(got).toHaveLength(2);
    expect(Object.keys(got[0]!)).toEqual([
      "timestamp",
      "request_id",
      "request_time",
      "caller",
      "sender",
      "agent",
      "action",
      "data",
      "decision",
      "reason",
    ]);
    expect(got[0]).toMatchObject({
      request_id: allowed.id,
      caller: "choria=tester",
      sender: "tester.example",
      agent: "rpcutil",
      action: "get_fact",
      data: { fact: "os" },
    });
    expect(got[0]?.timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+0000$/);
    expect(got[0]).toMatchObject({ decision: "allow" });
    expect(got[1]).toMatchObject({
      request_id: denied.id,
      caller: "choria=eve",
      action: "ping",
      decision: "deny",
    });
    expect(got[1]?.reason).toMatch(/rpcutil\.policy|no policy file|default is deny/);
  });
});
