import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { BrokerSupervisor, brokerSettings, freeLoopbackPort } from "../../broker/index.js";
import { Client, login, type PingResult, type RpcResult, type RpcStats } from "../../client/index.js";
import { clientSettings, loadConfig } from "../../core/config/index.js";
import { builtinDDL, type AgentDDL } from "../../core/ddl/index.js";
import { AaaService } from "../../services/aaa/index.js";
import { ReceiverService } from "../../services/receiver/index.js";
import { Emulator } from "../emulator/index.js";
import { createDevSetup, type DevSetup } from "../setup/index.js";
import { randomDevPassword, startUi, type UiServer } from "../ui/index.js";

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
  /** also start the AAA service, log in as its admin user and send a request it signs */
  aaa?: boolean;
  /** start the web console over the demo fleet (default true) */
  ui?: boolean;
  /**
   * awaited after the steps, before everything stops: a caller keeping the fleet and the
   * console up (until Ctrl-C) returns from it when done
   */
  stay?: () => Promise<void>;
}

export interface DemoResult {
  pinged: number;
  inventoried: number;
  nodes: number;
  /** with `aaa`: nodes that answered the signed request, and audit records written */
  aaa?: { answered: number; audited: number };
  /** replies the receiver stored for the async request, and nodes whose workflow succeeded */
  jobs: { stored: number; workflows: number };
  /** the web console, while the demo ran */
  ui?: { url: string; username: string; password: string };
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
  let aaa: AaaService | undefined;
  let receiver: ReceiverService | undefined;
  let ui: UiServer | undefined;
  let uiLogin: DemoResult["ui"];
  const steps = opts.aaa ? 7 : 6;
  try {
    say(`[1/${steps}] creating trust in ${dir}: org issuer, NATS operator/accounts, CA + TLS, tokens`);
    const setup = await createDevSetup({
      dir,
      brokerPort: await freeLoopbackPort(),
      force: true,
      receiverPort: await freeLoopbackPort(),
      ...(opts.aaa && { aaa: true, aaaPort: await freeLoopbackPort() }),
    });

    say(
      `[2/${steps}] starting nats-server (TLS, JWT accounts, permissions from token claims) on ${setup.brokerUrl}`,
    );
    broker = new BrokerSupervisor({
      settings: brokerSettings(loadConfig(setup.brokerConfig)),
      logger: (level, line) => {
        if (level === "error") quiet.error(line);
      },
    });
    await broker.start();

    say(`[3/${steps}] starting ${nodes} emulated nodes, each with its own key and server token`);
    emulator = Emulator.fromConfigFile(setup.emulatorConfig, { nodes, logger: quiet });
    await emulator.start();
    if (opts.ui !== false) {
      ({ ui, login: uiLogin } = await demoConsole(setup, opts.aaa === true));
      say(
        `  web console: ${uiLogin.url} (log in as ${uiLogin.username} / ${uiLogin.password}; ` +
          `the browser needs ${join(dir, "tls", "ca.pem")} trusted, or the warning accepted)`,
      );
    }

    client = await Client.fromConfigFile(setup.clientConfig, { logger: quiet });
    say(`[4/${steps}] chorus ping (signed broadcast, every reply's hash checked)`);
    const ping = await client.ping({ windowed: true });
    say(opts.render.ping(ping));

    say(`[5/${steps}] chorus req rpcutil inventory -F os=linux --verify-replies`);
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
    receiver = ReceiverService.fromFile(setup.receiver.serviceConfig, { logger: quiet });
    await receiver.start();
    const jobs = await jobsStep(client, receiver, nodes, say, `[6/${steps}]`);
    const result: DemoResult = {
      pinged: ping.replies.length,
      inventoried: inv.replies.length,
      nodes,
      jobs,
      ...(uiLogin && { ui: uiLogin }),
    };
    if (opts.aaa) {
      aaa = AaaService.fromFile(setup.aaa!.serviceConfig, { logger: quiet });
      await aaa.start();
      result.aaa = await aaaStep(setup, say, `[7/${steps}]`);
    }
    if (opts.stay) {
      say(`everything keeps running${uiLogin ? `; the console is at ${uiLogin.url}` : ""}: Ctrl-C stops it`);
      await opts.stay();
    }
    return result;
  } finally {
    await ui?.close();
    await aaa?.stop();
    await receiver?.stop();
    await client?.close();
    await emulator?.stop();
    await broker?.stop();
    if (!opts.keep) rmSync(dir, { recursive: true, force: true });
    say("demo stopped; broker, nodes and temp files are gone");
  }
}

/**
 * The web console over the demo fleet: local login with a fresh dev password, the setup's
 * TLS pair; with AAA, the audit view reads the AAA audit stream with the admin credential.
 */
