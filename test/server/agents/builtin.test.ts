import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DISCOVERY_DDL, registerBuiltinAgents } from "../../../src/server/index.js";
import { actionNames, builtinDDL } from "../../../src/core/ddl/index.js";
import { StatusCode, type RpcReplyBody } from "../../../src/core/protocol/index.js";
import {
  AgentRegistry,
  CHORUS_VERSION,
  NodeRuntime,
  RequestDecoder,
  type HostInfo,
} from "../../../src/server/index.js";
import { COLLECTIVE, buildRequest, makeFixture, parseReply, type Fixture } from "../helpers.js";

let fx: Fixture;
let node: NodeRuntime;
let decoder: RequestDecoder;

const host: HostInfo = {
  version: CHORUS_VERSION,
  startTime: Date.parse("2026-01-01T00:00:00Z"),
  configFile: "/etc/choria/server.conf",
  securityProvider: "choria",
  middlewareServers: ["tls://broker.example:4222"],
  connectorTls: true,
  connectedServer: () => "tls://broker.example:4222",
  connectionStats: () => ({ in_msgs: 3, out_msgs: 4 }),
  configItem: (k) => (k === "loglevel" ? "debug" : undefined),
};

beforeAll(() => {
  fx = makeFixture();
  const sec = fx.serverSecurity("agents.example");
  const registry = new AgentRegistry();
  registerBuiltinAgents(registry);
  node = new NodeRuntime({
    identity: "agents.example",
    collectives: [COLLECTIVE, "other"],
    registry,
    credential: { token: sec.token, sign: (d) => sec.sign(d) },
    facts: { os: "linux", cpu: { count: 4 }, role: "web" },
    classes: ["base", "web"],
    host,
  });
  decoder = new RequestDecoder({ security: sec });
});
afterAll(() => fx.cleanup());

async function call(
  agent: string,
  action: string,
  data: Record<string, unknown> = {},
): Promise<RpcReplyBody> {
  const req = buildRequest({ caller: fx.client, agent, body: { action, data } });
  const out = await node.handle(decoder.decode(req.bytes));
  expect(out).toBeDefined();
  return parseReply(out!.data).body!;
}

describe("discovery", () => {
  it("answers base64('ping') with a raw pong, as Choria's broadcast discovery expects", async () => {
    // The client double-encodes: the Request message is base64(base64("ping")).
    const req = buildRequest({
      caller: fx.client,
      agent: "discovery",
      body: Buffer.from("ping").toString("base64"),
    });
    const r = parseReply((await node.handle(decoder.decode(req.bytes)))!.data);
    expect(r.message.toString()).toBe("pong");
    expect(r.sender).toBe("agents.example");
    expect(r.agent).toBe("discovery");
  });

  it("answers an mcorpc ping body with {message: pong}", async () => {
    expect(await call("discovery", "ping")).toEqual({
      action: "ping",
      statuscode: 0,
      statusmsg: "OK",
      data: { message: "pong" },
    });
  });

  it("ignores anything else", async () => {
    const req = buildRequest({ caller: fx.client, agent: "discovery", body: "hello" });
    expect(await node.handle(decoder.decode(req.bytes))).toBeUndefined();
  });

  it("has a DDL describing ping", () => {
    expect(actionNames(DISCOVERY_DDL)).toEqual(["ping"]);
  });
});

