import type { Logger } from "pino";
import {
  parseConfig,
  provisioningSettings,
  serverSettings,
  type ProvisioningSettings,
  type ServerSettings,
} from "../../core/config/index.js";
import {
  decodeTokenUnverified,
  ed25519,
  verifyProvisioningToken,
  type ProvisioningClaims,
  type SigningKey,
} from "../../core/security/index.js";
import {
  AgentRegistry,
  CHORUS_VERSION,
  NodeRuntime,
  ProvisionAgent,
  ProvisioningSecurity,
  ReplayGuard,
  RequestDecoder,
  choriaProvisionDDL,
  registerBuiltinAgents,
  type AgentHandler,
  type HostInfo,
  type NodeCredential,
  type NodeEvents,
  type ProvisionTuning,
  type ServerExitRequest,
} from "../../server/index.js";
import {
  encodeLifecycleEvent,
  lifecycleSubject,
  newLifecycleEvent,
  type LifecycleType,
} from "../../services/lifecycle/index.js";
import {
  encodeRegistrationMessage,
  inventoryContentPayload,
  registrationSubject,
} from "../../services/registration/index.js";
import { EmulatorError } from "./errors.js";
import { NodeKey, Plane, yieldToIo, type Inflight } from "./plane.js";
import { MemoryStore } from "./store.js";

/** The collective and lifecycle component of a node in provisioning mode (Choria's names). */
export const PROVISIONING_COLLECTIVE = "provisioning";
export const PROVISION_COMPONENT = "provision_mode_server";

/** Plain data (it crosses into worker threads): what emulated nodes in provisioning mode start from. */
export interface ProvisioningSpec {
  /** the provisioning.jwt text every node holds */
  jwt: string;
  /** org issuers the token, and the provisioner's requests, are trusted from */
  issuers: string[];
  /** broker URLs from the token (chu, or its SRV records) */
  servers: string[];
  /** virtual folder of each node's files: <root>/<identity>/server.conf, server.seed, ... */
  root: string;
  /** the choria_provision agent's waits (default Choria's: restart 2 s after it is asked) */
  tuning?: ProvisionTuning;
  /**
   * Once enrolled, each node publishes an inventory registration, as a server with
   * `registration = inventory_content` does: at start, then every this many seconds
   * (0: at start only; unset: never).
   */
  registrationIntervalS?: number;
}

/** Where emulated nodes stand in provisioning; summed over shards by Emulator.provisioningStats(). */
export interface ProvisioningStats {
  /** nodes by the mode they run in now */
  provisioning: number;
  normal: number;
  shutdown: number;
  /** nodes whose restart failed (their written config or credential cannot be used) */
  failed: number;
  /** nodes configure was called on at least once */
  configured: number;
  /** nodes configure was called on more than once (at most 100 names) */
  reconfigured: string[];
  /** choria_provision calls by action, over every node and restart */
  calls: Record<string, number>;
  /** wall time spent in each action, ms, summed (gencsr's RSA key generation shows here) */
  actionMs: Record<string, number>;
}

export interface ProvisioningFleetOptions {
  spec: ProvisioningSpec;
  caFile?: string;
  /** the main collective's plane, where nodes answer once provisioned */
  main: Plane;
  inflight: Inflight;
  host: HostInfo;
  log: Logger;
  events: NodeEvents;
  /** sign replies in normal mode (never in provisioning mode: there is no key yet) */
  signReplies: boolean;
  identity: (i: number) => string;
  facts: (i: number) => Record<string, unknown>;
  classes: (facts: Record<string, unknown>) => string[];
}

interface EmulatedNode {
  identity: string;
  readonly facts: Record<string, unknown>;
  readonly classes: string[];
  readonly store: MemoryStore;
  readonly configFile: string;
  mode: "provisioning" | "normal" | "shutdown" | "failed";
  agent: ProvisionAgent | undefined;
  handlers: Record<string, AgentHandler>;
  runtime: NodeRuntime | undefined;
  plane: Plane | undefined;
  configures: number;
  /** the key it registers with, once in normal mode */
  key?: NodeKey;
}

