import { readFileSync } from "node:fs";
import type { BrokerSettings } from "../core/config/index.js";
import { natsMonitorFile } from "./orphan.js";
import { BrokerError } from "./trust.js";

/** One cluster route as nats-server's /routez reports it. */
export interface RouteStatus {
  remoteId: string;
  /** the peer's server name (nats-server 2.10 and later report it; "" before) */
  remoteName: string;
  address: string;
  rtt: string;
  /** true when this broker dialled it (a configured peer), false when the peer did */
  solicited: boolean;
}

/** A JetStream peer (the meta group, or a stream's replica) as /jsz reports it. */
export interface ReplicaStatus {
  name: string;
  current: boolean;
  offline: boolean;
  /** nanoseconds since it was last heard from */
  activeNs: number;
  /** operations behind the leader */
  lag: number;
  /**
   * The broker that answered, when it is a follower: it does not report on itself, so
   * current, active and lag are not known for it here (the leader's status has them).
   */
  self?: boolean;
}

export interface StreamStatus {
  account: string;
  name: string;
  messages: number;
  /** the stream leader's server name; "" when the stream has none */
  leader: string;
  /** the peers holding the stream other than its leader (the followers) */
  replicas: ReplicaStatus[];
}

export interface LeafStatus {
  name: string;
  account: string;
  address: string;
  rtt: string;
}

export interface BrokerStatus {
  monitorUrl: string;
  serverName: string;
  version: string;
  cluster: string;
  /** configured peers (routes this broker should have) */
  expectedPeers: number;
  routes: RouteStatus[];
  jetstream: boolean;
  /** JetStream meta group: leader "" when there is none */
  meta?: { leader: string; clusterSize: number; replicas: ReplicaStatus[] };
  streams: StreamStatus[];
  leafnodes: LeafStatus[];
  /** Why the broker is not healthy; empty when it is. */
  problems: string[];
}

type Json = Record<string, unknown>;

const str = (v: unknown): string => (typeof v === "string" ? v : "");
const num = (v: unknown): number => (typeof v === "number" ? v : 0);
const arr = (v: unknown): Json[] => (Array.isArray(v) ? (v as Json[]) : []);

function replicas(v: unknown): ReplicaStatus[] {
  return arr(v).map((r) => ({
    name: str(r.name),
    current: r.current === true,
    offline: r.offline === true,
    activeNs: num(r.active),
    lag: num(r.lag),
  }));
}

/**
 * The followers of a raft group as one list whichever broker is asked: a follower lists
 * the leader among its peers and leaves itself out, so the leader is taken off and the
 * answering broker put in (marked `self`).
 */