describe("rpcutil", () => {
  it("implements every action in its DDL", () => {
    const reg = new AgentRegistry();
    registerBuiltinAgents(reg);
    expect(Object.keys(reg.get("rpcutil")!.actions).sort()).toEqual(
      actionNames(builtinDDL("rpcutil")).sort(),
    );
    expect(Object.keys(reg.get("choria_util")!.actions).sort()).toEqual(
      actionNames(builtinDDL("choria_util")).sort(),
    );
  });

  it("ping returns the time in seconds", async () => {
    const r = await call("rpcutil", "ping");
    expect(r.statuscode).toBe(0);
    expect(Math.abs((r.data.pong as number) - Date.now() / 1000)).toBeLessThan(5);
  });

  it("agent_inventory lists agents with their metadata", async () => {
    const r = await call("rpcutil", "agent_inventory");
    const agents = r.data.agents as Record<string, unknown>[];
    expect(agents.map((a) => a.agent)).toEqual(["choria_util", "discovery", "rpcutil"]);
    expect(agents[2]).toMatchObject({ agent: "rpcutil", name: "rpcutil", timeout: 2, license: "Apache-2.0" });
  });

  it("collective_info", async () => {
    expect((await call("rpcutil", "collective_info")).data).toEqual({
      main_collective: COLLECTIVE,
      collectives: [COLLECTIVE, "other"],
    });
  });

  it("daemon_stats", async () => {
    const r = await call("rpcutil", "daemon_stats");
    const s = node.stats;
    expect(r.data).toMatchObject({
      agents: ["choria_util", "discovery", "rpcutil"],
      pid: process.pid,
      total: s.total,
      validated: s.validated,
      passed: s.passed,
      starttime: Date.parse("2026-01-01T00:00:00Z") / 1000,
      configfile: "/etc/choria/server.conf",
      version: CHORUS_VERSION,
      events: 0,
      threads: [],
    });
    expect(Object.keys(r.data.times as object).sort()).toEqual(["cstime", "cutime", "stime", "utime"]);
  });

  it("get_config_item returns known items and refuses unknown ones", async () => {
    expect((await call("rpcutil", "get_config_item", { item: "loglevel" })).data).toEqual({
      item: "loglevel",
      value: "debug",
    });
    const r = await call("rpcutil", "get_config_item", { item: "nope" });
    expect(r.statuscode).toBe(StatusCode.Aborted);
    expect(r.statusmsg).toMatch(/Unknown config property nope/);
    expect((await call("rpcutil", "get_config_item", {})).statuscode).toBe(StatusCode.MissingData);
  });

  it("get_data fails for unknown data sources", async () => {
    const r = await call("rpcutil", "get_data", { source: "nosuch" });
    expect(r.statuscode).toBe(StatusCode.Aborted);
    expect(r.statusmsg).toMatch(/nosuch/);
    expect((await call("rpcutil", "get_data", { source: "bad source!" })).statuscode).toBe(
      StatusCode.InvalidData,
    );
  });

  it("get_data answers each built-in data plugin", async () => {
    const f = await call("rpcutil", "get_data", { source: "fstat", query: "/etc/hosts" });
    expect(f.statuscode).toBe(StatusCode.OK);
    expect(f.data).toMatchObject({ name: "/etc/hosts", present: 1, type: "file" });
    const c = await call("rpcutil", "get_data", { source: "choria" });
    expect(c.data).toMatchObject({ version: CHORUS_VERSION, configfile: "/etc/choria/server.conf" });
    const s = await call("rpcutil", "get_data", { source: "sysctl", query: "no.such.key" });
    expect(s.statuscode).toBe(StatusCode.Aborted);
  });

  it("get_fact and get_facts, including dotted paths and missing facts", async () => {
    expect((await call("rpcutil", "get_fact", { fact: "os" })).data).toEqual({ fact: "os", value: "linux" });
    expect((await call("rpcutil", "get_fact", { fact: "cpu.count" })).data).toEqual({
      fact: "cpu.count",
      value: 4,
    });
    expect((await call("rpcutil", "get_fact", { fact: "absent" })).data).toEqual({
      fact: "absent",
      value: null,
    });
    expect((await call("rpcutil", "get_facts", { facts: "os, role,absent" })).data).toEqual({
      values: { os: "linux", role: "web", absent: null },
    });
    expect((await call("rpcutil", "get_facts", { facts: "os;rm" })).statuscode).toBe(StatusCode.InvalidData);
  });

  it("inventory", async () => {
    expect((await call("rpcutil", "inventory")).data).toEqual({
      agents: ["choria_util", "discovery", "rpcutil"],
      facts: { os: "linux", cpu: { count: 4 }, role: "web" },
      classes: ["base", "web"],
      version: CHORUS_VERSION,
      main_collective: COLLECTIVE,
      collectives: [COLLECTIVE, "other"],
      data_plugins: ["choria", "fstat", "machine_state", "scout", "sysctl"],
      // go-choria sends a list of machine states; this node runs none
      machines: [],
      upgradable: false,
    });
  });
});

describe("choria_util", () => {
  it("info describes the node's connection and security", async () => {
    const r = await call("choria_util", "info");
    expect(r.statuscode).toBe(0);
    expect(r.data).toMatchObject({
      security: "choria",
      secure_protocol: true,
      connector: "nats",
      connector_tls: true,
      choria_version: CHORUS_VERSION,
      connected_server: "tls://broker.example:4222",
      client_stats: { in_msgs: 3, out_msgs: 4 },
      middleware_servers: ["tls://broker.example:4222"],
      using_srv: false,
      client_flavour: "nats.js",
    });
    expect(r.data.client_version).toMatch(/^\d+\.\d+\.\d+/);
  });

  it("machine actions on a node without a machine store answer as go-choria's do", async () => {
    const states = await call("choria_util", "machine_states", {});
    expect(states.statuscode).toBe(StatusCode.OK);
    expect(states.data).toMatchObject({ machine_names: [], machine_ids: [], states: {} });
    const one = await call("choria_util", "machine_state", { name: "foo" });
    expect(one.statuscode).not.toBe(StatusCode.OK);
    expect(one.statusmsg).toMatch(/No running machines/);
    const moved = await call("choria_util", "machine_transition", { name: "foo", transition: "go" });
    expect(moved.statuscode).not.toBe(StatusCode.OK);
    expect(moved.statusmsg).toMatch(/not initialized/);
  });
});
