import type { Command } from "commander";
import { pino } from "pino";
import {
  BrokerMetrics,
  BrokerSupervisor,
  brokerSettings,
  brokerStatus,
  monitorUrlOf,
  renderBrokerStatus,
} from "../../broker/index.js";
import { loadConfig } from "../../core/config/index.js";
import { runDaemon, type Daemon } from "./daemon.js";
import { guarded } from "./errors.js";

/** The supervised nats-server and its metrics endpoint, as one daemon for runDaemon. */
function brokerDaemon(configFile: string): Daemon {
  const settings = brokerSettings(loadConfig(configFile));
  const log = pino(
    { name: "chorus-broker", level: settings.logLevel },
    settings.logFile ? pino.destination({ dest: settings.logFile, mkdir: true }) : pino.destination(2),
  );
  const natsLog = log.child({ component: "nats-server" });
  const supervisor = new BrokerSupervisor({
    settings,
    logger: (level, line) => natsLog[level](line.replace(/^\[\d+\] \S+ \S+ \[\w+\] /, "")),
  });
  supervisor.on("exited", (e) => {
    if (!e.expected) log.warn({ code: e.code, signal: e.signal }, "nats-server exited");
  });
  supervisor.on("restarted", (e) =>
    log.info({ natsPid: e.pid, restarts: e.restarts }, "nats-server restarted"),
  );
  let metrics: BrokerMetrics | undefined;
  const stop = async () => {
    await Promise.all([supervisor.stop(), metrics?.stop()]);
  };
  return {
    log,
    async start() {
      await supervisor.start();
      log.info(
        {
          url: supervisor.clientUrl,
          natsPid: supervisor.pid,
          ...(supervisor.x509 && { x509Url: supervisor.x509.clientUrl }),
        },
        "broker ready",
      );
      if (!settings.statsPort) return;
      metrics = new BrokerMetrics({
        port: settings.statsPort,
        host: settings.listenAddress,
        identity: settings.identity,
        source: supervisor,
      });
      // a metrics port already taken must not leave nats-server running
      await metrics.start().catch(async (err: unknown) => {
        await stop();
        throw err;
      });
      log.info({ port: settings.statsPort }, "prometheus metrics listening");
    },
    stop,
    async reload() {
      log.info({ config: configFile }, "SIGHUP: reloading the configuration");
      const r = await supervisor.reload(brokerSettings(loadConfig(configFile)));
      if (r.reloaded) log.info(r.reason ? { note: r.reason } : {}, "configuration reloaded");
      else log.warn({ reason: r.reason }, "configuration not reloaded; the broker runs on as it was");
    },
  };
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
      await runDaemon("broker", () => brokerDaemon(opts.config));
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
