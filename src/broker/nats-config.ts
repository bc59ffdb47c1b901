import type { BrokerSettings } from "../core/config/index.js";
import { BrokerError } from "./trust.js";

export interface RenderOptions {
  /** Overrides settings.monitorPort (the supervisor picks one when that is 0). */
  monitorPort?: number;
  /**
   * Account name → public key in operator mode, where nats-server knows accounts only by
   * key: a leafnode remote's `account = CHORIA` becomes the CHORIA account's key.
   */
  accountNames?: Record<string, string>;
  /**
   * A loopback leafnode listener for the x509 edge when the broker has no leafnode_port
   * (x509-edge.ts); with a leafnode_port the edge uses that one.
   */
  x509LeafPort?: number;
}

/** nats-server config strings: JSON string escaping is a subset its parser accepts. */
const q = (s: string): string => JSON.stringify(s);

// server_name must be a single token; identities are usually FQDNs which are fine.
export function serverName(identity: string): string {
  return identity.replace(/[^A-Za-z0-9._-]/g, "_") || "chorus";
}

/** `caFile` overrides the broker's CA: the x509 edge checks its clients against its own. */
function tlsBlock(s: BrokerSettings, indent: string, verify: boolean, caFile = s.caFile): string[] {
  if (!s.certFile || !s.keyFile) return [];
  const out = [
    `${indent}tls {`,
    `${indent}  cert_file: ${q(s.certFile)}`,
    `${indent}  key_file: ${q(s.keyFile)}`,
  ];
  if (caFile) out.push(`${indent}  ca_file: ${q(caFile)}`);
  // Routes authenticate each other by certificate; clients authenticate by JWT, so a
  // client certificate is not demanded there (except from x509 clients, see below).
  if (verify && caFile) out.push(`${indent}  verify: true`);
  out.push(`${indent}  timeout: ${s.tlsTimeoutS}`, `${indent}}`);
  return out;
}

/** The cluster's name: the gateway name when there is one (nats-server wants them equal). */
export function clusterNameOf(s: BrokerSettings): string {
  return s.gatewayName ?? s.clusterName;
}

// Routes, leafnodes and gateways are only advertised by configuration, never gossiped to
// clients (go-choria's NoAdvertise); clients learn the cluster's client URLs instead.
function clusterLines(s: BrokerSettings): string[] {
  if (s.peerPort <= 0) return [];
  const out = [
    "cluster {",
    `  name: ${q(clusterNameOf(s))}`,
    `  host: ${q(s.listenAddress)}`,
    `  port: ${s.peerPort}`,
    "  no_advertise: true",
    // Routes carry every node's traffic: each side proves itself with a certificate from the CA.
    ...tlsBlock(s, "  ", true),
  ];
  if (s.peers.length > 0) {
    out.push(
      "  routes: [",
      ...s.peers.map((p) => `    ${q(p.replace(/^(nats|tls):\/\//, "nats-route://"))}`),
      "  ]",
    );
  }
  out.push("}");
  return out;
}