async function demoConsole(
  setup: DevSetup,
  aaa: boolean,
): Promise<{ ui: UiServer; login: NonNullable<DemoResult["ui"]> }> {
  const password = randomDevPassword();
  const ui = await startUi({
    config: setup.clientConfig,
    cert: join(setup.dir, "tls", "broker.pem"),
    key: join(setup.dir, "tls", "broker.key"),
    devPassword: password,
    logger: pino({ level: "warn" }, pino.destination(2)),
    // without the AAA service there is no audit stream to wait for
    ...(aaa && { auditConfig: setup.adminClientConfig }),
  });
  return { ui, login: { url: ui.url, username: "admin", password } };
}

const DEMO_WORKFLOW = `name: demo
steps:
  - name: prepare
    run: "echo preparing on $(hostname)"
  - name: apply
    needs: [prepare]
    run: ["sh", "-c", "echo applied"]
  - name: check
    needs: [apply]
    agent: { agent: rpcutil, action: ping, inputs: {} }
`;

/**
 * An asynchronous request whose replies a receiver stores (followed through its HTTP
 * API, as `chorus job watch` does), then a 3-step workflow every node runs in the
 * background, queried until it is done.
 */
async function jobsStep(
  client: Client,
  receiver: ReceiverService,
  nodes: number,
  say: (l: string) => void,
  step: string,
): Promise<{ stored: number; workflows: number }> {
  say(`${step} jobs: chorus req rpcutil ping --async, then chorus job watch; a workflow on every node`);
  const sent = await client.requestAsync("rpcutil", "ping", {}, { discoveryWindowed: true });
  const api = receiver.apiClient();
  if (!api) throw new Error("the demo receiver has no HTTP API");
  const followed = await api.follow(sent.requestId, { timeoutMs: 30_000 });
  const st = followed.status;
  if (!st) throw new Error(`the receiver never heard of request ${sent.requestId}`);
  say(
    `  request ${sent.requestId}: ${st.replied} / ${st.discovered} replies stored by the receiver ` +
      `(${st.ok} ok, ${st.failed} failed), ${followed.outcome}`,
  );
  const started = await client.request("job", "run_workflow", { workflow: DEMO_WORKFLOW }, {});
  const wf = started.replies.find((r) => typeof r.data.workflow_id === "string")?.data.workflow_id as
    string | undefined;
  const ran = { nodes: started.replies.map((r) => r.sender) };
  let done = 0;
  for (let i = 0; wf && i < 100; i++) {
    const q = await client.request("job", "query_workflow", { id: wf }, ran);
    done = q.replies.filter((r) => r.data.state === "succeeded").length;
    if (q.replies.every((r) => r.data.state !== "running") && q.replies.length >= started.replies.length)
      break;
    await new Promise((r) => setTimeout(r, 200));
  }
  say(
    `  workflow ${wf ?? "(not started)"}: 3 steps, succeeded on ${done} of ${started.replies.length} nodes`,
  );
  return { stored: st.replied, workflows: done };
}

/** Logs the dev admin in and sends one request through the signer; counts its audit. */
async function aaaStep(
  setup: DevSetup,
  say: (l: string) => void,
  step: string,
): Promise<{ answered: number; audited: number }> {
  const a = setup.aaa!;
  const settings = clientSettings(loadConfig(a.clientConfig));
  say(`${step} AAA: chorus login as ${a.username}, then rpcutil ping signed by the AAA service`);
  const session = await login({
    urls: settings.loginUrls,
    username: a.username,
    password: a.password,
    seedFile: settings.seedFile,
    tokenFile: settings.tokenFile,
    caFile: settings.caFile,
  });
  say(`  logged in: token for up=${a.username} until ${session.expiresAt?.toISOString() ?? "never"}`);
  const quiet = pino({ level: "warn" }, pino.destination(2));
  const user = await Client.fromConfigFile(a.clientConfig, { logger: quiet });
  try {
    const res = await user.request("rpcutil", "ping", {}, {});
    const auditFile = join(setup.dir, "aaa-audit.log");
    const records = readFileSync(auditFile, "utf8")
      .split("\n")
      .filter((l) => l.includes(`"up=${a.username}"`));
    say(
      `  ${res.replies.length} nodes answered a request the signer checked (actionlist) and ` +
        `re-signed as delegator; ${records.length} audit records in ${auditFile}`,
    );
    return { answered: res.replies.length, audited: records.length };
  } finally {
    await user.close();
  }
}
export {
  OverlayRun,
  renderCounts,
  runOverlaysDemo,
  type CellCounts,
  type OverlayRunOptions,
  type OverlaysDemoOptions,
  type OverlaysDemoResult,
} from "./overlays.js";
