import type { Logger } from "pino";
import { replyPrefix } from "../../core/protocol/index.js";
import {
  createServerToken,
  ed25519,
  type FileSecurityOptions,
  type Issuer,
} from "../../core/security/index.js";
import {
  CHORUS_VERSION,
  NodeRuntime,
  registerJobAgent,
  registerScoutAgent,
  ReplayGuard,
  type AgentRegistry,
  type HostInfo,
  type NodeCredential,
  type NodeEvents,
  type RequestDecoder,
  type ServerStats,
} from "../../server/index.js";
import { EmulatorError } from "./errors.js";
import { EmulatedJobs, type EmulatedJobsStats } from "./jobs.js";
import {
  EmulatedMachines,
  scoutFault,
  type EmulatedMachinesStats,
  type EmulatorMachinesSpec,
} from "./machines.js";
import { Inflight, NodeKey, Plane, yieldToIo } from "./plane.js";
import { ProvisioningFleet, type ProvisioningSpec, type ProvisioningStats } from "./provisioning.js";

// v1 nodes answer with hashed, unsigned replies (go-choria's v1): there is nothing to sign with.
const V1_NODE: NodeCredential = {
  token: "",
  sign: () => {
    throw new EmulatorError("usage", "a protocol v1 node signs nothing");
  },
};

/** Plain data (structured-clone safe) describing one shard: it crosses into worker threads. */
export interface ShardSpec {
  /** Global 1-based index of this shard's first node. */
  first: number;
  count: number;
  collective: string;
  servers: string[];
  caFile?: string;
  /** The emulator's NATS credential (its user may subscribe to every node subject); "" with x509. */
  natsSeedHex: string;
  /**
   * Protocol v1 (x509) nodes: requests are checked with these files' CA and rules, the
   * connection is mTLS with this certificate, and nodes hold no key (v1 replies are not signed).
   */
  x509?: FileSecurityOptions;
  /** a client certificate for the broker connection (mTLS): x509's, or the v2 provider's TLS pair */
  certFile?: string;
  keyFile?: string;
  natsJwt?: string;
  issuer: Issuer;
  tokenValidityS: number;
  signReplies: boolean;
  connections: number;
  name: string;
  startTime: number;
  /** Nodes start unprovisioned and wait for a provisioner (they get no token from `issuer`). */
  provisioning?: ProvisioningSpec;
  /** The emulator's own identity: inboxes (JetStream acks for job events) live under its reply prefix. */
  identity?: string;
  /** The job agent, running workflows in-process (default on). */
  jobs?: boolean;
  /** Machines (autonomous agents, Scout checks) every node runs. */
  machines?: EmulatorMachinesSpec;
}

export interface ShardDeps {
  decoder: RequestDecoder;
  registry: AgentRegistry;
  log: Logger;
  identity: (i: number) => string;
  facts: (i: number) => Record<string, unknown>;
  onProgress?: (done: number) => void;
}

/**
 * A slice of the virtual fleet with its own connections and nodes, sharing the
 * decoder it is given. The same code runs in the main thread (single shard) and in
 * each worker thread (one decoder per thread, so a request is verified once per thread).
 */
export class FleetShard {
  /** the main collective: every node of a plain emulator, the provisioned ones otherwise */
  readonly main: Plane;
  /** provisioning mode: the nodes' lifecycle from unprovisioned to the main collective */
  readonly provisioning: ProvisioningFleet | undefined;
  /** the job agent's executions, when on */
  readonly jobs: EmulatedJobs | undefined;
  /** every node's machines, when asked for */
  readonly machines: EmulatedMachines | undefined;
  private readonly inflight = new Inflight();
  // one per shard: a bit per node per request id instead of a cache per node
  private readonly replay = new ReplayGuard();
  private readonly host: HostInfo;
  private readonly events: NodeEvents;
  // class names repeat across the fleet: keep one copy of each string
  private readonly names = new Map<string, string>();

  constructor(
    readonly spec: ShardSpec,
    private readonly deps: ShardDeps,
  ) {
    this.main = new Plane(spec.collective, deps.decoder, deps.registry, {
      log: deps.log,
      inflight: this.inflight,
      mutable: spec.provisioning !== undefined,
    });
    this.host = this.hostInfo();
    if (spec.jobs ?? true) {
      const jobs = new EmulatedJobs({
        collective: spec.collective,
        connection: () => this.main.primary,
        log: deps.log,
      });
      registerJobAgent(deps.registry, { host: (node, create) => jobs.host(node, create), events: true });
      this.jobs = jobs;
    }
    if (spec.machines) {
      this.machines = new EmulatedMachines(spec.machines, deps.log);
      // the scout agent answers for the nodes' Scout checks; choria_util and the scout
      // data plugin find each node's machines through node.machines
      registerScoutAgent(deps.registry);
    }
    // one events object for the shard (the node comes as an argument): no closure per node
    this.events = {
      drop: (reason, detail, node) => deps.log.debug({ identity: node.identity, reason }, detail),
    };
    if (spec.provisioning)
      this.provisioning = new ProvisioningFleet({
        spec: spec.provisioning,
        ...(spec.caFile && { caFile: spec.caFile }),
        main: this.main,
        inflight: this.inflight,
        host: this.host,
        log: deps.log,
        events: this.events,
        signReplies: spec.signReplies,
        identity: deps.identity,
        facts: deps.facts,
        classes: (f) => this.classes(f),
      });
  }

  /** Every node answering now, in either collective. */
  get nodes(): NodeRuntime[] {
    return this.provisioning ? this.provisioning.runtimes : this.main.nodes;
  }

