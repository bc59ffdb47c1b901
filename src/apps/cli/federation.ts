import type { Command } from "commander";
import { Client, ClientError, federationCollectives } from "../../client/index.js";
import { clientSettings, loadConfig } from "../../core/config/index.js";
import { replyPrefix } from "../../core/protocol/index.js";
import { securityFromSettings } from "../../core/security/index.js";
import {
  collectFederationStats,
  FederationBroker,
  federationTrace,
  type FederationStats,
  type FederationTrace,
  type PathCounts,
} from "../../services/federation/index.js";
import { addConfigOption, collect, resolveConfigPath, stderrLogger } from "./common.js";
import { runDaemon } from "./daemon.js";
import { guarded } from "./errors.js";
import { intArg, secondsOption } from "./flags.js";
import { INTERRUPTED_EXIT } from "./render/index.js";

/** `chorus federation run|trace|observe`. */
export function register(program: Command): void {
  const federation = program
    .command("federation")
    .description(
      "Federation broker: joins collectives on their own networks to a federation network (Choria's)",
    );
  federation
    .command("run")
    .description("Forward federated requests into a collective and its replies back")
    .requiredOption("--config <file>", "federation broker configuration file (YAML or JSON)")
    .action(async (opts: { config: string }) => {
      await runDaemon("federation", () => FederationBroker.fromFile(opts.config));
    });
  const trace = federation
    .command("trace")
    .description("Ping one node through the federation and show the hops its reply took")
    .argument("<node>", "the node's identity");
  addConfigOption(trace)
    .addOption(secondsOption("--timeout <seconds>", "how long to wait for the reply", 10))
    .option("--json", "print the trace as JSON")
    .action(guarded("federation trace", runTrace));
  const observe = federation
    .command("observe")
    .description("Show each federation broker instance's message counts, every interval, until ^C");
  addConfigOption(observe)
    .option("--cluster <name>", "a federation cluster to watch (repeatable; default: the config's)", collect)
    .addOption(secondsOption("--interval <seconds>", "time between samples", 2))
    .option("--count <n>", "stop after N samples", intArg("--count", { min: 1 }))
    .option("--json", "one JSON line per sample")
    .action(guarded("federation observe", runObserve));
}

/** The client config and its federation clusters; a config without any is a usage error. */
function federatedConfig(flag: string | undefined, clusters: string[] = []) {
  const path = resolveConfigPath(flag);
  const cfg = loadConfig(path);
  const configured = federationCollectives(cfg.list("plugin.choria.federation.collectives", []));
  const names = clusters.length > 0 ? clusters : configured;
  if (names.length === 0)
    throw new ClientError(
      "usage",
      `${path} sets no plugin.choria.federation.collectives (nor CHORIA_FED_COLLECTIVE): no federation to use`,
    );
  return { path, cfg, clusters: names };
}

async function runTrace(
  node: string,
  o: { config?: string; timeout: number; json?: boolean },
): Promise<void> {
  const { path, cfg } = federatedConfig(o.config);
  const security = securityFromSettings(clientSettings(cfg));
  const client = await Client.fromConfigFile(path, { logger: stderrLogger, security });
  try {
    const t = await federationTrace(client, node, { trust: security, timeoutMs: o.timeout });
    process.stdout.write(o.json ? JSON.stringify(t, null, 2) + "\n" : renderTrace(t));
  } finally {
    await client.close();
  }
}

/** Which part of the route a hop is, from its processor. */
function hopRole(processor: string): string {
  if (processor.includes("choria_request_transformer")) return "request";
  if (processor.includes("choria_reply_transformer")) return "reply";
  return "client";
}

function renderTrace(t: FederationTrace): string {
  const lines = [`Trace of ${t.node} (request ${t.requestId})`, ""];
  t.hops.forEach((h, i) => {
    lines.push(`  ${i + 1}. ${hopRole(h.processor).padEnd(7)} ${h.in} → ${h.processor} → ${h.out}`);
  });
  if (t.hops.length === 0) lines.push("  (no seen-by hops: the request did not cross a federation broker)");
  const status = t.statuscode === 0 ? "OK" : `${t.statuscode} ${t.statusmsg}`;
  lines.push(
    "",
    `Round trip ${t.rttMs.toFixed(3)} ms, reply ${status}${t.verified ? ", signature verified" : ""}`,
    "",
  );
  return lines.join("\n");
}

interface ObserveFlags {
  config?: string;
  cluster?: string[];
  interval: number;
  count?: number;
  json?: boolean;
}

async function runObserve(o: ObserveFlags): Promise<void> {
  const { path, clusters } = federatedConfig(o.config, o.cluster);
  const client = await Client.fromConfigFile(path, { logger: stderrLogger });
  const ac = new AbortController();
  const onInt = () => ac.abort();
  process.once("SIGINT", onInt);
  const before = new Map<string, FederationStats>();
  let answered = 0;
  try {
    const nc = await client.connect();
    const inbox = `${replyPrefix(client.collective, client.callerId)}.stats.${process.pid}`;
    const waitMs = Math.min(500, Math.max(50, o.interval / 2));
    for (let n = 0; o.count === undefined || n < o.count; n++) {
      if (n > 0) await sleep(o.interval - waitMs, ac.signal);
      if (ac.signal.aborted) break;
      const { brokers, malformed } = await collectFederationStats(nc, { clusters, inbox, waitMs });
      answered = brokers.length;
      const time = new Date();
      if (o.json) process.stdout.write(JSON.stringify({ time, brokers, malformed }) + "\n");
      else process.stdout.write(renderSample(time, clusters, brokers, before, malformed));
      for (const b of brokers) before.set(key(b), b);
    }
  } finally {
    process.removeListener("SIGINT", onInt);
    await client.close();
  }
  if (ac.signal.aborted) process.exitCode = INTERRUPTED_EXIT;
  else process.exitCode = answered > 0 ? 0 : 1;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted || ms <= 0) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done);
  });
}

const key = (b: FederationStats) => `${b.cluster}/${b.identity}/${b.instance}`;

/** `in 300 (+300) out 300 (+300) err 2 (+2: malformed 2)` for one path. */
function renderPath(now: PathCounts, was: PathCounts | undefined): string {
  const d = (k: "received" | "published" | "errors") => `${now[k]} (+${now[k] - (was?.[k] ?? 0)})`;
  const reasons = Object.entries(now.bad)
    .filter(([, v]) => v > 0)
    .map(([k, v]) => `${k} ${v}`);
  return `in ${d("received")} out ${d("published")} err ${d("errors")}${reasons.length > 0 ? ` [${reasons.join(", ")}]` : ""}`;
}

function renderSample(
  time: Date,
  clusters: string[],
  brokers: FederationStats[],
  before: Map<string, FederationStats>,
  malformed: number,
): string {
  const at = time.toTimeString().slice(0, 8);
  if (brokers.length === 0) return `${at} no federation broker answered (${clusters.join(", ")})\n`;
  const lines = brokers.map((b) => {
    const was = before.get(key(b));
    return (
      `${at} ${b.cluster} ${b.identity}/${b.instance}  ` +
      `request ${renderPath(b.request, was?.request)}  reply ${renderPath(b.reply, was?.reply)}`
    );
  });
  if (malformed > 0) lines.push(`${at} ${malformed} unreadable answer(s) ignored`);
  return lines.join("\n") + "\n";
}
