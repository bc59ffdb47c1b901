import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { directSubject, type RpcReplyBody } from "../../src/core/protocol/index.js";
import { Server, type InstanceStatus } from "../../src/server/index.js";
import { startNats, type TestNats } from "../helpers/nats.js";
import {
  COLLECTIVE,
  TEST_DDL,
  buildRequest,
  makeFixture,
  parseReply,
  quietLogger,
  sleep,
  type Fixture,
} from "./helpers.js";

let nats: TestNats;
let fx: Fixture;
let nc: NatsConnection;
let server: Server;
let statusFile: string;
const ID = "status.example";

beforeAll(async () => {
  nats = await startNats();
  fx = makeFixture();
  statusFile = join(fx.dir, "run", "status.json");
  server = new Server({
    identity: ID,
    collectives: [COLLECTIVE],
    security: fx.serverSecurity(ID),
    servers: [nats.url],
    logger: quietLogger,
    statsPort: 0,
    statusFile,
    statusIntervalMs: 100,
  });
  server.registerAgent(TEST_DDL, {
    echo: (req) => ({ message: req.data.message }),
    boom: () => {
      throw new Error("nope");
    },
  });
  await server.start();
  nc = await connect({ servers: nats.url });
});
afterAll(async () => {
  await nc?.close();
  await server?.stop();
  await nats?.stop();
  fx?.cleanup();
});

async function call(agent: string, action: string, data: Record<string, unknown> = {}) {
  const req = buildRequest({ caller: fx.client, agent, body: { action, data } });
  let body: RpcReplyBody | undefined;
  const sub = nc.subscribe(req.replyTo, { callback: (_e, m) => void (body = parseReply(m.data).body) });
  await nc.flush();
  nc.publish(directSubject(COLLECTIVE, ID), req.bytes);
  await nc.flush();
  for (let i = 0; i < 50 && !body; i++) await sleep(20);
  sub.unsubscribe();
  return body;
}

describe("observability", () => {
  it("writes the status file on start and keeps it current", async () => {
    expect(existsSync(statusFile)).toBe(true);
    await call("testagent", "echo", { message: "hi" });
    await sleep(250);
    const st = JSON.parse(readFileSync(statusFile, "utf8")) as InstanceStatus;
    expect(st).toMatchObject({
      identity: ID,
      connected_server: expect.stringContaining("127.0.0.1"),
      provisioning_mode: false,
      stats: { replies: expect.any(Number), total: expect.any(Number) },
    });
    expect(st.stats.total).toBeGreaterThanOrEqual(1);
    expect(st.uptime).toBeGreaterThanOrEqual(0);
    expect(Math.abs(st.last_message - Date.now() / 1000)).toBeLessThan(5);
    expect(st.agents).toContain("testagent");
  });

  it("choria_util#info reports the same facts", async () => {
    const info = await call("choria_util", "info");
    expect(info?.statuscode).toBe(0);
    expect(info?.data).toMatchObject({
      identity: ID,
      connected_server: expect.stringContaining("127.0.0.1"),
      provisioning_mode: false,
      uptime: expect.any(Number),
      last_message: expect.any(Number),
      stats: { total: expect.any(Number), replies: expect.any(Number) },
      connector: "nats",
    });
  });

  it("serves per-action counters and durations, the pipeline counters and process metrics", async () => {
    await call("testagent", "echo", { message: "again" });
    await call("testagent", "boom");
    const text = await (await fetch(`http://127.0.0.1:${server.statsPort}/choria/metrics`)).text();
    expect(text).toMatch(
      /chorus_server_action_requests\{identity="status\.example",agent="testagent",action="echo",status="0"\} [2-9]/,
    );
    expect(text).toMatch(/chorus_server_action_requests\{[^}]*action="boom",status="5"\} 1/);
    expect(text).toMatch(
      /chorus_server_action_duration_seconds_bucket\{[^}]*agent="testagent",action="echo"/,
    );
    expect(text).toMatch(/chorus_server_action_duration_seconds_count\{[^}]*action="echo"\} [2-9]/);
    expect(text).toMatch(/choria_server_total\{identity="status\.example"\} \d+/);
    expect(text).toMatch(/choria_server_agent_requests\{identity="status\.example",agent="testagent"\}/);
    expect(text).toMatch(/process_cpu_user_seconds_total/);
  });

  it("fromConfigFile reads plugin.choria.status_file_path and the interval", async () => {
    const id = "statuscfg.example";
    fx.serverSecurity(id);
    const conf = join(fx.dir, "statuscfg.conf");
    writeFileSync(
      conf,
      [
        `identity = ${id}`,
        `plugin.choria.middleware_hosts = ${nats.url}`,
        `plugin.security.choria.seed_file = ${id}.seed`,
        `plugin.security.choria.token_file = ${id}.jwt`,
        "plugin.security.issuer.names = dev",
        `plugin.security.issuer.dev.public = ${fx.orgKp.publicHex}`,
        "plugin.choria.status_file_path = cfgstatus.json",
        "plugin.choria.status_update_interval = 1",
      ].join("\n"),
    );
    const s = await Server.fromConfigFile(conf, { logger: quietLogger });
    await s.start();
    try {
      const st = JSON.parse(readFileSync(join(fx.dir, "cfgstatus.json"), "utf8")) as InstanceStatus;
      expect(st.identity).toBe(id);
    } finally {
      await s.stop();
    }
  });
});
