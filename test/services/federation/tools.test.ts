import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pino } from "pino";
import { Client } from "../../../src/client/index.js";
import { clientSettings, loadConfig } from "../../../src/core/config/index.js";
import { securityFromSettings } from "../../../src/core/security/index.js";
import {
  FederationBroker,
  federationTrace,
  type FederationStats,
  type FederationTrace,
} from "../../../src/services/federation/index.js";
import { startFederatedNetworks, type FederatedNetworks } from "./fixture.js";

const quiet = pino({ level: "silent" });
const BIN = fileURLToPath(new URL("../../../bin/chorus.js", import.meta.url));

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI; `onLine` sees stdout lines as they come (and may signal the process). */
function chorus(
  args: string[],
  onLine?: (line: string, kill: (s: NodeJS.Signals) => void) => void,
): Promise<Run> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let partial = "";
    p.stdout.on("data", (b: Buffer) => {
      stdout += b.toString();
      partial += b.toString();
      const lines = partial.split("\n");
      partial = lines.pop() ?? "";
      for (const l of lines) onLine?.(l, (s) => p.kill(s));
    });
    p.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    p.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

describe("federation trace and observe", () => {
  let net: FederatedNetworks;
  let brokers: FederationBroker[];
  let client: Client;
  const fedUrl = () => net.federationUrl.replace("tls://", "nats://");
  const eastUrl = () => net.collectives.east?.url.replace("tls://", "nats://");

  beforeAll(async () => {
    net = await startFederatedNetworks({ east: 20, west: 20 });
    // two east instances, one west
    brokers = [
      FederationBroker.fromFile(net.federationConfig("east", "fed-east-a"), { logger: quiet }),
      FederationBroker.fromFile(net.federationConfig("east", "fed-east-b", "workers: 2"), { logger: quiet }),
      FederationBroker.fromFile(net.federationConfig("west", "fed-west-a"), { logger: quiet }),
    ];
    for (const b of brokers) await b.start();
    client = await Client.fromConfigFile(net.federatedClientConfig, { logger: quiet });
  }, 60_000);

  afterAll(async () => {
    await client?.close();
    for (const b of brokers ?? []) await b.stop();
    await net?.stop();
  });

  it("the library traces a node: client hop, request path, reply path, with a round-trip time", async () => {
    const security = securityFromSettings(clientSettings(loadConfig(net.federatedClientConfig)));
    const node = net.collectives.west?.nodes[3] as string;
    const t = await federationTrace(client, node, { trust: security, timeoutMs: 5_000 });
    expect(t.node).toBe(node);
    expect(t.statuscode).toBe(0);
    expect(t.verified).toBe(true);
    expect(t.rttMs).toBeGreaterThan(0);
    expect(t.rttMs).toBeLessThan(5_000);
    const westUrl = net.collectives.west?.url.replace("tls://", "nats://");
    expect(t.hops).toHaveLength(3);
    expect(t.hops[0]).toEqual({ in: fedUrl(), processor: client.identity, out: fedUrl() });
    expect(t.hops[1]?.processor).toMatch(/^fed-west-a \(choria_nats_ingest:0, choria_request_transformer:0/);
    expect([t.hops[1]?.in, t.hops[1]?.out]).toEqual([fedUrl(), westUrl]);
    expect(t.hops[2]?.processor).toMatch(/^fed-west-a \(choria_nats_ingest:0, choria_reply_transformer:0/);
    expect([t.hops[2]?.in, t.hops[2]?.out]).toEqual([westUrl, fedUrl()]);
    // a node nobody has: a clear error, not a hang
    await expect(
      federationTrace(client, "nobody.example.net", { trust: security, timeoutMs: 300 }),
    ).rejects.toThrow(/nobody\.example\.net did not answer within 0\.3 s/);
  });

  it("chorus federation trace NODE prints the hops (text and --json); an absent node exits 1", async () => {
    const node = net.collectives.east?.nodes[0] as string;
    const j = await chorus(["federation", "trace", node, "--config", net.federatedClientConfig, "--json"]);
    expect(j.stderr).toBe("");
    expect(j.code).toBe(0);
    const t = JSON.parse(j.stdout) as FederationTrace;
    expect(t.node).toBe(node);
    expect(t.hops.map((h) => h.processor.split(" ")[0])).toEqual([
      expect.any(String),
      expect.stringMatching(/^fed-east-[ab]$/),
      expect.stringMatching(/^fed-east-[ab]$/),
    ]);
    expect(t.hops[1]?.out).toBe(eastUrl());
    const text = await chorus(["federation", "trace", node, "--config", net.federatedClientConfig]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^ {2}1\. client {2}/m);
    expect(text.stdout).toMatch(/^ {2}2\. request .* → fed-east-[ab] \(choria_nats_ingest/m);
    expect(text.stdout).toMatch(/^ {2}3\. reply {3}/m);
    expect(text.stdout).toMatch(/Round trip \d+\.\d{3} ms, reply OK, signature verified/);
    const none = await chorus([
      "federation",
      "trace",
      "nobody.example.net",
      "--config",
      net.federatedClientConfig,
      "--timeout",
      "0.5",
    ]);
    expect(none.code).toBe(1);
    expect(none.stderr).toBe("chorus federation trace: nobody.example.net did not answer within 0.5 s\n");
    // a config without federation says so
    const plain = await chorus(["federation", "trace", node, "--config", net.fleet.setup.clientConfig]);
    expect(plain.code).toBe(1);
    expect(plain.stderr).toMatch(/sets no plugin\.choria\.federation\.collectives/);
  });

  it("observe: every instance answers the stats subject; its counts move after a request", async () => {
    const sample = async () => {
      const r = await chorus([
        "federation",
        "observe",
        "--config",
        net.federatedClientConfig,
        "--count",
        "1",
        "--json",
      ]);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      const lines = r.stdout.trim().split("\n");
      expect(lines).toHaveLength(1);
      return (JSON.parse(lines[0] as string) as { brokers: FederationStats[] }).brokers;
    };
    const before = await sample();
    expect(before.map((b) => `${b.cluster} ${b.identity}`)).toEqual([
      "east fed-east-a",
      "east fed-east-b",
      "west fed-west-a",
    ]);
    expect(before.find((b) => b.identity === "fed-east-b")?.workers).toBe(2);
    const nodes = [...(net.collectives.east?.nodes ?? []), ...(net.collectives.west?.nodes ?? [])];
    const r = await client.request("rpcutil", "ping", {}, { nodes, timeoutMs: 10_000 });
    expect(r.stats.ok).toBe(40);
    const after = await sample();
    const total = (bs: FederationStats[], c: string, p: "request" | "reply", k: "received" | "published") =>
      bs.filter((b) => b.cluster === c).reduce((s, b) => s + b[p][k], 0);
    // one message of 40 targets to each cluster; each cluster's 20 nodes replied
    for (const c of ["east", "west"]) {
      expect(total(after, c, "request", "received") - total(before, c, "request", "received")).toBe(1);
      expect(total(after, c, "request", "published") - total(before, c, "request", "published")).toBe(40);
      expect(total(after, c, "reply", "received") - total(before, c, "reply", "received")).toBe(20);
      expect(total(after, c, "reply", "published") - total(before, c, "reply", "published")).toBe(20);
    }
    // and the library's own view agrees with what was answered
    const west = brokers[2] as FederationBroker;
    expect(west.stats().reply.published).toBe(total(after, "west", "reply", "published"));
  });

  it("observe prints a line per instance each interval and exits 130 on ^C", async () => {
    const lines: string[] = [];
    const r = await chorus(
      ["federation", "observe", "--config", net.federatedClientConfig, "--interval", "0.3"],
      (line, kill) => {
        lines.push(line);
        // two samples of three instances, then ^C
        if (lines.length === 6) kill("SIGINT");
      },
    );
    expect(r.code).toBe(130);
    expect(lines.slice(0, 6)).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^\d\d:\d\d:\d\d east fed-east-a\/[0-9a-f]{8} {2}request in \d+ \(\+\d+\) out/),
        expect.stringMatching(/^\d\d:\d\d:\d\d east fed-east-b\//),
        expect.stringMatching(
          /^\d\d:\d\d:\d\d west fed-west-a\/.* reply in \d+ \(\+0\) out \d+ \(\+0\) err 0/,
        ),
      ]),
    );
  });
});
