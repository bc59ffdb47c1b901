import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Command } from "commander";
import { readTokenFile } from "../../core/util/index.js";
import { randomDevPassword, startUi } from "../ui/index.js";
import { addConfigOption, resolveConfigPath } from "./common.js";
import { guarded } from "./errors.js";
import { intArg } from "./flags.js";

/** The setup's TLS pair beside the client config (`chorus setup dev` writes tls/broker.pem). */
function setupTls(configPath: string, name: "pem" | "key"): string | undefined {
  const f = join(dirname(configPath), "tls", `broker.${name}`);
  return existsSync(f) ? f : undefined;
}

/** The bearer token /metrics wants, from a file (a secret is not put on the command line). */
function metricsToken(file: string): string {
  try {
    return readTokenFile(file);
  } catch (err) {
    throw new Error(`--metrics-token-file: ${(err as Error).message}`, { cause: err });
  }
}

/** `chorus ui`: the web console over one client config, until interrupted. */
export function register(program: Command): void {
  addConfigOption(
    program
      .command("ui")
      .description("Run the web console (HTTPS) over a client config: fleet, requests, jobs, audit, scout"),
  )
    .option("--port <n>", "port to listen on (0: a free one)", intArg("--port", { min: 0 }), 8443)
    .option("--listen <addr>", "address to listen on", "127.0.0.1")
    .option("--cert <file>", "TLS certificate (default: the setup's tls/broker.pem)")
    .option("--key <file>", "TLS key (default: the setup's tls/broker.key)")
    .option("--receiver <url>", "the async-reply receiver's HTTP API, for the jobs page")
    .option("--dev-password <p>", "the password of the local user admin (default: a random one, printed)")
    .option(
      "--audit-config <file>",
      "a client config that may read the AAA audit stream (e.g. the setup's admin-client.conf), for the audit page; also used for registration when the broker allows it",
    )
    .option("--audit-stream <name>", "the AAA audit stream", "CHORUS_AAA_AUDIT")
    .option(
      "--metrics-token-file <file>",
      "serve /metrics to requests with this bearer token (otherwise only to logged-in sessions)",
    )
    .action(
      guarded(
        "ui",
        async (o: {
          config?: string;
          port: number;
          listen: string;
          cert?: string;
          key?: string;
          receiver?: string;
          devPassword?: string;
          auditConfig?: string;
          auditStream: string;
          metricsTokenFile?: string;
        }) => {
          const config = resolveConfigPath(o.config);
          const cert = o.cert ?? setupTls(config, "pem");
          const key = o.key ?? setupTls(config, "key");
          if (!cert || !key) throw new Error("no TLS certificate: pass --cert FILE --key FILE");
          const devPassword = o.devPassword ?? randomDevPassword();
          const token = o.metricsTokenFile !== undefined ? metricsToken(o.metricsTokenFile) : undefined;
          if (o.auditConfig !== undefined && !existsSync(o.auditConfig))
            throw new Error(`--audit-config ${o.auditConfig}: no such file`);
          const ui = await startUi({
            config,
            cert,
            key,
            host: o.listen,
            port: o.port,
            devPassword,
            ...(o.receiver && { receiverUrl: o.receiver }),
            ...(o.auditConfig !== undefined && { auditConfig: o.auditConfig, auditStream: o.auditStream }),
            ...(token !== undefined && { metricsToken: token }),
          });
          process.stdout.write(`console: ${ui.url}\n`);
          if (o.devPassword === undefined)
            process.stdout.write(`login (when not using AAA): admin / ${devPassword}\n`);
          await new Promise<void>((resolve) => {
            process.once("SIGINT", resolve);
            process.once("SIGTERM", resolve);
          });
          await ui.close();
        },
      ),
    );
}