function leafnodeLines(
  s: BrokerSettings,
  accountNames: Record<string, string> = {},
  x509LeafPort?: number,
): string[] {
  // the x509 edge's own listener never leaves loopback
  const [host, port] =
    s.leafnodePort > 0 ? [s.listenAddress, s.leafnodePort] : ["127.0.0.1", x509LeafPort ?? 0];
  if (port <= 0 && s.leafnodeRemotes.length === 0) return [];
  const out = ["leafnodes {"];
  if (port > 0) {
    out.push(`  host: ${q(host)}`, `  port: ${port}`, "  no_advertise: true");
    // Leaf links authenticate as NATS users (credentials), not by client certificate.
    out.push(...tlsBlock(s, "  ", false));
  }
  if (s.leafnodeRemotes.length > 0) {
    out.push("  remotes: [");
    for (const r of s.leafnodeRemotes) {
      const url = r.url.replace(/^(nats|tls|nats-leaf):\/\//, s.certFile ? "tls://" : "nats-leaf://");
      out.push(
        "    {",
        `      urls: [${q(url)}]`,
        ...(r.account ? [`      account: ${q(accountNames[r.account] ?? r.account)}`] : []),
        ...(r.credentials ? [`      credentials: ${q(r.credentials)}`] : []),
        ...tlsBlock(s, "      ", false),
        "    }",
      );
    }
    out.push("  ]");
  }
  out.push("}");
  return out;
}

function gatewayLines(s: BrokerSettings): string[] {
  if (s.gatewayPort <= 0 || !s.gatewayName) return [];
  const out = [
    "gateway {",
    `  name: ${q(s.gatewayName)}`,
    `  host: ${q(s.listenAddress)}`,
    `  port: ${s.gatewayPort}`,
    "  reject_unknown_cluster: true",
    ...tlsBlock(s, "  ", true),
  ];
  if (s.gatewayRemotes.length > 0) {
    out.push("  gateways: [");
    for (const g of s.gatewayRemotes)
      out.push(`    { name: ${q(g.name)}, urls: [${g.urls.map(q).join(", ")}] }`);
    out.push("  ]");
  }
  out.push("}");
  return out;
}

function logLines(s: BrokerSettings): string[] {
  if (s.logLevel === "debug") return ["debug: true"];
  if (s.logLevel === "trace") return ["debug: true", "trace: true"];
  return [];
}

/** Whether the client port demands a client certificate: the file provider without JWT trust. */
export function clientCertRequired(settings: BrokerSettings, trustFragment?: string): boolean {
  return settings.securityProvider === "file" && (trustFragment?.trim() ?? "") === "" && !!settings.caFile;
}

/**
 * The x509 edge's nats-server (x509-edge.ts): the x509 client port, where only clients with
 * a certificate from plugin.chorus.network.x509.ca get in and no other auth exists, joined
 * to the broker's leafnode listener (`hubUrl`) as the CHORIA user in `x509.credentials`.
 */
export function renderX509EdgeConfig(
  settings: BrokerSettings,
  opts: { monitorPort: number; hubUrl: string },
): string {
  const x = settings.x509;
  if (!x) throw new BrokerError("config", "renderX509EdgeConfig needs plugin.chorus.network.x509.port");
  const lines = [
    "# Generated by Chorus for the x509 client port (chorus broker run); edits are overwritten on start.",
    `server_name: ${q(`${serverName(settings.identity)}-x509`)}`,
    `host: ${q(settings.listenAddress)}`,
    `port: ${x.port}`,
    `http: ${q(`127.0.0.1:${opts.monitorPort}`)}`,
    `max_connections: ${settings.maxConnections}`,
    `write_deadline: ${q(`${Math.max(1, Math.round(settings.writeDeadlineMs))}ms`)}`,
    "logtime: true",
    ...logLines(settings),
    ...tlsBlock(settings, "", true, x.caFile),
    "leafnodes {",
    "  remotes: [",
    "    {",
    `      urls: [${q(opts.hubUrl)}]`,
    ...(x.credentials ? [`      credentials: ${q(x.credentials)}`] : []),
    // the hub's certificate is checked against the broker's CA, not the clients'
    ...tlsBlock(settings, "      ", false),
    "    }",
    "  ]",
    "}",
  ];
  return `${lines.join("\n")}\n`;
}

/**
 * Renders a nats-server configuration for the Chorus broker. With a trust fragment all
 * client auth is decentralized JWT (operator + MEMORY resolver); without one the broker
 * is open apart from the optional system user, which is only meant for tests and dev.
 */
export function renderNatsConfig(
  settings: BrokerSettings,
  trustFragment?: string,
  opts: RenderOptions = {},
): string {
  const monitorPort = opts.monitorPort ?? settings.monitorPort;
  if (!monitorPort)
    throw new BrokerError("config", "renderNatsConfig needs a monitoring port (none was chosen)");
  const trust = trustFragment?.trim() ?? "";
  const lines: string[] = [
    "# Generated by Chorus (chorus broker run); edits are overwritten on start.",
    `server_name: ${q(serverName(settings.identity))}`,
    `host: ${q(settings.listenAddress)}`,
    `port: ${settings.clientPort}`,
    // Monitoring is for the supervisor and exporter only, so it never leaves loopback.
    `http: ${q(`127.0.0.1:${monitorPort}`)}`,
    `max_connections: ${settings.maxConnections}`,
    `write_deadline: ${q(`${Math.max(1, Math.round(settings.writeDeadlineMs))}ms`)}`,
    "logtime: true",
  ];
  lines.push(...logLines(settings));
  // Without JWT trust a file-provider (protocol v1) broker knows its clients only by their
  // certificates, so it demands one from its CA, as Choria's x509 brokers do.
  lines.push(...tlsBlock(settings, "", clientCertRequired(settings, trust)));

  lines.push(
    ...clusterLines(settings),
    ...leafnodeLines(settings, opts.accountNames, opts.x509LeafPort),
    ...gatewayLines(settings),
  );

  if (settings.storeDir) lines.push("jetstream {", `  store_dir: ${q(settings.storeDir)}`, "}");

  if (trust !== "") {
    // Decentralized auth: users are JWTs signed by account keys; nothing per node here.
    lines.push("", "# NATS decentralized auth (operator, accounts, MEMORY resolver)", trust);
  } else if (settings.systemUser && settings.systemPassword) {
    // Defining any user makes nats-server demand auth from everyone, so unauthenticated
    // connections are mapped to a CHORIA account user to keep this mode open.
    lines.push(
      "accounts {",
      `  SYSTEM: { users: [ { user: ${q(settings.systemUser)}, password: ${q(settings.systemPassword)} } ] }`,
      `  CHORIA: { users: [ { user: "chorus_anonymous" } ] }`,
      "}",
      `system_account: "SYSTEM"`,
      `no_auth_user: "chorus_anonymous"`,
    );
  }
  return `${lines.join("\n")}\n`;
}
