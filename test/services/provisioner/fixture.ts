// A secure fleet with the provisioning setup (`setup dev --provisioning`), nodes that
// start in provisioning mode (real Servers, their choria_provision calls counted), and
// provisioner configs derived from the one setup writes.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pino } from "pino";
import { parse, stringify } from "yaml";
import { jetstreamManager } from "@nats-io/jetstream";
import type { ProvisioningDevFiles } from "../../../src/apps/setup/index.js";
import { clientSettings, loadConfig } from "../../../src/core/config/index.js";
import { closeNats, connectNats, type NatsConnection } from "../../../src/core/connector/index.js";
import { replyPrefix } from "../../../src/core/protocol/index.js";
import { securityFromSettings } from "../../../src/core/security/index.js";
import {
  Server,
  choriaProvisionDDL,
  type AgentHandler,
  type ServerExitRequest,
} from "../../../src/server/index.js";
import {
  PROVISIONING_STREAM,
  ProvisionerService,
  type ProvisionerServiceOptions,
} from "../../../src/services/provisioner/index.js";
import { startSecureFleet, type SecureFleet } from "../../helpers/fleet.js";

export const silent = pino({ level: process.env.CHORUS_TEST_LOG ?? "silent" });

/** A node run from its config file, restarted in place when it asks, as `chorus server run` does. */
export class TestNode {
  /** choria_provision calls by action, across restarts */
  readonly calls: Record<string, number> = {};
  /** makes configure slow, to catch a provisioner in the middle of it */
  configureDelayMs = 0;
  mode: "provisioning" | "normal" | "stopped" = "stopped";
  current: Server | undefined;
  private stopped = false;
  private stopNow: () => void = () => {};
  private readonly stopSignal = new Promise<"stop">((r) => (this.stopNow = () => r("stop")));
  private running: Promise<void> | undefined;
  private normalWaiters: (() => void)[] = [];

  constructor(
    readonly identity: string,
    readonly configFile: string,
  ) {}

  start(): Promise<void> {
    let started!: () => void;
    let failed!: (e: unknown) => void;
    const first = new Promise<void>((res, rej) => ((started = res), (failed = rej)));
    this.running = this.loop(started).catch((err) => failed(err));
    return first;
  }

  private wrap(handlers: Record<string, AgentHandler>): Record<string, AgentHandler> {
    return Object.fromEntries(
      Object.entries(handlers).map(([action, fn]) => [
        action,
        (async (req, reply) => {
          this.calls[action] = (this.calls[action] ?? 0) + 1;
          if (action === "configure" && this.configureDelayMs > 0)
            await new Promise((r) => setTimeout(r, this.configureDelayMs));
          return fn(req, reply);
        }) as AgentHandler,
      ]),
    );
  }

  private async loop(started: () => void): Promise<void> {
    while (!this.stopped) {
      const server = await Server.fromConfigFile(this.configFile, {
        logger: silent,
        provisionTuning: { minDelayMs: 50, splayS: 0 },
      });
      if (server.provisionMode && server.provisionAgent)
        server.registry.register(choriaProvisionDDL(), this.wrap(server.provisionAgent.handlers()), {
          replace: true,
        });
      this.current = server;
      await server.start();
      this.mode = server.provisionMode ? "provisioning" : "normal";
      started();
      if (this.mode === "normal") for (const w of this.normalWaiters.splice(0)) w();
      const why: ServerExitRequest | "stop" = await Promise.race([server.exitRequested(), this.stopSignal]);
      await server.stop();
      this.current = undefined;
      this.mode = "stopped";
      if (why === "stop" || why.action === "shutdown") return;
    }
  }

