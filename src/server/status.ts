import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import type { NodeRuntime } from "./node.js";
import type { ServerStats } from "./stats.js";

/** The status file body: go-choria's instance status fields, plus Chorus' version and agents. */
export interface InstanceStatus {
  identity: string;
  /** seconds since start */
  uptime: number;
  connected_server: string;
  /** unix seconds of the last message received, 0 = none */
  last_message: number;
  provisioning_mode: boolean;
  stats: ServerStats;
  version: string;
  agents: string[];
  /** When this status was taken, unix seconds. */
  updated: number;
}

/** What the status file and choria_util#info report about a node. */
export function instanceStatus(node: NodeRuntime): InstanceStatus {
  const h = node.host;
  const now = Date.now();
  return {
    identity: node.identity,
    uptime: Math.floor((now - h.startTime) / 1000),
    connected_server: h.connectedServer(),
    last_message: Math.floor(node.counters.lastMessage / 1000),
    provisioning_mode: false,
    stats: node.stats,
    version: h.version,
    agents: [...node.agents],
    updated: Math.floor(now / 1000),
  };
}

export interface StatusFileOptions {
  file: string;
  node: NodeRuntime;
  /** plugin.choria.status_update_interval; default 30 s. */
  intervalMs?: number;
  onError?(err: Error): void;
}

/**
 * Writes the status JSON now and every interval. The file is replaced atomically
 * (write + rename) so monitoring never reads half a file.
 */
export class StatusFileWriter {
  private timer: NodeJS.Timeout | undefined;
  constructor(private readonly opts: StatusFileOptions) {}

  start(): void {
    if (this.timer) return;
    this.write();
    this.timer = setInterval(() => this.write(), this.opts.intervalMs ?? 30_000);
    // A status file is no reason to keep the process alive.
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  write(): void {
    const { file } = this.opts;
    try {
      mkdirSync(dirname(file), { recursive: true });
      const tmp = `${file}.${process.pid}.tmp`;
      writeFileSync(tmp, `${JSON.stringify(instanceStatus(this.opts.node))}\n`, { mode: 0o644 });
      renameSync(tmp, file);
    } catch (err) {
      this.opts.onError?.(err as Error);
    }
  }
}
