import { builtinDDL } from "../../core/ddl/index.js";
import { lookupFact } from "../../core/filter/index.js";
import { DataError } from "../data/index.js";
import type { AgentRegistry } from "../registry.js";
import type { ActionRequest, AgentHandler } from "../types.js";

function uptimeTimes(): Record<string, number> {
  const u = process.cpuUsage();
  // Seconds, like the Ruby daemon's Process.times; children are not tracked.
  return { utime: u.user / 1e6, stime: u.system / 1e6, cutime: 0, cstime: 0 };
}

function str(req: ActionRequest, key: string): string {
  return String(req.data[key] ?? "");
}

/** Handlers for every rpcutil action in its DDL. */
export const rpcutilActions: Record<string, AgentHandler> = {
  ping: () => ({ pong: Math.floor(Date.now() / 1000) }),

  agent_inventory: (req) => ({
    agents: req.node.registry.definitions().map((d) => ({ agent: d.ddl.metadata.name, ...d.ddl.metadata })),
  }),

  collective_info: (req) => ({
    main_collective: req.node.mainCollective,
    collectives: [...req.node.collectives],
  }),

  daemon_stats: (req) => {
    const n = req.node;
    const s = n.stats;
    return {
      threads: [],
      agents: [...n.agents],
      pid: process.pid,
      times: uptimeTimes(),
      validated: s.validated,
      unvalidated: s.unvalidated,
      passed: s.passed,
      filtered: s.filtered,
      starttime: Math.floor(n.host.startTime / 1000),
      total: s.total,
      replies: s.replies,
      configfile: n.host.configFile ?? "",
      version: n.host.version,
      ttlexpired: s.ttlexpired,
      events: s.events,
    };
  },

  get_config_item: (req, reply) => {
    const item = str(req, "item");
    const value = req.node.host.configItem(item);
    if (value === undefined) {
      reply.fail(`Unknown config property ${item}`);
      return;
    }
    return { item, value };
  },

  get_data: (req, reply) => {
    const source = str(req, "source");
    const reg = req.node.dataRegistry;
    if (reg.get(source) === undefined) {
      reply.fail(`Unknown data plugin ${source}`);
      return;
    }
    try {
      return reg.run(source, str(req, "query"), req.node);
    } catch (e) {
      if (!(e instanceof DataError)) throw e;
      reply.fail(e.message);
      return;
    }
  },

  get_fact: (req) => {
    const fact = str(req, "fact");
    return { fact, value: lookupFact(req.node.facts, fact) ?? null };
  },

  get_facts: (req) => {
    const values: Record<string, unknown> = {};
    for (const f of str(req, "facts").split(",")) {
      const name = f.trim();
      if (name !== "") values[name] = lookupFact(req.node.facts, name) ?? null;
    }
    return { values };
  },

  inventory: (req) => {
    const n = req.node;
    return {
      agents: [...n.agents],
      facts: n.facts,
      classes: [...n.classes],
      version: n.host.version,
      main_collective: n.mainCollective,
      collectives: [...n.collectives],
      data_plugins: n.dataRegistry.names(),
      // go-choria sends a list of {name, version, state}
      machines: n.machineStates().map((m) => ({ name: m.name, version: m.version, state: m.state })),
      upgradable: false,
    };
  },
};

export function registerRpcutil(registry: AgentRegistry): void {
  registry.register(builtinDDL("rpcutil"), rpcutilActions, { replace: true });
}
