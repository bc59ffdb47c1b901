/**
 * rpcauthprovider = aaasvc on a real server from its config file, behind a real
 * nats-server: each request is authorized by the caller's verified JWT claims, and
 * every denial reaches the audit log with its reason.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { directSubject, type Filter, type RpcReplyBody } from "../../../src/core/protocol/index.js";
import { createClientToken, generateKeyPair, type ClientClaims } from "../../../src/core/security/index.js";
import { Server, type AuditEntry } from "../../../src/server/index.js";
import { startNats, type TestNats } from "../../helpers/nats.js";
import {
  COLLECTIVE,
  auditedServerConfig,
  buildRequest,
  makeFixture,
  parseReply,
  quietLogger,
  type Caller,
  type Fixture,
} from "../helpers.js";

const ID = "aaasvc-node.example.net";
let fx: Fixture;
let nats: TestNats;
let nc: NatsConnection;
let server: Server;
let auditFile: string;

beforeAll(async () => {
  fx = makeFixture();
  nats = await startNats();
  nc = await connect({ servers: nats.url });
  fx.serverSecurity(ID);
  const cfgDir = join(fx.dir, "aaasvccfg");
  auditFile = join(cfgDir, "audit", "audit.log");
  const conf = auditedServerConfig(fx, cfgDir, ID, nats.url, "audit/audit.log", [
    "rpcauthorization = 1",
    "rpcauthprovider = aaasvc",
  ]);
  server = await Server.fromConfigFile(conf, { logger: quietLogger });
  await server.start();
});

afterAll(async () => {
  await server?.stop();
  await nc?.close();
  await nats?.stop();
  fx?.cleanup();
});

type Policy = Pick<ClientClaims, "agents" | "cedar_policy" | "opa_policy">;

function callerWith(callerid: string, policy: Policy): Caller {
  const kp = generateKeyPair();
  const token = createClientToken(
    {
      callerid,
      publicKeyHex: kp.publicHex,
      validityS: 3600,
      permissions: { fleet_management: true },
      ...policy,
    },
    fx.org,
  );
  return { kp, token, callerid };
}

async function call(
  caller: Caller,
  action: string,
  filter?: Filter,
): Promise<{ id: string; body: RpcReplyBody }> {
  const req = buildRequest({ caller, agent: "rpcutil", body: { action }, ...(filter && { filter }) });
  const sub = nc.subscribe(req.replyTo, { max: 1, timeout: 3000 });
  await nc.flush();
  nc.publish(directSubject(COLLECTIVE, ID), req.bytes);
  for await (const m of sub) {
    const body = parseReply(m.data).body;
    if (!body) throw new Error("reply without an mcorpc body");
    return { id: req.id, body };
  }
  throw new Error("no reply");
}

async function auditFor(id: string): Promise<AuditEntry | undefined> {
  await server.audit?.flush();
  return readFileSync(auditFile, "utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as AuditEntry)
    .find((e) => e.request_id === id);
}

const DENIED = 1; // Aborted

describe("rpcauthprovider = aaasvc", () => {
  it("an agents list allows rpcutil.ping and denies rpcutil#inventory, audited with the reason", async () => {
    const alice = callerWith("up=alice", { agents: ["rpcutil.ping"] });
    const ok = await call(alice, "ping");
    expect(ok.body.statuscode).toBe(0);
    expect(ok.body.data.pong).toBeTypeOf("number");
    expect((await auditFor(ok.id))?.decision).toBe("allow");

    const no = await call(alice, "inventory");
    expect(no.body.statuscode).toBe(DENIED);
    expect(no.body.statusmsg).toMatch(/not authorized/);
    const line = await auditFor(no.id);
    expect(line).toMatchObject({
      caller: "up=alice",
      agent: "rpcutil",
      action: "inventory",
      decision: "deny",
    });
    expect(line?.reason).toContain("no agents entry allows rpcutil.inventory");
  });

  it("a cedar_policy caller is allowed and denied by the policy, filter included", async () => {
    const bob = callerWith("up=bob", {
      cedar_policy: [
        `permit(principal == Chorus::Caller::"up=bob", action == Chorus::Action::"rpcutil.ping", resource);`,
        `permit(principal, action == Chorus::Action::"rpcutil.inventory", resource) when { context.filter.identities.contains("${ID}") };`,
      ].join("\n"),
    });
    expect((await call(bob, "ping")).body.statuscode).toBe(0);
    const unfiltered = await call(bob, "inventory");
    expect(unfiltered.body.statuscode).toBe(DENIED);
    expect(await auditFor(unfiltered.id)).toMatchObject({
      decision: "deny",
      reason: "no cedar policy permits the request",
    });
    const filtered = await call(bob, "inventory", {
      fact: [],
      cf_class: [],
      agent: [],
      identity: [ID],
      compound: [],
    });
    expect(filtered.body.statuscode).toBe(0);
  });

  it("a token with neither agents nor a policy is denied; rego is denied with a pointer to cedar", async () => {
    const carol = callerWith("up=carol", {});
    const r = await call(carol, "ping");
    expect(r.body.statuscode).toBe(DENIED);
    expect((await auditFor(r.id))?.reason).toContain("no agents or policy");

    const dave = callerWith("up=dave", { opa_policy: "package io.choria.aaasvc\ndefault allow = true" });
    const d = await call(dave, "ping");
    expect(d.body.statuscode).toBe(DENIED);
    expect((await auditFor(d.id))?.reason).toBe("rego policies are not supported; use cedar_policy");
  });

  it("a token with agents and a policy is denied", async () => {
    const eve = callerWith("up=eve", { agents: ["*"], cedar_policy: "permit(principal, action, resource);" });
    const r = await call(eve, "ping");
    expect(r.body.statuscode).toBe(DENIED);
    expect((await auditFor(r.id))?.reason).toBe("the caller's token has both agents and a policy");
  });
});