// Provisioning mode has no server key: replies go unsigned and carry no token.
const UNSIGNED: NodeCredential = {
  token: "",
  sign: () => {
    throw new EmulatorError("provisioning", "a node in provisioning mode has no key to sign with");
  },
};

/**
 * The nodes of one shard that run Chorus's provisioning lifecycle: they start in the
 * `provisioning` collective with the provisioning token's broker credential, announce
 * themselves with a startup event, answer choria_provision through the same
 * ProvisionAgent a real node runs (its files in memory), and on restart come back from
 * the config configure wrote: in the main collective with their new key and server
 * token, or in provisioning mode again when that config says so.
 */
export class ProvisioningFleet {
  readonly plane: Plane;
  readonly claims: ProvisioningClaims;
  private readonly security: ProvisioningSecurity;
  private readonly all: EmulatedNode[] = [];
  private readonly byRuntime = new Map<NodeRuntime, EmulatedNode>();
  private readonly calls: Record<string, number> = {};
  private readonly actionMs: Record<string, number> = {};
  // one guard per mode: a restarted node is a fresh process with a fresh cache
  private readonly provReplay = new ReplayGuard();
  private readonly mainReplay = new ReplayGuard();
  private connected = false;
  private registrationTimer: NodeJS.Timeout | undefined;

  constructor(private readonly o: ProvisioningFleetOptions) {
    const s = o.spec;
    try {
      this.claims = verifyProvisioningToken(s.jwt, s.issuers);
    } catch (err) {
      throw new EmulatorError("provisioning", `the provisioning token: ${(err as Error).message}`, {
        cause: err,
      });
    }
    this.security = new ProvisioningSecurity(this.claims, s.issuers);
    const registry = new AgentRegistry();
    registerBuiltinAgents(registry);
    registry.register(choriaProvisionDDL(), this.dispatchers());
    // a provisioned node keeps choria_provision for reprovision, as a real one with a token does
    o.main.registry.register(choriaProvisionDDL(), this.dispatchers(), { replace: true });
    this.plane = new Plane(
      PROVISIONING_COLLECTIVE,
      new RequestDecoder({ security: this.security, cacheSize: 1_000 }),
      registry,
      { log: o.log, inflight: o.inflight, mutable: true },
    );
  }

  /** Every runtime, whichever mode it is in. */
  get runtimes(): NodeRuntime[] {
    return [...this.byRuntime.keys()];
  }

  /** choria_provision handlers that hand each request to the answering node's own agent. */
  private dispatchers(): Record<string, AgentHandler> {
    const out: Record<string, AgentHandler> = {};
    for (const { action } of choriaProvisionDDL().actions) {
      out[action] = async (req, reply) => {
        const n = this.byRuntime.get(req.node);
        const h = n?.handlers[action];
        if (!n || !h) {
          reply.fail(`choria_provision#${action} is not available on ${req.node.identity}`);
          return;
        }
        this.calls[action] = (this.calls[action] ?? 0) + 1;
        if (action === "configure") n.configures++;
        const t0 = performance.now();
        try {
          return await h(req, reply);
        } finally {
          this.actionMs[action] = (this.actionMs[action] ?? 0) + performance.now() - t0;
        }
      };
    }
    return out;
  }

  /** Nodes `first`..`first+count-1`, in provisioning mode (nothing is announced until connect()). */
  async createNodes(first: number, count: number, onProgress?: (done: number) => void): Promise<void> {
    const o = this.o;
    const last = first + count - 1;
    for (let i = first; i <= last; i++) {
      const identity = o.identity(i);
      const dir = `${o.spec.root.replace(/\/+$/, "")}/${identity}`;
      const facts = o.facts(i);
      const n: EmulatedNode = {
        identity,
        facts,
        classes: o.classes(facts),
        store: new MemoryStore(),
        configFile: `${dir}/server.conf`,
        mode: "provisioning",
        agent: undefined,
        handlers: {},
        runtime: undefined,
        plane: undefined,
        configures: 0,
      };
      // what a node waiting to be provisioned has on disk: its token and a config saying so
      n.store.write(`${dir}/provisioning.jwt`, `${o.spec.jwt}\n`);
      n.store.write(
        n.configFile,
        [
          `identity = ${identity}`,
          "plugin.choria.server.provision = true",
          `plugin.choria.server.provision.jwt_file = ${dir}/provisioning.jwt`,
          "",
        ].join("\n"),
      );
      this.all.push(n);
      this.startProvisioning(n);
      const done = i - first + 1;
      if (done % 1000 === 0 || i === last) {
        onProgress?.(done);
        await yieldToIo();
      }
    }
  }

