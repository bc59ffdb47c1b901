import type { Command } from "commander";
import { pino, type Logger } from "pino";
import {
  BrokerMetrics,
  BrokerSupervisor,
  brokerSettings,
  brokerStatus,
  monitorUrlOf,
  renderBrokerStatus,
} from "../../broker/index.js";
import { loadConfig } from "../../core/config/index.js";
import { ChorusError } from "../../core/protocol/errors.js";
import { guarded } from "./errors.js";

async function run(configFile: string): Promise<void> {
  let supervisor: BrokerSupervisor;
  let metrics: BrokerMetrics | undefined;
  let log: Logger;
  try {
    const settings = brokerSettings(loadConfig(configFile));
    log = pino(
      { name: "chorus-broker", level: settings.logLevel },
      settings.logFile ? pino.destination({ dest: settings.logFile, mkdir: true }) : pino.destination(2),
    );
    const natsLog = log.child({ component: "nats-server" });
    supervisor = new BrokerSupervisor({
      settings,
      logger: (level, line) => natsLog[level](line.replace(/^\[\d+\] \S+ \S+ \[\w+\] /, "")),
    });
    supervisor.on("exited", (e) => {
      if (!e.expected) log.warn({ code: e.code, signal: e.signal }, "nats-server exited");
    });
    supervisor.on("restarted", (e) =>
      log.info({ natsPid: e.pid, restarts: e.restarts }, "nats-server restarted"),
    );
    await supervisor.start();
    log.info({ url: supervisor.clientUrl, natsPid: supervisor.pid }, "broker ready");
    if (settings.statsPort) {
      metrics = new BrokerMetrics({
        port: settings.statsPort,
        host: settings.listenAddress,
        identity: settings.identity,
        source: supervisor,
      });
      await metrics.start();
      log.info({ port: settings.statsPort }, "prometheus metrics listening");
    }
  } catch (err) {
    if (err instanceof ChorusError) {
      process.stderr.write(`chorus broker: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }

  await new Promise<void>((resolve) => {
    let stopping = false;
    const shutdown = (signal: NodeJS.Signals) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, "shutting down");
      void Promise.all([supervisor.stop(), metrics?.stop()]).then(() => resolve());
    };
    process.once("SIGTERM", shutdown);
    process.once("SIGINT", shutdown);
  });
}

/** `chorus broker run --config FILE`: supervise nats-server as the Choria network broker. */
export function register(program: Command): void {
  const broker = program
    .command("broker")
    .description("Run the Choria-compatible network broker (nats-server)");
  broker
    .command("run")
    .description("Start and supervise nats-server from a Choria-style broker config")
    .requiredOption("--config <file>", "broker configuration file")
    .action(async (opts: { config: string }) => {
      await run(opts.config);
    });
  broker
    .command("status")
    .description(
      "Show the broker's cluster peers, JetStream meta leader, streams (leader, replicas, lag) and leafnodes; " +
        "exits 1 when a peer is missing or a stream has no leader",
    )
    .requiredOption("--config <file>", "broker configuration file")
    .option("--json", "print the status as JSON", false)
    .action(
      guarded("broker status", async (opts: { config: string; json: boolean }) => {
        const settings = brokerSettings(loadConfig(opts.config));
        const status = await brokerStatus(
          monitorUrlOf(settings),
          settings.peerPort > 0 ? settings.peers.length : 0,
        );
        process.stdout.write(opts.json ? `${JSON.stringify(status, null, 2)}\n` : renderBrokerStatus(status));
        if (status.problems.length > 0) process.exitCode = 1;
      }),
    );
}