function followers(leader: string, reported: ReplicaStatus[], self: string): ReplicaStatus[] {
  const out = reported.filter((r) => r.name !== leader);
  if (leader !== "" && self !== "" && self !== leader && !out.some((r) => r.name === self))
    out.push({ name: self, current: true, offline: false, activeNs: 0, lag: 0, self: true });
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

/**
 * The nats-server monitoring URL of the broker a config describes: its
 * `plugin.choria.network.monitor_port`, or the port the running supervisor recorded.
 */
export function monitorUrlOf(settings: BrokerSettings): string {
  if (settings.monitorPort) return `http://127.0.0.1:${settings.monitorPort}`;
  const file = natsMonitorFile(settings);
  try {
    return readFileSync(file, "utf8").trim();
  } catch {
    throw new BrokerError(
      "not_running",
      `no broker is running for ${settings.configFile}: ${file} is missing ` +
        "(set plugin.choria.network.monitor_port to reach a broker started elsewhere)",
    );
  }
}

async function getJson(base: string, path: string): Promise<Json> {
  let res: Response;
  try {
    res = await fetch(`${base}${path}`, { signal: AbortSignal.timeout(5000) });
  } catch (err) {
    throw new BrokerError(
      "unreachable",
      `cannot reach the broker's monitoring at ${base}: ${(err as Error).message}`,
    );
  }
  if (!res.ok) throw new BrokerError("monitoring", `${base}${path} answered HTTP ${res.status}`);
  const body = (await res.json().catch(() => undefined)) as unknown;
  if (!body || typeof body !== "object")
    throw new BrokerError("monitoring", `${base}${path} did not answer JSON`);
  return body as Json;
}

/**
 * Peers, JetStream meta leader, streams (leader, replicas, lag) and leafnodes of one
 * broker, from nats-server's monitoring endpoints (/varz, /routez, /jsz, /leafz).
 */
export async function brokerStatus(monitorUrl: string, expectedPeers: number): Promise<BrokerStatus> {
  const [varz, routez, jsz, leafz] = await Promise.all([
    getJson(monitorUrl, "/varz"),
    getJson(monitorUrl, "/routez"),
    getJson(monitorUrl, "/jsz?accounts=true&streams=true"),
    getJson(monitorUrl, "/leafz"),
  ]);
  const routes = arr(routez.routes).map((r) => ({
    remoteId: str(r.remote_id),
    remoteName: str(r.remote_name),
    address: `${str(r.ip)}:${num(r.port)}`,
    rtt: str(r.rtt),
    solicited: r.did_solicit === true,
  }));
  const jetstream = Boolean(varz.jetstream && (varz.jetstream as Json).config);
  const self = str(varz.server_name);
  const metaRaw = jsz.meta_cluster as Json | undefined;
  const meta = metaRaw
    ? {
        leader: str(metaRaw.leader),
        clusterSize: num(metaRaw.cluster_size),
        replicas: followers(str(metaRaw.leader), replicas(metaRaw.replicas), self),
      }
    : undefined;
  const streams: StreamStatus[] = [];
  for (const account of arr(jsz.account_details)) {
    for (const s of arr(account.stream_detail)) {
      const cluster = (s.cluster ?? {}) as Json;
      const leader = str(cluster.leader);
      streams.push({
        account: str(account.name),
        name: str(s.name),
        messages: num((s.state as Json | undefined)?.messages),
        leader,
        replicas: followers(leader, replicas(cluster.replicas), self),
      });
    }
  }
  const leafnodes = arr(leafz.leafs).map((l) => ({
    name: str(l.name),
    account: str(l.account),
    address: `${str(l.ip)}:${num(l.port)}`,
    rtt: str(l.rtt),
  }));

  const problems: string[] = [];
  const peerIds = new Set(routes.map((r) => r.remoteId));
  if (peerIds.size < expectedPeers)
    problems.push(`${expectedPeers - peerIds.size} of ${expectedPeers} configured peers not connected`);
  const clustered = expectedPeers > 0 || (meta?.clusterSize ?? 0) > 1;
  if (jetstream && clustered && meta) {
    if (!meta.leader) problems.push("JetStream has no meta leader");
    for (const r of meta.replicas.filter((x) => x.offline))
      problems.push(`JetStream peer ${r.name} is offline`);
  }
  for (const s of streams) {
    if (clustered && !s.leader) problems.push(`stream ${s.name} has no leader`);
    for (const r of s.replicas.filter((x) => x.offline))
      problems.push(`stream ${s.name}: replica ${r.name} is offline`);
  }
  return {
    monitorUrl,
    serverName: self,
    version: str(varz.version),
    cluster: str((varz.cluster as Json | undefined)?.name),
    expectedPeers,
    routes,
    jetstream,
    ...(meta && { meta }),
    streams,
    leafnodes,
    problems,
  };
}

const ago = (ns: number): string => (ns > 0 ? `${(ns / 1e9).toFixed(1)}s ago` : "never");

function replicaLine(r: ReplicaStatus): string {
  if (r.self) return `${r.name} (this broker: its lag is in the leader's status)`;
  const state = r.offline ? "OFFLINE" : r.current ? "current" : "catching up";
  return `${r.name} ${state}, lag ${r.lag}, seen ${ago(r.activeNs)}`;
}

/** The status as text for `chorus broker status`. */
export function renderBrokerStatus(s: BrokerStatus): string {
  const out = [
    `broker ${s.serverName} (nats-server ${s.version})${s.cluster ? ` in cluster ${s.cluster}` : ""}`,
    `peers: ${new Set(s.routes.map((r) => r.remoteId)).size} of ${s.expectedPeers} connected`,
    ...s.routes.map(
      (r) =>
        `  ${r.remoteName || r.remoteId.slice(0, 12)} ${r.address} rtt ${r.rtt}${r.solicited ? "" : " (inbound)"}`,
    ),
  ];
  if (s.meta) {
    out.push(`JetStream meta leader: ${s.meta.leader || "NONE"} (cluster size ${s.meta.clusterSize})`);
    out.push(...s.meta.replicas.map((r) => `  ${replicaLine(r)}`));
  } else out.push(`JetStream: ${s.jetstream ? "on" : "off"}`);
  if (s.streams.length > 0) out.push("streams:");
  for (const st of s.streams) {
    out.push(`  ${st.name}: ${st.messages} messages, leader ${st.leader || "NONE"}`);
    out.push(...st.replicas.map((r) => `    ${replicaLine(r)}`));
  }
  if (s.leafnodes.length > 0) {
    out.push("leafnodes:");
    out.push(
      ...s.leafnodes.map((l) => `  ${l.name || "(unnamed)"} ${l.address} account ${l.account} rtt ${l.rtt}`),
    );
  }
  out.push(s.problems.length === 0 ? "status: OK" : `status: ${s.problems.length} problem(s)`);
  out.push(...s.problems.map((p) => `  ${p}`));
  return `${out.join("\n")}\n`;
}