  /** Connects with the provisioning token's credential, then announces every node waiting. */
  async connect(name: string, count: number): Promise<void> {
    await this.plane.connect({
      servers: this.o.spec.servers,
      ...(this.o.caFile && { caFile: this.o.caFile }),
      ...(this.security.natsJwt && { natsJwt: this.security.natsJwt }),
      seedHex: this.security.seedHex,
      name,
      count,
    });
    this.connected = true;
    const every = this.o.spec.registrationIntervalS;
    if (every !== undefined && every > 0) {
      this.registrationTimer = setInterval(() => this.registerNow(), every * 1000);
      this.registrationTimer.unref();
    }
    let k = 0;
    for (const n of this.all) {
      if (n.mode !== "provisioning") continue;
      this.lifecycle(n, "startup");
      if (++k % 500 === 0) await yieldToIo();
    }
  }

  private agent(n: EmulatedNode, provisionMode: boolean, settings: ProvisioningSettings): ProvisionAgent {
    const s = this.o.spec;
    const agent: ProvisionAgent = new ProvisionAgent({
      provisionMode,
      identity: settings.identity,
      jwt: s.jwt,
      claims: this.claims,
      settings,
      requestExit: (r) => this.exit(n, agent, r),
      wouldProvision: (file) => this.wouldProvision(n, file),
      onProvisioned: () => this.lifecycle(n, "provisioned"),
      onRefused: (reason, detail) => this.o.log.debug({ identity: n.identity, reason }, detail),
      ...(s.tuning && { tuning: s.tuning }),
      store: n.store,
    });
    return agent;
  }

  private attach(n: EmulatedNode, runtime: NodeRuntime, plane: Plane, agent: ProvisionAgent): void {
    plane.add(runtime);
    n.agent = agent;
    n.handlers = agent.handlers();
    n.runtime = runtime;
    n.plane = plane;
    this.byRuntime.set(runtime, n);
  }

  private startProvisioning(n: EmulatedNode): void {
    const settings = provisioningSettings(parseConfig(n.store.read(n.configFile) ?? "", n.configFile));
    n.identity = settings.identity;
    const o = this.o;
    const runtime = new NodeRuntime({
      identity: n.identity,
      collectives: [PROVISIONING_COLLECTIVE],
      facts: n.facts,
      classes: n.classes,
      registry: this.plane.registry,
      credential: UNSIGNED,
      signReplies: false,
      host: o.host,
      events: o.events,
      replayGuard: this.provReplay,
    });
    this.attach(n, runtime, this.plane, this.agent(n, true, settings));
    n.mode = "provisioning";
  }

  private startNormal(n: EmulatedNode): void {
    const o = this.o;
    const c = this.credential(n, n.configFile);
    const ss = c.settings;
    if (!ss.collectives.includes(o.main.collective))
      o.log.warn(
        { identity: ss.identity, collectives: ss.collectives },
        `provisioned into collectives this emulator does not serve (${o.main.collective}): it hears nothing`,
      );
    n.identity = ss.identity;
    const runtime = new NodeRuntime({
      identity: ss.identity,
      collectives: ss.collectives,
      mainCollective: ss.mainCollective,
      facts: n.facts,
      classes: n.classes,
      registry: o.main.registry,
      credential: new NodeKey(c.token, c.key),
      signReplies: o.signReplies,
      host: o.host,
      events: o.events,
      replayGuard: this.mainReplay,
    });
    this.attach(n, runtime, o.main, this.agent(n, false, provisioningSettings(c.config)));
    n.mode = "normal";
    this.lifecycle(n, "startup", true);
    n.key = new NodeKey(c.token, c.key);
    if (o.spec.registrationIntervalS !== undefined) this.register(runtime, n.key);
  }

