import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { BrokerSupervisor, brokerSettings, freeLoopbackPort } from "../../broker/index.js";
import { Client, type PingResult, type RpcResult, type RpcStats } from "../../client/index.js";
import { loadConfig } from "../../core/config/index.js";
import { builtinDDL, type AgentDDL } from "../../core/ddl/index.js";
import { Emulator } from "../emulator/index.js";
import { createDevSetup } from "../setup/index.js";

/** How the demo prints results: the CLI hands over its renderers (the client returns data only). */
export interface DemoRender {
  ping(result: PingResult): string;
  /** replies, then request statistics after a "---- request statistics ----" line */
  text(result: RpcResult, ddl: AgentDDL): string;
  stats(stats: RpcStats): string;
}

export interface DemoOptions {
  render: DemoRender;
  nodes?: number;
  /** where progress and results go */
  out?: (line: string) => void;
  /** keep the temp dir (for inspection) */
  keep?: boolean;
}

export interface DemoResult {
  pinged: number;
  inventoried: number;
  nodes: number;
}

/**
 * The README's first command: a throw-away secured fleet on this machine. Trust in
 * a temp dir, a supervised TLS + JWT-auth nats-server, N emulated nodes, a ping and
 * an rpcutil inventory with full signing and verification, then everything stops.
 */
export async function runDemo(opts: DemoOptions): Promise<DemoResult> {
  const nodes = opts.nodes ?? 50;
  const say = opts.out ?? ((l: string) => process.stdout.write(`${l}\n`));
  const dir = mkdtempSync(join(tmpdir(), "chorus-demo-"));
  const quiet = pino({ level: "warn" }, pino.destination(2));
  let broker: BrokerSupervisor | undefined;
  let emulator: Emulator | undefined;
  let client: Client | undefined;
  try {
    say(`[1/5] creating trust in ${dir}: org issuer, NATS operator/accounts, CA + TLS, tokens`);
    const setup = await createDevSetup({ dir, brokerPort: await freeLoopbackPort(), force: true });

    say(
      `[2/5] starting nats-server (TLS, JWT accounts, permissions from token claims) on ${setup.brokerUrl}`,
    );
    broker = new BrokerSupervisor({
      settings: brokerSettings(loadConfig(setup.brokerConfig)),
      logger: (level, line) => {
        if (level === "error") quiet.error(line);
      },
    });
    await broker.start();

    say(`[3/5] starting ${nodes} emulated nodes, each with its own key and server token`);
    emulator = Emulator.fromConfigFile(setup.emulatorConfig, { nodes, logger: quiet });
    await emulator.start();

    client = await Client.fromConfigFile(setup.clientConfig, { logger: quiet });
    say(`[4/5] chorus ping (signed broadcast, every reply's hash checked)`);
    const ping = await client.ping({ windowed: true });
    say(opts.render.ping(ping));

    say(`[5/5] chorus req rpcutil inventory -F os=linux --verify-replies`);
    const inv = await client.request(
      "rpcutil",
      "inventory",
      {},
      { filter: { fact: [{ fact: "os", operator: "==", value: "linux" }] }, verifyReplySignatures: true },
    );
    const firstTwo = { ...inv, replies: inv.replies.slice(0, 2) };
    const [shown] = opts.render.text(firstTwo, builtinDDL("rpcutil")).split("---- request statistics ----");
    say(`${shown ?? ""}(${inv.replies.length} inventories received, first two shown)\n`);
    say(opts.render.stats(inv.stats));
    return { pinged: ping.replies.length, inventoried: inv.replies.length, nodes };
  } finally {
    await client?.close();
    await emulator?.stop();
    await broker?.stop();
    if (!opts.keep) rmSync(dir, { recursive: true, force: true });
    say("demo stopped; broker, nodes and temp files are gone");
  }
}
