import { Option, type Command } from "commander";
import {
  SetupError,
  createDevSetup,
  createOverlaySetup,
  makeX509Fleet,
  type X509Fleet,
} from "../setup/index.js";
import { guarded } from "./errors.js";
import { intArg } from "./flags.js";

/** What `setup dev --security x509` wrote, and the commands that use it. */
function x509Lines(f: X509Fleet): string[] {
  return [
    `x509 (protocol v1) dev setup written to ${f.dir}`,
    `  CA:       ${f.caDir} (chorus ca list --dir ${f.caDir}); every part trusts ${f.caFile}`,
    `  broker:   chorus broker run --config ${f.brokerConfig}`,
    ...Object.values(f.serverConfigs).map((c) => `  server:   chorus server run --config ${c}`),
    `  emulator: chorus emulate --config ${f.emulatorConfig} --nodes 100`,
    ...Object.values(f.clients).map((c, i) =>
      i === 0
        ? `  client:   export CHORUS_CONFIG=${c.config}; chorus ping   (caller ${c.callerId})`
        : `  client:   chorus ping --config ${c.config}   (caller ${c.callerId})`,
    ),
    `  privileged (AAA signer) certificate: ${f.privileged.certFile}, config ${f.privileged.config}`,
  ];
}

/** `chorus setup dev`: a complete local trust setup and configs for a secured dev fleet. */
export function register(program: Command): void {
  const setup = program.command("setup").description("Create trust material and configuration");
  setup
    .command("dev")
    .description(
      "Create an org issuer, NATS trust, CA and TLS certs, tokens and configs in a directory (--security x509: a CA, RSA certificates and configs for a protocol v1 fleet)",
    )
    .option("--dir <dir>", "directory to write into", "./chorus-dev")
    .option("--collective <name>", "collective name", "mcollective")
    .option(
      "--port <port>",
      "broker client port",
      intArg("--port", { min: 1, max: 65535, expected: "a port number" }),
      4222,
    )
    .option(
      "--brokers <n>",
      "brokers in a local cluster (TLS routes, replicated Streams): broker-1.conf..broker-N.conf on consecutive ports",
      intArg("--brokers", { min: 1, max: 9, expected: "a number of brokers from 1 to 9" }),
      1,
    )
    .option(
      "--peer-port <port>",
      "first cluster route port with --brokers",
      intArg("--peer-port", { min: 1, max: 65535, expected: "a port number" }),
      5222,
    )
    .addOption(
      new Option(
        "--security <kind>",
        "choria: ed25519 keys and JWTs, protocol v2; x509: a CA and RSA certificates, protocol v1",
      )
        .choices(["choria", "x509"])
        .default("choria"),
    )
    .option(
      "--server <identity...>",
      "server identities to create (default node1.example.net, or node1.mcollective with --security x509)",
    )
    .option("--caller <callerid>", "client caller id (kind=name)")
    .option(
      "--user <name...>",
      "with --security x509: client users, each a certificate <name>.mcollective; the first is client.conf (default $USER)",
    )
    .option("--force", "overwrite a non-empty directory", false)
    .option("--aaa", "also configure an AAA service (login and request signing) and a client using it", false)
    .option(
      "--aaa-port <port>",
      "the AAA service's HTTPS port",
      intArg("--aaa-port", { min: 1, max: 65535, expected: "a port number" }),
      8443,
    )
    .option(
      "--provisioning",
      "also a provisioning token, the provisioner's credentials and config, and a server config that starts unprovisioned",
      false,
    )
    .option(
      "--x509-port <port>",
      "also the broker's x509 edge on this port, for protocol v1 clients and nodes, with x509-client.conf, x509-emulator.conf and mixed-client.conf (one broker)",
      intArg("--x509-port", { min: 1, max: 65535, expected: "a port number" }),
    )
    .action(
      guarded(
        "setup dev",
        async (o: {
          dir: string;
          collective: string;
          port: number;
          brokers: number;
          peerPort: number;
          security: "choria" | "x509";
          server?: string[];
          caller?: string;
          user?: string[];
          force: boolean;
          aaa: boolean;
          aaaPort: number;
          provisioning: boolean;
          x509Port?: number;
        }) => {
          if (o.security === "x509") {
            const unusable = [
              o.brokers !== 1 && "--brokers",
              o.caller !== undefined && "--caller (the caller is choria=<user>.mcollective: use --user)",
              o.aaa && "--aaa",
              o.provisioning && "--provisioning",
              o.x509Port !== undefined && "--x509-port (a v1 broker takes x509 clients on its client port)",
            ].filter(Boolean);
            if (unusable.length > 0)
              throw new SetupError("usage", `--security x509 does not take ${unusable.join(", ")}`);
            const f = await makeX509Fleet({
              dir: o.dir,
              collective: o.collective,
              brokerPort: o.port,
              force: o.force,
              ...(o.server && { nodes: o.server }),
              ...(o.user && { users: o.user }),
            });
            process.stdout.write(`${x509Lines(f).join("\n")}\n`);
            return;
          }
          if (o.user) throw new SetupError("usage", "--user needs --security x509 (use --caller)");
          const s = await createDevSetup({
            dir: o.dir,
            collective: o.collective,
            brokerPort: o.port,
            brokers: o.brokers,
            peerPort: o.peerPort,
            ...(o.server && { serverIdentities: o.server }),
            force: o.force,
            aaa: o.aaa,
            aaaPort: o.aaaPort,
            provisioning: o.provisioning,
            ...(o.caller && { callerId: o.caller }),
            ...(o.x509Port !== undefined && { x509Port: o.x509Port }),
          });
          const lines = [
            `dev setup written to ${s.dir}`,
            `  org issuer public key: ${s.issuerPublic}`,
            ...s.brokerConfigs.map((c) => `  broker:   chorus broker run --config ${c}`),
            ...Object.values(s.serverConfigs).map((c) => `  server:   chorus server run --config ${c}`),
            `  emulator: chorus emulate --config ${s.emulatorConfig} --nodes 100`,
            `  client:   export CHORUS_CONFIG=${s.clientConfig}; chorus ping`,
            `  admin:    chorus kv add BUCKET --config ${s.adminClientConfig}` +
              " (creating or removing KV buckets and governors needs streams_admin)",
          ];
          if (s.aaa) {
            lines.push(
              `  aaa:      chorus aaa run --config ${s.aaa.serviceConfig}`,
              `  login:    chorus login --config ${s.aaa.clientConfig} --username ${s.aaa.username}`,
              `  aaa user ${s.aaa.username} password (shown once, also in ${s.aaa.passwordFile}): ${s.aaa.password}`,
            );
          }
          if (s.provisioning) {
            lines.push(
              `  provisioner: chorus provisioner run --config ${s.provisioning.serviceConfig}`,
              `  unprovisioned server: chorus server run --config ${s.provisioning.serverConfig}`,
            );
          }
          if (s.mixed) {
            lines.push(
              `  x509 edge: ${s.mixed.x509Url} (protocol v1 clients with a certificate from the dev CA)`,
              `  v1 nodes:  chorus emulate --config ${s.mixed.x509EmulatorConfig} --nodes 100`,
              `  v1 client: chorus ping --config ${s.mixed.x509ClientConfig}`,
              `  both:      chorus ping --config ${s.mixed.mixedClientConfig} (v1 and v2 nodes answer)`,
            );
          }
          if (s.brokerConfigs.length > 1)
            lines.push(`  status:   chorus broker status --config ${s.brokerConfig}`);
          process.stdout.write(`${lines.join("\n")}\n`);
        },
      ),
    );
  setup
    .command("overlays")
    .description(
      "Lay out N cells and a centre on loopback ports, each with its own trust: a cell has a broker, AAA, provisioner and a replicator to the centre",
    )
    .option("--dir <dir>", "directory to write into", "./chorus-overlays")
    .option(
      "--cells <n>",
      "cells",
      intArg("--cells", { min: 1, max: 9, expected: "a number of cells from 1 to 9" }),
      2,
    )
    .option("--force", "overwrite a non-empty directory", false)
    .action(
      guarded("setup overlays", async (o: { dir: string; cells: number; force: boolean }) => {
        const s = await createOverlaySetup({ dir: o.dir, cells: o.cells, force: o.force });
        const lines = [
          `overlays written to ${s.dir}`,
          `  centre broker:   chorus broker run --config ${s.centre.brokerConfig}`,
          `  centre receiver: chorus receiver run --config ${s.centre.receiver.serviceConfig}`,
        ];
        for (const c of s.cells) {
          lines.push(
            `  ${c.name} broker:      chorus broker run --config ${c.setup.brokerConfig}`,
            `  ${c.name} aaa:         chorus aaa run --config ${c.setup.aaa!.serviceConfig}`,
            `  ${c.name} provisioner: chorus provisioner run --config ${c.setup.provisioning!.serviceConfig}`,
            `  ${c.name} replicator:  chorus replicator run --config ${c.replicatorConfig}`,
          );
        }
        lines.push("  all of it, with emulated fleets, in one process: chorus demo --overlays");
        process.stdout.write(`${lines.join("\n")}\n`);
      }),
    );
}