  /** Resolves once the node runs in normal mode (it was provisioned and restarted). */
  whenNormal(timeoutMs = 20_000): Promise<void> {
    if (this.mode === "normal") return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(
        () => reject(new Error(`${this.identity} was not provisioned in time`)),
        timeoutMs,
      );
      this.normalWaiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  /** The node's config file as key/value pairs. */
  config(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const line of readFileSync(this.configFile, "utf8").split("\n")) {
      const m = /^\s*([^#=\s][^=]*?)\s*=\s*(.*?)\s*$/.exec(line);
      if (m) out[m[1] as string] = m[2] as string;
    }
    return out;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopNow();
    await this.running;
  }
}

export interface ProvisioningFixture {
  fleet: SecureFleet;
  files: ProvisioningDevFiles;
  /** the provisioner config setup wrote, parsed */
  base: Record<string, unknown>;
  /** a provisioner config: setup's, with test timings, then `over` (undefined deletes a key) */
  writeConfig(over?: Record<string, unknown>, name?: string): string;
  node(identity: string): Promise<TestNode>;
  provisioner(over?: Record<string, unknown>, opts?: ProvisionerServiceOptions): Promise<ProvisionerService>;
  /** a connection as the provisioner makes to the CHORIA account */
  choriaConnection(): Promise<NatsConnection>;
  /** empties the work queue between tests */
  purgeQueue(): Promise<void>;
  stop(): Promise<void>;
}

let configs = 0;

export async function provisioningFixture(): Promise<ProvisioningFixture> {
  const fleet = await startSecureFleet({ provisioning: true });
  const files = fleet.setup.provisioning as ProvisioningDevFiles;
  const base = parse(readFileSync(files.serviceConfig, "utf8")) as Record<string, unknown>;
  const nodes: TestNode[] = [];
  const services: ProvisionerService[] = [];
  const conns: NatsConnection[] = [];

  const writeConfig = (
    over: Record<string, unknown> = {},
    name = `provisioner-${++configs}.yaml`,
  ): string => {
    const cfg: Record<string, unknown> = {
      ...base,
      loglevel: "error",
      interval: "2s",
      discovery_timeout: "500ms",
      rpc_timeout: "2s",
      queue_ack_wait: "3s",
      workers: 2,
      leader_election: false,
      ...over,
    };
    delete cfg.logfile;
    for (const [k, v] of Object.entries(cfg)) if (v === undefined) delete cfg[k];
    const file = join(fleet.setup.dir, name);
    writeFileSync(file, stringify(cfg));
    return file;
  };

  const choriaConnection = async (): Promise<NatsConnection> => {
    const s = clientSettings(loadConfig(files.choriaConfig));
    const sec = securityFromSettings(s);
    const nc = await connectNats({
      servers: s.middlewareHosts,
      name: "test-provisioner-queue",
      inboxPrefix: replyPrefix(s.mainCollective, sec.callerId),
      seedHex: sec.seedHex,
      ...(sec.natsJwt && { natsJwt: sec.natsJwt }),
      ...(sec.caFile && { caFile: sec.caFile }),
    });
    conns.push(nc);
    return nc;
  };

  return {
    fleet,
    files,
    base,
    writeConfig,
    async node(identity) {
      const dir = join(fleet.setup.dir, "nodes", identity);
      mkdirSync(dir, { recursive: true });
      const configFile = join(dir, "server.conf");
      writeFileSync(
        configFile,
        [
          `identity = ${identity}`,
          "plugin.choria.server.provision = true",
          `plugin.choria.server.provision.jwt_file = ${files.tokenFile}`,
          "plugin.security.provider = choria",
          `plugin.security.choria.ca = ${fleet.setup.caFile}`,
          "loglevel = error",
          "",
        ].join("\n"),
      );
      const n = new TestNode(identity, configFile);
      nodes.push(n);
      await n.start();
      return n;
    },
    async provisioner(over = {}, opts = {}) {
      const p = ProvisionerService.fromFile(writeConfig(over), {
        logger: silent,
        rpcBackoffMs: 100,
        ...opts,
      });
      services.push(p);
      await p.start();
      return p;
    },
    choriaConnection,
    async purgeQueue() {
      const s = clientSettings(loadConfig(fleet.setup.adminClientConfig));
      const sec = securityFromSettings(s);
      const nc = await connectNats({
        servers: s.middlewareHosts,
        name: "test-admin",
        inboxPrefix: replyPrefix(s.mainCollective, sec.callerId),
        seedHex: sec.seedHex,
        ...(sec.natsJwt && { natsJwt: sec.natsJwt }),
        ...(sec.caFile && { caFile: sec.caFile }),
      });
      try {
        const jsm = await jetstreamManager(nc);
        await jsm.streams.purge(PROVISIONING_STREAM).catch(() => undefined);
      } finally {
        await closeNats(nc);
      }
    },
    async stop() {
      for (const p of services) await p.stop().catch(() => {});
      for (const n of nodes) await n.stop().catch(() => {});
      for (const nc of conns) await closeNats(nc);
      await fleet.stop();
    },
  };
}

/** Polls until `check` holds (or throws with `what`). */
export async function until(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
