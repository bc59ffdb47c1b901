import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { parse as parseYaml } from "yaml";
import { connectNats, type NatsConnection } from "../../../src/core/connector/index.js";
import { lineLogger } from "../../../src/core/util/index.js";
import { parseReplicatorConfig, type ReplicatorConfig } from "../../../src/services/replicator/index.js";
import { freePort, natsServerBinary } from "../../helpers/nats.js";

export const quietLog = lineLogger(() => undefined);

/**
 * A JetStream nats-server on fixed loopback ports with its store in a temp dir, which a
 * test can kill -9 and start again on the same ports and store (a broker that crashed
 * and came back, or a cell cut off and healed).
 */
export class JsBroker {
  readonly dir = mkdtempSync(join(tmpdir(), "chorus-sr-"));
  proc: ChildProcess | undefined;
  private constructor(
    readonly port: number,
    readonly monitorPort: number,
  ) {}

  static async start(): Promise<JsBroker> {
    const ports = new Set<number>();
    while (ports.size < 2) ports.add(await freePort());
    const [port, mon] = [...ports] as [number, number];
    const b = new JsBroker(port, mon);
    await b.up();
    return b;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  /** Starts nats-server (again) and waits for /healthz. */
  async up(): Promise<void> {
    const conf = join(this.dir, "nats.conf");
    writeFileSync(
      conf,
      [
        `listen: "127.0.0.1:${this.port}"`,
        `http: "127.0.0.1:${this.monitorPort}"`,
        `jetstream { store_dir: "${join(this.dir, "js")}" }`,
        "",
      ].join("\n"),
    );
    const proc = spawn(natsServerBinary(), ["-c", conf], { stdio: ["ignore", "ignore", "pipe"] });
    this.proc = proc;
    let stderr = "";
    proc.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null) throw new Error(`nats-server exited: ${stderr}`);
      const ok = await fetch(`http://127.0.0.1:${this.monitorPort}/healthz?js-enabled-only=true`).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`nats-server did not start: ${stderr}`);
  }

  /** kill -9, and wait until it is gone. */
  async kill9(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise((r) => p.once("exit", r));
    p.kill("SIGKILL");
    await gone;
  }

  async stop(): Promise<void> {
    const p = this.proc;
    if (p && p.exitCode === null && p.signalCode === null) {
      const gone = new Promise((r) => p.once("exit", r));
      p.kill("SIGTERM");
      await gone;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  connect(name = "test"): Promise<NatsConnection> {
    return connectNats({ servers: [this.url], name, logger: quietLog });
  }
}

/** A replicator config from YAML text, paths relative to `dir`. */
export function replicatorConfig(yaml: string, dir = tmpdir()): ReplicatorConfig {
  return parseReplicatorConfig(parseYaml(yaml), join(dir, "replicator.yaml"));
}

/** Publishes n messages (ids from..from+n-1) to `subject(i)` with acks, `inFlight` at a time, retrying through outages. */
export async function publishMany(
  nc: NatsConnection,
  n: number,
  subject: (i: number) => string,
  body: (i: number) => string = (i) => JSON.stringify({ i }),
  from = 0,
  inFlight = 500,
): Promise<void> {
  const js = jetstream(nc);
  let next = from;
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= from + n) return;
      for (let t = 0; ; t++) {
        try {
          await js.publish(subject(i), body(i), { msgID: `pub-${i}`, timeout: 5000 });
          break;
        } catch (err) {
          if (t > 50) throw err;
          await new Promise((r) => setTimeout(r, 200));
        }
      }
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
}

/** Every message of a stream in order: subject, Choria-SR-Source header, data. */
export async function readAll(
  jsm: JetStreamManager,
  stream: string,
): Promise<{ subject: string; source: string; data: string; headers: Record<string, string> }[]> {
  const si = await jsm.streams.info(stream);
  const out: { subject: string; source: string; data: string; headers: Record<string, string> }[] = [];
  const js = jsm.jetstream();
  const c = await js.consumers.get(stream);
  if (si.state.messages === 0) return out;
  const it = await c.consume({ max_messages: 1000 });
  for await (const m of it) {
    const headers: Record<string, string> = {};
    for (const k of m.headers?.keys() ?? []) headers[k] = m.headers?.get(k) ?? "";
    out.push({ subject: m.subject, source: headers["Choria-SR-Source"] ?? "", data: m.string(), headers });
    if (m.info.pending === 0) break;
  }
  it.stop();
  return out;
}

export async function jsmOf(nc: NatsConnection): Promise<JetStreamManager> {
  return jetstreamManager(nc);
}

/** Waits until `cond` holds, polling; throws with `what` after `ms`. */
export async function until(cond: () => Promise<boolean> | boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** A source and a target broker with a connection and a JetStream manager on each. */
export interface BrokerPair {
  src: JsBroker;
  dst: JsBroker;
  sNc: NatsConnection;
  dNc: NatsConnection;
  sJsm: JetStreamManager;
  dJsm: JetStreamManager;
  stop(): Promise<void>;
}

export async function startPair(): Promise<BrokerPair> {
  const [src, dst] = await Promise.all([JsBroker.start(), JsBroker.start()]);
  const [sNc, dNc] = await Promise.all([src.connect("src"), dst.connect("dst")]);
  const [sJsm, dJsm] = await Promise.all([jsmOf(sNc), jsmOf(dNc)]);
  return {
    src,
    dst,
    sNc,
    dNc,
    sJsm,
    dJsm,
    async stop() {
      await Promise.all([sNc.close(), dNc.close()]);
      await Promise.all([src.stop(), dst.stop()]);
    },
  };
}
