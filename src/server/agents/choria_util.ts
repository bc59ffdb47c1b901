import { createRequire } from "node:module";
import { builtinDDL } from "../../core/ddl/index.js";
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

const str = (v: unknown): string => (typeof v === "string" ? v : "");

/** Placeholder values go-choria answers machine_state with when it finds nothing. */
const UNKNOWN_MACHINE = { name: "unknown machine", state: "unknown machine", version: "unknown machine" };

const machineState: AgentHandler = (req, reply) => {
  const name = str(req.data["name"]);
  const path = str(req.data["path"]);
  const instance = str(req.data["instance"]);
  reply.data = { ...UNKNOWN_MACHINE };
  if (name === "" && path === "" && instance === "") return reply.fail("No search criteria given");
  const states = req.node.machineStates();
  if (states.length === 0) return reply.fail("No running machines");
  const found = states.filter(
    (s) =>
      (name === "" || s.name === name) &&
      (path === "" || s.path === path) &&
      (instance === "" || s.id === instance),
  );
  if (found.length > 1) return reply.fail("Found multiple machines matching criteria");
  if (found.length === 0) return reply.fail("Could not find a matching machine");
  reply.data = { ...found[0] };
};

const machineStates: AgentHandler = (req) => {
  const states = req.node.machineStates();
  return {
    machine_ids: states.map((m) => m.id),
    machine_names: states.map((m) => `${m.name} ${m.version}`),
    states: Object.fromEntries(states.map((m) => [m.id, m])),
    // Chorus extra: machines in the store that could not be loaded, and why
    problems: req.node.machines?.problems() ?? [],
  };
};

const machineTransition: AgentHandler = (req, reply) => {
  const transition = str(req.data["transition"]);
  reply.data = { success: false };
  const host = req.node.machines;
  if (!host)
    return reply.fail(`Could not perform ${transition} transition: autonomous agent host not initialized`);
  try {
    host.transition(
      {
        name: str(req.data["name"]),
        version: str(req.data["version"]),
        path: str(req.data["path"]),
        instance: str(req.data["instance"]),
      },
      transition,
      `rpc by ${req.caller}`,
    );
    reply.data = { success: true };
  } catch (err) {
    reply.fail(`Could not perform ${transition} transition: ${(err as Error).message}`);
  }
};

/** Handlers for choria_util (go-choria's info and machine actions). */
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
  machine_state: machineState,
  machine_states: machineStates,
  machine_transition: machineTransition,
};

export function registerChoriaUtil(registry: AgentRegistry): void {
  registry.register(builtinDDL("choria_util"), choriaUtilActions, { replace: true });
}
