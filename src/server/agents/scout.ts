import { builtinDDL } from "../../core/ddl/index.js";
import type { MachineStateInfo } from "../machines.js";
import type { AgentRegistry } from "../registry.js";
import type { ActionRequest, ActionReply, AgentHandler } from "../types.js";

/** The transitions go-choria's scout agent fires on a check machine. */
export const SCOUT_TRANSITIONS = {
  trigger: "FORCE_CHECK",
  maintenance: "MAINTENANCE",
  resume: "RESUME",
} as const;

export type ScoutAction = keyof typeof SCOUT_TRANSITIONS;

interface TransitionResult {
  transitioned: string[];
  failed: string[];
  skipped: string[];
}

const checksAction: AgentHandler = (req) => ({
  checks: req.node
    .machineStates()
    .filter((m) => m.scout)
    .map((m) => ({
      name: m.name,
      state: m.state,
      version: m.version,
      start_time: m.start_time,
      status: m.current_state ?? null,
    })),
});

/**
 * go-choria's transitionSelectedChecks: no names means every check; an unknown check
 * fails, a check where the transition is not valid now is skipped. Naming checks and
 * not moving all of them is an aborted reply (with the lists filled in).
 */
function transitionChecks(action: ScoutAction): AgentHandler {
  const transition = SCOUT_TRANSITIONS[action];
  return (req: ActionRequest, reply: ActionReply) => {
    const res: TransitionResult = { transitioned: [], failed: [], skipped: [] };
    reply.data = res as unknown as Record<string, unknown>;
    const raw = req.data["checks"];
    const asked = Array.isArray(raw) ? raw.filter((c): c is string => typeof c === "string") : [];
    const host = req.node.machines;
    const checks = new Map<string, MachineStateInfo>();
    for (const m of req.node.machineStates()) if (m.scout) checks.set(m.name, m);
    const all = asked.length === 0;
    const list = all ? [...checks.keys()] : asked;
    for (const name of list) {
      const m = checks.get(name);
      if (!m || !host) {
        res.failed.push(name);
        continue;
      }
      if (!m.available_transitions.includes(transition)) {
        res.skipped.push(name);
        continue;
      }
      try {
        host.transition({ name: m.name, instance: m.id }, transition, `scout ${action} by ${req.caller}`);
        res.transitioned.push(name);
      } catch {
        res.failed.push(name);
      }
    }
    if (!all && res.transitioned.length + res.skipped.length !== list.length) {
      reply.fail(`Some checks could not be transitioned to ${transition}`);
    }
  };
}

const gossValidate: AgentHandler = (_req, reply) => {
  reply.data = { tests: 0, failures: 0, runtime: 0, success: 0, skipped: 0, summary: "", results: [] };
  reply.fail("goss is not supported by Chorus: goss_validate is not available");
};

/** Handlers for go-choria's scout agent over the node's machines. */
export const scoutActions: Record<string, AgentHandler> = {
  checks: checksAction,
  trigger: transitionChecks("trigger"),
  maintenance: transitionChecks("maintenance"),
  resume: transitionChecks("resume"),
  goss_validate: gossValidate,
};

/** Installs the scout agent (a Server does so when it hosts machines and plugin.scout.agent_disabled is off). */
export function registerScoutAgent(registry: AgentRegistry): void {
  registry.register(builtinDDL("scout"), scoutActions, { replace: true });
}
