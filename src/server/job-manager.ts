// The job manager of a server node: `node job-manager.js [--config FILE] <execution dir>`.
// The job agent starts one per execution, detached, so it outlives `chorus server run`;
// agent steps call the node's own agents in this process (no NATS, no second node).
import { loadConfig, serverSettings } from "../core/config/index.js";
import { StatusCode } from "../core/protocol/index.js";
import { CHORUS_VERSION } from "../core/util/index.js";
import { loadExecution, managerMain, type AgentInvoker, type ExecutionMeta } from "../services/jobs/index.js";
import { registerBuiltinAgents, localInvoker } from "./agents/index.js";
import { scanAgentDirs } from "./agents-loader.js";
import { loadFacts } from "./facts.js";
import { NodeRuntime, defaultHost } from "./node.js";
import { AgentRegistry } from "./registry.js";

const noCredential = { token: "", sign: () => new Uint8Array(0) };

/**
 * The node as its server builds it from `configFile` (identity, collectives, facts,
 * classes, built-in and libdir agents), for in-process calls only: it never
 * connects and never signs. Without a config: the identity of the execution and the
 * built-in agents.
 */
async function localNode(configFile: string | undefined, meta: ExecutionMeta): Promise<NodeRuntime> {
  const registry = new AgentRegistry();
  registerBuiltinAgents(registry);
  const host = defaultHost({ version: CHORUS_VERSION });
  if (configFile === undefined)
    return new NodeRuntime({
      identity: meta.identity,
      collectives: [meta.collective],
      registry,
      credential: noCredential,
      host,
    });
  const cfg = loadConfig(configFile);
  const s = serverSettings(cfg);
  const { facts } = loadFacts(s.factsFiles);
  const scan = await scanAgentDirs(s.libdir, { configFile: cfg.file, facts });
  // as the server: a libdir agent never replaces a built-in
  for (const a of scan.agents) if (!registry.has(a.name)) registry.register(a.ddl, a.actions);
  return new NodeRuntime({
    identity: s.identity,
    collectives: s.collectives,
    mainCollective: s.mainCollective,
    facts,
    ...(s.classesFile !== undefined && { classesFile: s.classesFile }),
    registry,
    credential: noCredential,
    host: defaultHost({ version: CHORUS_VERSION, configFile: cfg.file, configItem: (k) => cfg.get(k) }),
  });
}

// the meta Jobs.start wrote beside the workflow: the caller steps act for
function readMeta(dir: string): ExecutionMeta {
  return loadExecution(dir).meta;
}

/**
 * An invoker that builds the node on the first agent step: command-only workflows
 * never load the agents (external agents' activation checks run programs).
 */
function lazyInvoker(configFile: string | undefined, dir: string): AgentInvoker {
  let inner: Promise<AgentInvoker> | undefined;
  return {
    async call(agent, action, inputs, timeoutMs) {
      inner ??= (async () => {
        const meta = readMeta(dir);
        return localInvoker(await localNode(configFile, meta), meta.caller);
      })();
      try {
        return await (await inner).call(agent, action, inputs, timeoutMs);
      } catch (err) {
        // a config that cannot be read fails this step with the reason, not the manager
        inner = undefined;
        return {
          statuscode: StatusCode.UnknownError,
          statusmsg: `cannot load the node's agents: ${(err as Error).message}`,
          data: {},
        };
      }
    },
  };
}

async function main(argv: string[]): Promise<number> {
  let configFile: string | undefined;
  const rest = [...argv];
  if (rest[0] === "--config") {
    configFile = rest[1];
    rest.splice(0, 2);
  }
  const dir = rest[rest.length - 1];
  return managerMain(rest, { ...(dir !== undefined && { invoker: lazyInvoker(configFile, dir) }) });
}

process.exitCode = await main(process.argv.slice(2));
