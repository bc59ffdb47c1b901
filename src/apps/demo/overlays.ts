import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { pino, type Logger } from "pino";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { BrokerSupervisor, brokerSettings } from "../../broker/index.js";
import { Client, ReceiverApi, login } from "../../client/index.js";
import { clientSettings, loadConfig } from "../../core/config/index.js";
import { closeNats, connectNats, type NatsConnection } from "../../core/connector/index.js";
import { replyPrefix } from "../../core/protocol/index.js";
import { loadSeedFile } from "../../core/security/index.js";
import { AaaService } from "../../services/aaa/index.js";
import { ProvisionerService, loadProvisionerConfig } from "../../services/provisioner/index.js";
import { ReceiverService, repliesStreamConfig } from "../../services/receiver/index.js";
import { Replicator } from "../../services/replicator/index.js";
import { Emulator } from "../emulator/index.js";
import {
  OVERLAY_REGISTRATION,
  OVERLAY_STREAMS,
  createOverlaySetup,
  type OverlayCell,
  type OverlaySetup,
} from "../setup/index.js";

export interface OverlayRunOptions {
  /** emulated nodes per cell, enrolled through the cell's provisioner */
  nodesPerCell?: number;
  /** the emulated nodes register at start and then every this many seconds (0: at start only) */
  registrationIntervalS?: number;
  logger?: Logger;
}

interface RunningCell {
  cell: OverlayCell;
  broker: BrokerSupervisor;
  admin: NatsConnection;
  jsm: JetStreamManager;
  aaa: AaaService;
  provisioner: ProvisionerService;
  emulator: Emulator;
  replicator: Replicator | undefined;
  client: Client;
  nodes: string[];
}