  /**
   * What a normal-mode start needs from the config at `file`: its settings, the seed
   * (as a signing key) and the server token for that seed and identity. Throws
   * EmulatorError naming what is missing or wrong.
   */
  private credential(
    n: EmulatedNode,
    file: string,
  ): { config: ReturnType<typeof parseConfig>; settings: ServerSettings; token: string; key: SigningKey } {
    const fail = (why: string) => new EmulatorError("provisioning", why);
    const text = n.store.read(file);
    if (text === undefined) throw fail(`${file} does not exist`);
    const config = parseConfig(text, file);
    const settings = serverSettings(config);
    const seedText = n.store.read(settings.seedFile);
    if (seedText === undefined) throw fail(`the seed ${settings.seedFile} does not exist`);
    const seedHex = seedText.trim().toLowerCase();
    if (!/^[0-9a-f]{64}$/.test(seedHex)) throw fail(`${settings.seedFile} does not hold a hex ed25519 seed`);
    const token = n.store.read(settings.tokenFile)?.trim();
    if (!token) throw fail(`the server token ${settings.tokenFile} does not exist`);
    let claims: Record<string, unknown>;
    try {
      claims = decodeTokenUnverified(token);
    } catch (err) {
      throw fail(`the server token ${settings.tokenFile} is unusable: ${(err as Error).message}`);
    }
    if (claims.purpose !== "choria_server") throw fail(`${settings.tokenFile} is not a server token`);
    if (claims.identity !== settings.identity)
      throw fail(
        `the server token is for ${String(claims.identity)}, the configured identity is ${settings.identity}`,
      );
    const { key, publicRaw } = ed25519.fromSeed(Buffer.from(seedHex, "hex"));
    if (claims.public_key !== publicRaw.toString("hex"))
      throw fail(`the seed ${settings.seedFile} is not the server token's key`);
    return { config, settings, token, key };
  }

  /**
   * Why the config at `file` asks for provisioning mode (the setting, or the token's
   * chpd when unset), or undefined when it does not. Throws when it cannot be read.
   */
  private provisionAsked(n: EmulatedNode, file: string): string | undefined {
    const text = n.store.read(file);
    if (text === undefined) return `${file} does not exist`;
    const s = provisioningSettings(parseConfig(text, file));
    return (s.provision ?? this.claims.chpd ?? false) ? "plugin.choria.server.provision is on" : undefined;
  }

  /**
   * Why the config at `file` would start in provisioning mode, or undefined when it
   * would not (restart's check): asked for, or no usable credential, as a real node decides.
   */
  private wouldProvision(n: EmulatedNode, file: string): string | undefined {
    try {
      const asked = this.provisionAsked(n, file);
      if (asked !== undefined) return asked;
      this.credential(n, file);
      return undefined;
    } catch (err) {
      return (err as Error).message;
    }
  }

  /** The agent asked for a restart or a shutdown: the node leaves its plane and, to restart, starts again from its config. */
  private exit(n: EmulatedNode, agent: ProvisionAgent, r: ServerExitRequest): void {
    // a request from an agent the node has already left behind (a second restart timer)
    if (n.agent !== agent) return;
    agent.stop();
    if (n.runtime) {
      n.plane?.remove(n.runtime);
      this.byRuntime.delete(n.runtime);
    }
    n.agent = undefined;
    n.runtime = undefined;
    n.plane = undefined;
    n.handlers = {};
    if (r.action === "shutdown") {
      n.mode = "shutdown";
      return;
    }
    try {
      if (this.provisionAsked(n, n.configFile) === undefined) {
        try {
          this.startNormal(n);
          return;
        } catch (err) {
          // no usable credential: provisioning mode, as a real node decides
          this.o.log.warn({ identity: n.identity, err: (err as Error).message }, "back to provisioning mode");
        }
      }
      this.startProvisioning(n);
      this.lifecycle(n, "startup");
    } catch (err) {
      n.mode = "failed";
      this.o.log.error(
        { identity: n.identity, err: (err as Error).message },
        "emulated node failed to restart",
      );
    }
  }