  private hostInfo(): HostInfo {
    return {
      version: CHORUS_VERSION,
      startTime: this.spec.startTime,
      securityProvider: "choria",
      middlewareServers: [...this.spec.servers],
      connectorTls: true,
      connectedServer: () => this.main.primary?.getServer() ?? "",
      connectionStats: (): Record<string, number> => {
        const s = this.main.primary?.stats();
        return s
          ? { in_msgs: s.inMsgs, out_msgs: s.outMsgs, in_bytes: s.inBytes, out_bytes: s.outBytes }
          : {};
      },
      configItem: () => undefined,
    };
  }

  private classes(facts: Record<string, unknown>): string[] {
    const intern = (x: string): string => this.names.get(x) ?? (this.names.set(x, x), x);
    return [intern(`role::${String(facts.role)}`), intern(`location::${String(facts.location)}`)];
  }

  /** Keys and tokens for every node; yields now and then so progress can be reported. */
  async createNodes(): Promise<void> {
    const s = this.spec;
    const d = this.deps;
    if (this.provisioning) {
      // no keys: each node makes its own when the provisioner asks (gen25519)
      await this.provisioning.createNodes(s.first, s.count, d.onProgress);
      return;
    }
    const last = s.first + s.count - 1;
    for (let i = s.first; i <= last; i++) {
      const identity = d.identity(i);
      if (s.x509) {
        this.addNode(i, identity, V1_NODE, false);
        const done = i - s.first + 1;
        if (done % 1000 === 0 || i === last) {
          d.onProgress?.(done);
          await yieldToIo();
        }
        continue;
      }
      // Each node holds its own key straight from the generator: the seed is never
      // needed, and a shared cache would thrash at 50 000 keys.
      const { key, publicRaw } = ed25519.generate();
      const publicKeyHex = publicRaw.toString("hex");
      const token = createServerToken(
        { identity, collectives: [s.collective], publicKeyHex, validityS: s.tokenValidityS },
        s.issuer,
      );
      this.addNode(i, identity, new NodeKey(token, key), s.signReplies);
      const done = i - s.first + 1;
      if (done % 1000 === 0 || i === last) {
        d.onProgress?.(done);
        await yieldToIo();
      }
    }
  }

  private addNode(i: number, identity: string, credential: NodeCredential, signReplies: boolean): void {
    const s = this.spec;
    const d = this.deps;
    const facts = scoutFault(s.machines, i) ? { ...d.facts(i), scout_fault: true } : d.facts(i);
    const node = new NodeRuntime({
      identity,
      collectives: [s.collective],
      facts,
      classes: this.classes(facts),
      registry: d.registry,
      credential,
      signReplies,
      host: this.host,
      events: this.events,
      replayGuard: this.replay,
    });
    this.main.add(node);
    this.machines?.host(node);
  }

  async connect(): Promise<void> {
    const s = this.spec;
    await this.main.connect({
      servers: s.servers,
      ...(s.caFile && { caFile: s.caFile }),
      ...(s.natsJwt && { natsJwt: s.natsJwt }),
      seedHex: s.natsSeedHex,
      ...(s.certFile && s.keyFile && { certFile: s.certFile, keyFile: s.keyFile }),
      ...(s.identity && { inboxPrefix: replyPrefix(s.collective, s.identity) }),
      name: s.name,
      count: s.connections,
    });
    // the main side first: a node provisioned at once must find it subscribed
    await this.provisioning?.connect(`${s.name}-provisioning`, s.connections);
    // machines start once the nodes answer, so their first events have a way out
    await this.machines?.start(this.main.primary);
  }

  /** Machine figures, when the nodes run machines. */
  machinesStats(): EmulatedMachinesStats | undefined {
    return this.machines?.stats();
  }

  /** Every node's counters summed. */
  stats(): ServerStats | undefined {
    const nodes = this.nodes;
    const total = nodes[0]?.counters.snapshot();
    if (!total) return undefined;
    const t = total as unknown as Record<string, unknown>;
    for (let i = 1; i < nodes.length; i++) {
      const s = (nodes[i] as NodeRuntime).counters.snapshot() as unknown as Record<string, unknown>;
      for (const [k, v] of Object.entries(s)) {
        if (typeof v === "number" && typeof t[k] === "number") t[k] = (t[k] as number) + v;
      }
    }
    return total;
  }

  /** Provisioning figures, in provisioning mode. */
  provisioningStats(): ProvisioningStats | undefined {
    return this.provisioning?.stats();
  }

  /** Every enrolled node publishes its registration now; how many did. */
  registerNow(): number {
    return this.provisioning?.registerNow() ?? 0;
  }

  /** Job agent figures, when it is on. */
  jobsStats(): EmulatedJobsStats | undefined {
    return this.jobs?.stats();
  }

  async stop(): Promise<void> {
    this.provisioning?.stop();
    await this.inflight.settled();
    await this.machines?.stop();
    await this.jobs?.stop();
    await this.provisioning?.plane.close();
    await this.main.close();
  }
}

/** Sums ServerStats from several shards (numeric fields only, as the single-process sum did). */
export function sumStats(parts: ServerStats[]): ServerStats | undefined {
  const [first, ...rest] = parts;
  if (!first) return undefined;
  const t = structuredClone(first) as unknown as Record<string, unknown>;
  for (const p of rest) {
    for (const [k, v] of Object.entries(p as unknown as Record<string, unknown>)) {
      if (typeof v === "number" && typeof t[k] === "number") t[k] = (t[k] as number) + v;
    }
  }
  return t as unknown as ServerStats;
}