/** Messages per stream at one site: the cell's own, and the centre's copy of them. */
export interface CellCounts {
  cell: string;
  streams: { name: string; inCell: number; atCentre: number }[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, check: () => Promise<boolean>, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** An admin NATS connection with a site's broker credential (for stream counts). */
async function adminOf(
  dir: string,
  brokerUrl: string,
  caFile: string,
  collective: string,
): Promise<NatsConnection> {
  const cred = (f: string) => join(dir, "credentials", f);
  return connectNats({
    servers: [brokerUrl],
    name: "chorus-overlays-admin",
    caFile,
    seedHex: loadSeedFile(cred("broker.seed")).seedHex,
    natsJwt: readFileSync(cred("broker.jwt.nats"), "utf8").trim(),
    inboxPrefix: replyPrefix(collective, "choria=broker.chorus.local"),
    logger: { info() {}, warn() {}, error() {} },
  });
}

/**
 * Runs what `createOverlaySetup` laid out, in this process: the centre's broker and
 * receiver; per cell its broker, AAA, provisioner, an emulated fleet that enrols through
 * the provisioner, and the replicator to the centre. `partition(cell)` cuts a cell off
 * from the centre by stopping its replicator (the only link between them) and `heal`
 * starts it again.
 */
export class OverlayRun {
  readonly setup: OverlaySetup;
  private readonly o: OverlayRunOptions;
  private readonly log: Logger;
  private centreBroker: BrokerSupervisor | undefined;
  private centreAdmin: NatsConnection | undefined;
  private centreJsm: JetStreamManager | undefined;
  receiver: ReceiverService | undefined;
  readonly cells = new Map<string, RunningCell>();

  constructor(setup: OverlaySetup, o: OverlayRunOptions = {}) {
    this.setup = setup;
    this.o = o;
    this.log = o.logger ?? pino({ level: "warn" }, pino.destination(2));
  }

  private brokerOf(configFile: string): BrokerSupervisor {
    return new BrokerSupervisor({
      settings: brokerSettings(loadConfig(configFile)),
      logger: (level, line) => {
        if (level === "error") this.log.error(line);
      },
    });
  }

  async startCentre(): Promise<void> {
    const c = this.setup.centre;
    this.centreBroker = this.brokerOf(c.brokerConfig);
    await this.centreBroker.start();
    this.centreAdmin = await adminOf(c.dir, c.brokerUrl, c.caFile, c.collective);
    this.centreJsm = await jetstreamManager(this.centreAdmin);
    this.receiver = ReceiverService.fromFile(c.receiver.serviceConfig, { logger: this.log });
    await this.receiver.start();
  }

  /** A cell's broker, AAA, provisioner and enrolled fleet, then its replicator. */
  async startCell(cell: OverlayCell, onProgress?: (line: string) => void): Promise<RunningCell> {
    const s = cell.setup;
    const broker = this.brokerOf(s.brokerConfig);
    await broker.start();
    const admin = await adminOf(s.dir, s.brokerUrl, s.caFile, s.collective);
    const jsm = await jetstreamManager(admin);
    // the cell keeps its asynchronous replies until they reach the centre
    await jsm.streams.add(repliesStreamConfig({ streamMaxAgeMs: 7 * 86_400_000, stream_replicas: 1 }));
    await jsm.streams.add({
      name: OVERLAY_REGISTRATION.stream,
      subjects: [...OVERLAY_REGISTRATION.subjects],
      max_msgs_per_subject: OVERLAY_REGISTRATION.maxMsgsPerSubject,
    });
    const aaa = AaaService.fromFile(s.aaa!.serviceConfig, { logger: this.log });
    await aaa.start();
    const provisioner = new ProvisionerService(loadProvisionerConfig(this.provisionerConfig(cell)), {
      logger: this.log,
    });
    await provisioner.start();
    const n = this.o.nodesPerCell ?? 20;
    const identity = (i: number) => `${cell.name}-${String(i).padStart(4, "0")}.example.net`;
    const emulator = Emulator.fromConfigFile(s.emulatorConfig, {
      nodes: n,
      workers: 0,
      identity,
      logger: this.log,
      provisioning: {
        tokenFile: s.provisioning!.tokenFile,
        tuning: { minDelayMs: 50, splayS: 0 },
        registrationIntervalS: this.o.registrationIntervalS ?? 0,
      },
    });
    await emulator.start();
    await until(
      `${cell.name}'s ${n} nodes to enrol`,
      async () => {
        const st = await emulator.provisioningStats();
        onProgress?.(`  ${cell.name}: ${st?.normal ?? 0} of ${n} nodes enrolled`);
        return st?.normal === n;
      },
      120_000,
    );
    const client = await Client.fromConfigFile(s.clientConfig, { logger: this.log });
    const rc: RunningCell = {
      cell,
      broker,
      admin,
      jsm,
      aaa,
      provisioner,
      emulator,
      replicator: undefined,
      client,
      // the emulator numbers its nodes from 1
      nodes: Array.from({ length: n }, (_, i) => identity(i + 1)),
    };
    this.cells.set(cell.name, rc);
    await this.heal(cell.name);
    return rc;
  }

  /** The provisioner config setup wrote, with demo timings and no election (one instance). */
  private provisionerConfig(cell: OverlayCell): string {
    const p = cell.setup.provisioning!;
    const base = parseYaml(readFileSync(p.serviceConfig, "utf8")) as Record<string, unknown>;
    const file = join(cell.setup.dir, "provisioner-run.yaml");
    writeFileSync(
      file,
      stringifyYaml({
        ...base,
        loglevel: "error",
        interval: "2s",
        discovery_timeout: "500ms",
        rpc_timeout: "5s",
        workers: 4,
        leader_election: false,
      }),
    );
    return file;
  }

  /** Cuts the cell off from the centre: its replicator, the only link, stops. */
  async partition(name: string): Promise<void> {
    const rc = this.cells.get(name);
    await rc?.replicator?.stop();
    if (rc) rc.replicator = undefined;
  }

  /** Joins the cell to the centre again: its replicator starts and drains what piled up. */
  async heal(name: string): Promise<void> {
    const rc = this.cells.get(name);
    if (!rc || rc.replicator) return;
    rc.replicator = Replicator.fromFile(rc.cell.replicatorConfig, { logger: this.log });
    await rc.replicator.start();
  }

  /** Logs the cell's admin user in to the cell's AAA; returns a client whose requests the AAA signs. */
  async loginClient(name: string): Promise<Client> {
    const s = this.cells.get(name)?.cell.setup;
    if (!s?.aaa) throw new Error(`no cell ${name}`);
    const settings = clientSettings(loadConfig(s.aaa.clientConfig));
    await login({
      urls: settings.loginUrls,
      username: s.aaa.username,
      password: s.aaa.password,
      seedFile: settings.seedFile,
      tokenFile: settings.tokenFile,
      caFile: settings.caFile,
    });
    return Client.fromConfigFile(s.aaa.clientConfig, { logger: this.log });
  }

  /** Per cell: each replicated stream's messages in the cell and at the centre. */
  async counts(): Promise<CellCounts[]> {
    const out: CellCounts[] = [];
    const count = async (jsm: JetStreamManager | undefined, stream: string) =>
      (await jsm?.streams.info(stream).catch(() => undefined))?.state.messages ?? 0;
    for (const [name, rc] of this.cells) {
      const streams = [];
      for (const s of OVERLAY_STREAMS)
        streams.push({
          name: s.stream,
          inCell: await count(rc.jsm, s.stream),
          atCentre: await count(this.centreJsm, s.target(name)),
        });
      out.push({ cell: name, streams });
    }
    return out;
  }

  /** The centre's receiver API (the central store of asynchronous replies). */
  receiverApi(): ReceiverApi {
    const api = this.receiver?.apiClient();
    if (!api) throw new Error("the centre's receiver has no HTTP API");
    return api;
  }

  async stop(): Promise<void> {
    for (const rc of this.cells.values()) {
      await rc.replicator?.stop();
      await rc.client.close();
      await rc.emulator.stop();
      await rc.provisioner.stop();
      await rc.aaa.stop();
      await closeNats(rc.admin);
      await rc.broker.stop();
    }
    this.cells.clear();
    await this.receiver?.stop();
    if (this.centreAdmin) await closeNats(this.centreAdmin);
    await this.centreBroker?.stop();
  }
}

/** The per-cell counts as a table with bars (one # per 2% of the cell's own count). */
export function renderCounts(title: string, counts: CellCounts[]): string {
  const lines = [title];
  for (const c of counts) {
    for (const s of c.streams) {
      const pct = s.inCell === 0 ? 100 : Math.round((s.atCentre / s.inCell) * 100);
      const bar = "#".repeat(Math.min(50, Math.round(pct / 2))).padEnd(50, ".");
      lines.push(
        `  ${c.cell.padEnd(6)} ${s.name.padEnd(19)} cell ${String(s.inCell).padStart(5)}  centre ${String(s.atCentre).padStart(5)}  ${bar} ${pct}%`,
      );
    }
  }
  return lines.join("\n");
}

export interface OverlaysDemoOptions {
  nodesPerCell?: number;
  cells?: number;
  out?: (line: string) => void;
  /** keep the directory with the layout */
  keep?: boolean;
}

export interface OverlaysDemoResult {
  /** per cell: nodes enrolled, nodes that answered the AAA-signed ping, replies stored centrally */
  cells: { name: string; enrolled: number; answered: number; stored: number }[];
  counts: CellCounts[];
}

const DEMO_JOB = `name: overlay-demo
steps:
  - name: inspect
    run: "echo inspecting $(hostname)"
  - name: apply
    needs: [inspect]
    run: "echo applied"
`;

/**
 * `chorus demo --overlays`: the Large Scale Design on this machine. Two cells and a
 * centre laid out in a temp dir, started, fleets enrolled through provisioning, a user
 * logged in to each cell's AAA, a workflow job across both cells followed from the
 * central store, the per-cell counts at the centre, then everything stops.
 */
export async function runOverlaysDemo(o: OverlaysDemoOptions = {}): Promise<OverlaysDemoResult> {
  const say = o.out ?? ((l: string) => process.stdout.write(`${l}\n`));
  const dir = mkdtempSync(join(tmpdir(), "chorus-overlays-"));
  const n = o.nodesPerCell ?? 20;
  let run: OverlayRun | undefined;
  try {
    say(
      `[1/6] laying out ${o.cells ?? 2} cells and a centre in ${dir}, each with its own issuer, operator and CA`,
    );
    const setup = await createOverlaySetup({ dir, cells: o.cells ?? 2, force: true });
    run = new OverlayRun(setup, { nodesPerCell: n });
    say(`[2/6] starting the centre: broker (TLS, JWT accounts, Streams) and the receiver store`);
    await run.startCentre();
    let last = "";
    let lastAt = 0;
    for (const cell of setup.cells) {
      say(`[3/6] starting ${cell.name}: broker, AAA, provisioner, replicator; ${n} emulated nodes enrol`);
      await run.startCell(cell, (line) => {
        // a line every 2 s at most, and the last one: 1 000 nodes must not print 1 000 lines
        const done = line.endsWith(`${n} of ${n} nodes enrolled`);
        if (line === last || (!done && Date.now() - lastAt < 2000)) return;
        say(line);
        last = line;
        lastAt = Date.now();
      });
    }
    const result: OverlaysDemoResult = { cells: [], counts: [] };
    const sent: { name: string; id: string }[] = [];
    say(`[4/6] logging in to each cell's AAA; rpcutil ping signed by it`);
    for (const [name, rc] of run.cells) {
      const user = await run.loginClient(name);
      try {
        const ping = await user.request("rpcutil", "ping", {}, {});
        say(
          `  ${name}: ${ping.replies.length} of ${rc.nodes.length} nodes answered a request the cell's AAA signed`,
        );
        result.cells.push({ name, enrolled: rc.nodes.length, answered: ping.replies.length, stored: 0 });
      } finally {
        await user.close();
      }
      const job = await rc.client.requestAsync(
        "job",
        "run_workflow",
        { workflow: DEMO_JOB },
        { nodes: rc.nodes },
      );
      sent.push({ name, id: job.requestId });
    }
    say(`[5/6] a workflow job in both cells; progress from the central store (replicated replies)`);
    const api = run.receiverApi();
    for (const s of sent) {
      const f = await api.follow(s.id, {
        timeoutMs: 60_000,
        onStatus: (st) => say(`  ${s.name} ${s.id}: ${st.replied} / ${st.discovered} replies at the centre`),
      });
      const c = result.cells.find((x) => x.name === s.name);
      if (c) c.stored = f.status?.replied ?? 0;
    }
    // the job events and audit records follow their own streams; wait until all are in
    for (let i = 0; i < 100; i++) {
      result.counts = await run.counts();
      if (result.counts.every((c) => c.streams.every((x) => x.atCentre === x.inCell))) break;
      await sleep(200);
    }
    say(renderCounts("[6/6] at the centre, per cell (copied by each cell's replicator):", result.counts));
    return result;
  } finally {
    await run?.stop();
    if (!o.keep) rmSync(dir, { recursive: true, force: true });
    say("overlays stopped; brokers, services, nodes and temp files are gone");
  }
}