  /** Every node in normal mode registers now; how many did. */
  registerNow(): number {
    let k = 0;
    for (const n of this.all) {
      if (n.mode !== "normal" || !n.runtime || !n.key) continue;
      if (this.register(n.runtime, n.key)) k++;
    }
    return k;
  }

  /** One inventory registration on the main collective (go-choria's inventory_content). */
  private register(node: NodeRuntime, credential: NodeKey): boolean {
    const collective = node.mainCollective;
    try {
      const payload = inventoryContentPayload({
        agents: this.o.main.registry.names(),
        classes: [...node.classes],
        facts: node.facts,
        status: { identity: node.identity },
        collectives: [...node.collectives],
        build_info: { version: CHORUS_VERSION },
        machines: [],
      });
      const msg = encodeRegistrationMessage({ payload, identity: node.identity, collective, credential });
      this.o.main.publish(registrationSubject(collective), msg);
      return true;
    } catch (err) {
      this.o.log.warn(
        { identity: node.identity, err: (err as Error).message },
        "could not publish registration",
      );
      return false;
    }
  }

  /**
   * A lifecycle event as the node's server would publish it: in provisioning mode on the
   * provisioning plane (component `provision_mode_server`), once provisioned on the main
   * collective's plane (component `server`), where the cell's CHORIA_EVENTS keeps it.
   */
  private lifecycle(n: EmulatedNode, type: LifecycleType, normal = false): void {
    if (!this.connected) return;
    try {
      const ev = newLifecycleEvent(type, {
        identity: n.identity,
        component: normal ? "server" : PROVISION_COMPONENT,
        version: CHORUS_VERSION,
      });
      (normal ? this.o.main : this.plane).publish(lifecycleSubject(ev), encodeLifecycleEvent(ev));
      if (n.runtime) n.runtime.counters.events++;
    } catch (err) {
      this.o.log.warn(
        { identity: n.identity, err: (err as Error).message },
        "could not publish lifecycle event",
      );
    }
  }

  stats(): ProvisioningStats {
    const s: ProvisioningStats = {
      provisioning: 0,
      normal: 0,
      shutdown: 0,
      failed: 0,
      configured: 0,
      reconfigured: [],
      calls: { ...this.calls },
      actionMs: { ...this.actionMs },
    };
    for (const n of this.all) {
      s[n.mode]++;
      if (n.configures > 0) s.configured++;
      if (n.configures > 1 && s.reconfigured.length < 100) s.reconfigured.push(n.identity);
    }
    return s;
  }

  /** A node's files (tests look at what configure wrote); undefined for an unknown identity. */
  files(identity: string): MemoryStore | undefined {
    return this.all.find((n) => n.identity === identity)?.store;
  }

  /** Cancels restarts not yet due; the shard closes the connections. */
  stop(): void {
    if (this.registrationTimer) clearInterval(this.registrationTimer);
    for (const n of this.all) n.agent?.stop();
  }
}

/** Sums provisioning figures from several shards. */
export function sumProvisioningStats(parts: ProvisioningStats[]): ProvisioningStats {
  const t: ProvisioningStats = {
    provisioning: 0,
    normal: 0,
    shutdown: 0,
    failed: 0,
    configured: 0,
    reconfigured: [],
    calls: {},
    actionMs: {},
  };
  for (const p of parts) {
    t.provisioning += p.provisioning;
    t.normal += p.normal;
    t.shutdown += p.shutdown;
    t.failed += p.failed;
    t.configured += p.configured;
    t.reconfigured.push(...p.reconfigured.slice(0, 100 - t.reconfigured.length));
    for (const [k, v] of Object.entries(p.calls)) t.calls[k] = (t.calls[k] ?? 0) + v;
    for (const [k, v] of Object.entries(p.actionMs)) t.actionMs[k] = (t.actionMs[k] ?? 0) + v;
  }
  return t;
}
