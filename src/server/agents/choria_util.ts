import { createRequire } from "node:module";
import { builtinDDL } from "../../core/ddl/index.js";
import { StatusCode } from "../../core/protocol/index.js";
import type { AgentRegistry } from "../registry.js";
import { instanceStatus } from "../status.js";
import type { AgentHandler } from "../types.js";

/** The NATS client library version, reported where go-choria reports nats.go's. */
function natsClientVersion(): string {
  try {
    const pkg = createRequire(import.meta.url)("@nats-io/transport-node/package.json") as {
      version?: string;
    };
    return pkg.version ?? "";
  } catch {
    return "";
  }
}

const NATS_CLIENT_VERSION = natsClientVersion();

const NO_MACHINES = "autonomous agents are not available yet";

const notYet: AgentHandler = (_req, reply) => {
  reply.fail(NO_MACHINES, StatusCode.UnknownError);
};

/** Handlers for choria_util; machine actions say plainly that they are not implemented. */
export const choriaUtilActions: Record<string, AgentHandler> = {
  info: (req) => {
    const h = req.node.host;
    const { connected_server: _dup, ...status } = instanceStatus(req.node);
    return {
      security: h.securityProvider,
      secure_protocol: true,
      connector: "nats",
      connector_tls: h.connectorTls,
      path: process.env.PATH ?? "",
      choria_version: h.version,
      client_version: NATS_CLIENT_VERSION,
      client_flavour: "nats.js",
      client_options: {},
      connected_server: h.connectedServer(),
      client_stats: h.connectionStats(),
      facter_domain: "",
      facter_command: "",
      srv_domain: "",
      using_srv: false,
      middleware_servers: [...h.middlewareServers],
      // Chorus extra: the same facts the status file holds (identity, uptime, counters...).
      ...status,
    };
  },
  machine_state: notYet,
  machine_states: notYet,
  machine_transition: notYet,
};

export function registerChoriaUtil(registry: AgentRegistry): void {
  registry.register(builtinDDL("choria_util"), choriaUtilActions, { replace: true });
}
