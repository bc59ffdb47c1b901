import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pino } from "pino";
import { Client } from "../../../src/client/index.js";
import { clientSettings, loadConfig } from "../../../src/core/config/index.js";
import { closeNats, connectNats, type NatsConnection } from "../../../src/core/connector/index.js";
import { decodeTransport, type TransportHeaders } from "../../../src/core/protocol/index.js";
import { securityFromSettings } from "../../../src/core/security/index.js";
import {
  FederationBroker,
  transformReply,
  transformRequest,
} from "../../../src/services/federation/index.js";
import { freePort } from "../../helpers/nats.js";
import { startFederatedNetworks, type FederatedNetworks } from "./fixture.js";

const quiet = pino({ level: "silent" });
const BIN = fileURLToPath(new URL("../../../bin/chorus.js", import.meta.url));

/** An org_admin connection on the federation network: sees every message there. */
async function watch(path: string, servers: string[]): Promise<NatsConnection> {
  const sec = securityFromSettings(clientSettings(loadConfig(path)));
  return connectNats({
    servers,
    name: "federation watcher",
    seedHex: sec.seedHex,
    ...(sec.natsJwt !== undefined && { natsJwt: sec.natsJwt }),
    ...(sec.caFile !== undefined && { caFile: sec.caFile }),
  });
}

function headersOf(data: Uint8Array): TransportHeaders {
  return decodeTransport(data, { strict: false }).transport.headers ?? {};
}

