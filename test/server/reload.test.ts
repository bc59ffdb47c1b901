import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Command } from "commander";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { register } from "../../src/apps/cli/server.js";
import {
  broadcastSubject,
  directSubject,
  serviceSubject,
  type RpcReplyBody,
} from "../../src/core/protocol/index.js";
import { Server } from "../../src/server/index.js";
import { startNats, type TestNats } from "../helpers/nats.js";
import {
  COLLECTIVE,
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

beforeAll(async () => {
  nats = await startNats();
  fx = makeFixture();
  nc = await connect({ servers: nats.url });
});
afterAll(async () => {
  await nc?.close();
  await nats?.stop();
  fx?.cleanup();
});

const ACTIVATE = `if [ "$3" = io.choria.mcorpc.external.v1.activation_request ]; then echo '{"activate":true}' > "$2"; exit 0; fi`;

function agent(dir: string, name: string, body: string, meta: Record<string, unknown> = {}): void {
  const ddl = {
    metadata: {
      name,
      description: "reload test",
      author: "tests",
      license: "Apache-2.0",
      version: "1.0.0",
      url: "https://example.invalid",
      timeout: 4,
      provider: "external",
      ...meta,
    },
    actions: [{ action: "run", description: "run", input: {}, output: {} }],
  };
  writeFileSync(join(dir, `${name}.json`), JSON.stringify(ddl));
  writeFileSync(join(dir, name), `#!/bin/sh\n${ACTIVATE}\n${body}\n`, { mode: 0o755 });
}

const says = (word: string, delay = 0) =>
  `${delay ? `sleep ${delay}; ` : ""}echo '{"statuscode":0,"statusmsg":"OK","data":{"says":"${word}"}}' > "$2"`;

function config(id: string, libdir: string): string {
  fx.serverSecurity(id);
  const conf = join(fx.dir, `${id}.conf`);
  writeFileSync(
    conf,
    [
      `identity = ${id}`,
      `collectives = ${COLLECTIVE}`,
      `plugin.choria.middleware_hosts = ${nats.url}`,
      `plugin.security.choria.seed_file = ${id}.seed`,
      `plugin.security.choria.token_file = ${id}.jwt`,
      "plugin.security.issuer.names = dev",
      `plugin.security.issuer.dev.public = ${fx.orgKp.publicHex}`,
      `libdir = ${libdir}`,
      "plugin.actionpolicy.allow_unconfigured = true",
      "loglevel = error",
    ].join("\n") + "\n",
  );
  return conf;
}

async function call(
  id: string,
  name: string,
  waitMs = 600,
  subject?: string,
): Promise<RpcReplyBody | undefined> {
  const req = buildRequest({ caller: fx.client, agent: name, body: { action: "run" } });
  let body: RpcReplyBody | undefined;
  const sub = nc.subscribe(req.replyTo, { callback: (_e, m) => void (body = parseReply(m.data).body) });
  await nc.flush();
  nc.publish(subject ?? directSubject(COLLECTIVE, id), req.bytes);
  await nc.flush();
  for (let i = 0; i < waitMs / 20 && !body; i++) await sleep(20);
  sub.unsubscribe();
  return body;
}

describe("reloadAgents", () => {
  it("adds, replaces and removes libdir agents; in-flight requests still get their reply", async () => {
    const id = "reload.example";
    const lib = join(fx.dir, "lib-reload");
    const dir = join(lib, "mcollective", "agent");
    mkdirSync(dir, { recursive: true });
    agent(dir, "alpha", says("alpha v1"));
    agent(dir, "slowpoke", says("slow v1", 1));
    agent(dir, "doomed", says("doomed"));
    const server = await Server.fromConfigFile(config(id, lib), {
      logger: quietLogger,
      activationTimeoutMs: 10_000,
    });
    await server.start();
    try {
      expect(server.registry.names()).toEqual(
        expect.arrayContaining(["alpha", "slowpoke", "doomed", "rpcutil", "discovery", "choria_util"]),
      );
      expect((await call(id, "alpha"))?.data).toEqual({ says: "alpha v1" });

      // A request that is running while the reload replaces its agent.
      const inflight = call(id, "slowpoke", 3000);
      await sleep(200);
      agent(dir, "alpha", says("alpha v2"));
      agent(dir, "slowpoke", says("slow v2"));
      agent(dir, "newcomer", says("new"), { service: true });
      rmSync(join(dir, "doomed.json"));
      writeFileSync(join(dir, "broken.json"), "{ not json");
      const result = await server.reloadAgents();
      expect(result.loaded.sort()).toEqual(["alpha", "newcomer", "slowpoke"]);
      expect(result.removed).toEqual(["doomed"]);
      expect(result.problems.map((p) => p.reason).join()).toMatch(/broken\.json: invalid JSON/);

      expect((await inflight)?.data).toEqual({ says: "slow v1" });
      expect((await call(id, "alpha"))?.data).toEqual({ says: "alpha v2" });
      expect((await call(id, "slowpoke"))?.data).toEqual({ says: "slow v2" });
      expect(await call(id, "doomed", 300)).toBeUndefined();
      expect(server.stats.dropped.unknown_agent).toBe(1);
      // the new service agent listens on its service subject, not the broadcast one
      expect((await call(id, "newcomer", 600, serviceSubject(COLLECTIVE, "newcomer")))?.data).toEqual({
        says: "new",
      });
      expect(await call(id, "newcomer", 300, broadcastSubject(COLLECTIVE, "newcomer"))).toBeUndefined();
      // built-ins are untouched
      expect((await call(id, "rpcutil"))?.statuscode).toBe(2); // rpcutil has no "run" action
    } finally {
      await server.stop();
    }
  });

  it("chorus server run reloads on SIGHUP", async () => {
    const id = "sighup.example";
    const lib = join(fx.dir, "lib-sighup");
    const dir = join(lib, "mcollective", "agent");
    mkdirSync(dir, { recursive: true });
    const p = new Command().exitOverride();
    register(p);
    const running = p.parseAsync(["node", "chorus", "server", "run", "--config", config(id, lib)]);
    try {
      let ready: RpcReplyBody | undefined;
      for (let i = 0; i < 30 && !ready; i++) ready = await call(id, "rpcutil", 200);
      expect(ready).toBeDefined();
      expect(await call(id, "late", 300)).toBeUndefined();
      agent(dir, "late", says("here now"));
      process.kill(process.pid, "SIGHUP");
      let r: RpcReplyBody | undefined;
      for (let i = 0; i < 30 && !r; i++) r = await call(id, "late", 200);
      expect(r?.data).toEqual({ says: "here now" });
    } finally {
      process.emit("SIGTERM");
      await running;
    }
  });
});
