import { createPrivateKey, type KeyObject, type X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { BrokerSettings } from "../core/config/index.js";
import { parseCertificates, type NatsPermissions } from "../core/security/index.js";
import { BrokerError } from "./trust.js";

/**
 * x509 (protocol v1) clients on a JWT broker. nats-server has one client port, and in
 * operator mode every client is a JWT user, so the x509 clients get a second nats-server
 * (the "x509 edge"): its client port demands a certificate from plugin.chorus.network.x509.ca
 * and has no other auth, and it joins the broker as a leafnode, logged in to the CHORIA
 * account with the user in plugin.chorus.network.x509.credentials. Every x509 client thus
 * acts with that one user's permissions, as Choria's x509 brokers give no client its own.
 */

/** The host the broker's own processes reach a listener on. */
export function localHost(listenAddress: string): string {
  const host = listenAddress === "0.0.0.0" || listenAddress === "::" ? "127.0.0.1" : listenAddress;
  return host.includes(":") ? `[${host}]` : host;
}

/**
 * What the x509 edge's leaf user should be allowed (pub and sub alike: a leaf link carries
 * requests and replies both ways): Choria RPC in the given collectives (requests to agents,
 * services and nodes, and replies), node lifecycle and machine events. Not Streams
 * (`$JS`), KV, `$SYS`, provisioning or anything Chorus-only: a v1 fleet uses none of them.
 */
export function x509EdgePermissions(collectives: readonly string[]): NatsPermissions {
  const subjects = [
    ...collectives.flatMap((c) => [
      `${c}.broadcast.agent.>`,
      `${c}.broadcast.service.>`,
      `${c}.node.>`,
      `${c}.reply.>`,
    ]),
    "choria.lifecycle.>",
    "choria.machine.transition",
    "choria.machine.watcher.>",
  ];
  return { pub: [...subjects], sub: [...subjects] };
}

/** The edge's own supervisor settings: its port, its runtime files, nothing of the broker's services. */
export function x509EdgeSettings(s: BrokerSettings): BrokerSettings {
  const x = s.x509;
  if (!x) throw new BrokerError("config", "the x509 edge needs plugin.chorus.network.x509.port");
  const {
    gatewayName: _gatewayName,
    systemUser: _systemUser,
    systemPassword: _systemPassword,
    storeDir: _storeDir,
    statsPort: _statsPort,
    natsTrustFile: _natsTrustFile,
    seedFile: _seedFile,
    tokenFile: _tokenFile,
    natsJwtFile: _natsJwtFile,
    x509: _x509,
    runtimeDir,
    ...rest
  } = s;
  return {
    ...rest,
    clientPort: x.port,
    peerPort: 0,
    peers: [],
    leafnodePort: 0,
    leafnodeRemotes: [],
    gatewayPort: 0,
    gatewayRemotes: [],
    adapters: [],
    // picked at start: the broker's own monitoring port is taken by the broker
    monitorPort: 0,
    // its own pidfile and config, beside the broker's
    ...(runtimeDir !== undefined && { runtimeDir: join(runtimeDir, "x509") }),
  };
}

/** The supervisor's and the edge nats-server's log lines, told apart from the broker's. */
export function edgeLogLine(line: string): string {
  // after nats-server's "[pid] date time [LVL] " prefix, which log readers strip
  return line.replace(/^(\[\d+\] \S+ \S+ \[\w+\] )?/, (prefix) => `${prefix}x509 edge: `);
}

function readKeyFile(key: string, file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === "ENOENT" ? "no such file" : e.code === "EACCES" ? "permission denied" : e.message;
    throw new BrokerError("config", `${key} = ${file}: cannot read it: ${why}`, { cause: err });
  }
}

function certsOf(key: string, file: string): X509Certificate[] {
  try {
    return parseCertificates(readKeyFile(key, file), file);
  } catch (err) {
    if (err instanceof BrokerError) throw err;
    throw new BrokerError("config", `${key} = ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Reads every TLS and credentials file the broker's nats-servers will use, so a missing or
 * broken one is reported with its config key before nats-server starts (nats-server itself
 * names only the file, and the x509 edge's error would surface as a failed leaf link).
 */
export function checkBrokerFiles(s: BrokerSettings): void {
  const ns = s.securityProvider === "file" ? "plugin.security.file" : "plugin.security.choria";
  if (s.caFile) certsOf(`${ns}.ca`, s.caFile);
  if (s.certFile && s.keyFile) {
    const cert = certsOf(`${ns}.certificate`, s.certFile)[0] as X509Certificate;
    let key: KeyObject;
    try {
      key = createPrivateKey(readKeyFile(`${ns}.key`, s.keyFile));
    } catch (err) {
      if (err instanceof BrokerError) throw err;
      throw new BrokerError("config", `${ns}.key = ${s.keyFile}: not a readable (unencrypted) private key`, {
        cause: err,
      });
    }
    if (!cert.checkPrivateKey(key)) {
      throw new BrokerError(
        "config",
        `${ns}.key = ${s.keyFile} is not the key of ${ns}.certificate = ${s.certFile}`,
      );
    }
  }
  if (!s.x509) return;
  const k = (n: string) => `plugin.chorus.network.x509.${n}`;
  certsOf(s.caFile === s.x509.caFile ? `${k("ca")} (default ${ns}.ca)` : k("ca"), s.x509.caFile);
  if (s.x509.credentials) {
    const creds = readKeyFile(k("credentials"), s.x509.credentials);
    if (!/BEGIN NATS USER JWT[\s\S]+BEGIN USER NKEY SEED/.test(creds)) {
      throw new BrokerError(
        "config",
        `${k("credentials")} = ${s.x509.credentials}: not a NATS credentials file (a user JWT and its nkey seed)`,
      );
    }
  }
}