async function until(what: string, ok: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await ok()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe("federation: two collectives joined by federation brokers", () => {
  let net: FederatedNetworks;
  let client: Client;
  let watcher: NatsConnection;
  let eastB: FederationBroker;
  let west: FederationBroker;
  let eastProc: ChildProcess | undefined;
  const all = () => [...(net.collectives.east?.nodes ?? []), ...(net.collectives.west?.nodes ?? [])];

  beforeAll(async () => {
    net = await startFederatedNetworks({ east: 150, west: 150 });
    // east: one instance in this process, one `chorus federation run` process (killed below)
    eastB = FederationBroker.fromFile(
      net.federationConfig("east", "fed-east-b", "workers: 2\nmonitor_port: 0"),
      {
        logger: quiet,
      },
    );
    west = FederationBroker.fromFile(net.federationConfig("west", "fed-west-a"), { logger: quiet });
    await eastB.start();
    await west.start();
    const procPort = await freePort();
    const cfg = net.federationConfig("east", "fed-east-a", `monitor_port: ${procPort}`);
    eastProc = spawn(process.execPath, [BIN, "federation", "run", "--config", cfg], { stdio: "ignore" });
    watcher = await watch(net.watcherConfig, [net.federationUrl]);
    // the process serves metrics once it is subscribed
    await until(
      "the east process to serve",
      async () => (await fetch(`http://127.0.0.1:${procPort}/metrics`).catch(() => undefined))?.ok === true,
      20_000,
    );
    client = await Client.fromConfigFile(net.federatedClientConfig, {
      logger: quiet,
      verifyReplySignatures: true,
    });
  }, 60_000);

  afterAll(async () => {
    await client?.close();
    if (watcher) await closeNats(watcher);
    eastProc?.kill("SIGKILL");
    await eastB?.stop();
    await west?.stop();
    await net?.stop();
  });

  it("a federated client discovers and pings nodes of both collectives, signatures verified", async () => {
    const ping = await client.ping({
      windowed: true,
      windowMs: 1_000,
      timeoutMs: 10_000,
      verifyReplySignatures: true,
    });
    expect(new Set(ping.replies.map((r) => r.sender))).toEqual(new Set(all()));
    const r = await client.request(
      "rpcutil",
      "ping",
      {},
      { nodes: all(), timeoutMs: 10_000, verifyReplySignatures: true },
    );
    expect(r.stats.ok).toBe(300);
    expect(r.stats.dropped.signature).toBe(0);
  });

  it("a direct request to 300 nodes goes as 200 + 100 targets to each cluster, seen-by has every hop", async () => {
    const requests: TransportHeaders[] = [];
    const sub = watcher.subscribe("choria.federation.*.federation", {
      callback: (_e, m) => {
        requests.push({ ...headersOf(m.data), reply: m.subject });
      },
    });
    const replies: TransportHeaders[] = [];
    const rsub = watcher.subscribe("*.reply.>", {
      callback: (_e, m) => {
        replies.push(headersOf(m.data));
      },
    });
    await watcher.flush();
    const r = await client.request(
      "rpcutil",
      "ping",
      {},
      { nodes: all(), timeoutMs: 10_000, verifyReplySignatures: true },
    );
    expect(r.stats.ok).toBe(300);
    await until("all replies seen", () => replies.length >= 300);
    sub.unsubscribe();
    rsub.unsubscribe();
    const byCluster = (c: string) =>
      requests
        .filter((h) => h.reply === `choria.federation.${c}.federation`)
        .map((h) => h.federation?.targets?.length);
    expect(byCluster("east")).toEqual([200, 100]);
    expect(byCluster("west")).toEqual([200, 100]);
    for (const h of requests) expect(h.federation?.request).toBe(r.stats.requestid);
    // a reply's hops: the client's publish, the federation broker's request path, its reply path
    const eastReply = replies.find((h) => h.sender?.startsWith("east-"));
    const hops = eastReply?.trace ?? [];
    expect(eastReply?.federation).toBeUndefined();
    expect(hops).toHaveLength(3);
    const [c, req, rep] = hops as unknown as [string[], string[], string[]];
    const fedUrl = net.federationUrl.replace("tls://", "nats://");
    const eastUrl = net.collectives.east?.url.replace("tls://", "nats://");
    expect(c).toEqual([fedUrl, client.identity, fedUrl]);
    expect(req[0]).toBe(fedUrl);
    expect(req[1]).toMatch(/^fed-east-[ab] \(choria_nats_ingest:\d, choria_request_transformer:\d/);
    expect(req[2]).toBe(eastUrl);
    expect(rep[0]).toBe(eastUrl);
    expect(rep[1]).toMatch(/^fed-east-[ab] \(choria_nats_ingest:\d, choria_reply_transformer:\d/);
    expect(rep[2]).toBe(fedUrl);
  });

  it("bad messages on the federation subject are dropped and counted, not forwarded", async () => {
    const before = await eastB.metrics.value("chorus_federation_bad_messages_total");
    for (let i = 0; i < 20; i++)
      watcher.publish("choria.federation.east.federation", new TextEncoder().encode("garbage"));
    await watcher.flush();
    await until(
      "drops counted",
      async () => (await eastB.metrics.value("chorus_federation_bad_messages_total")) > before,
    );
    // pure functions name the reason
    expect(() =>
      transformRequest(new TextEncoder().encode("{}"), "east", { incoming: "", processor: "", outgoing: "" }),
    ).toThrow(/transport/);
    expect(() =>
      transformReply(new TextEncoder().encode("nope"), { incoming: "", processor: "", outgoing: "" }),
    ).toThrow();
  });

  it("one east federation broker killed -9 mid-request: the request ends, a retry gets the rest", async () => {
    expect(eastProc?.exitCode).toBeNull();
    // killed when the first reply is in: the request is under way in both instances
    let killed = false;
    const r = await client.request(
      "rpcutil",
      "ping",
      {},
      {
        nodes: all(),
        timeoutMs: 4_000,
        retries: 2,
        verifyReplySignatures: true,
        onReply: () => {
          if (!killed) eastProc?.kill("SIGKILL");
          killed = true;
        },
      },
    );
    await until("the process to die", () => eastProc?.exitCode !== null || eastProc?.signalCode !== null);
    expect(eastProc?.signalCode).toBe("SIGKILL");
    expect(r.stats.ok).toBe(300);
    // and a new request goes through the survivor alone
    const after = await client.request(
      "rpcutil",
      "ping",
      {},
      { nodes: all(), timeoutMs: 10_000, verifyReplySignatures: true },
    );
    expect(after.stats.ok).toBe(300);
    expect(
      await eastB.metrics.value("choria_federation_published_msgs", { connected_to: "collective" }),
    ).toBeGreaterThan(0);
  });
});
