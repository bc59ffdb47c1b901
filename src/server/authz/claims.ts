import type { Filter } from "../../core/protocol/index.js";
import type { ClientClaims } from "../../core/security/index.js";
import type { AuthzDecision } from "../types.js";

/** One request as an authorizer that decides by the caller's JWT claims sees it. */
export interface AuthzInput {
  agent: string;
  action: string;
  data: Record<string, unknown>;
  /** The verified caller (after any rewrite by a signer). */
  callerid: string;
  /** The sender identity from the request. */
  sender: string;
  collective: string;
  ttl: number;
  /** Unix seconds the request was made. */
  time: number;
  /** The AAA service's `site`; "server" when a node decides. */
  site: string;
  /** Verified claims of the caller's JWT. */
  claims: ClientClaims;
  filter: Filter | undefined;
}

/** Decides a request from the caller's claims alone; never throws, a failure is a deny. */
export interface ClaimsAuthorizer {
  readonly name: string;
  authorize(input: AuthzInput): AuthzDecision;
}

/** Choria never subjects discovery to claims: every node must be findable. */
export const DISCOVERY_ALLOWED: AuthzDecision = { allowed: true, reason: "discovery is always allowed" };

/**
 * Choria's agent list rules: `*` allows everything, `agent.*` every action of the
 * agent, `agent.action` that action; the first match wins, no match denies. An entry
 * that is not `x.y` grants nothing and is skipped (Choria stops at it and denies).
 */
export function evaluateAgentList(agent: string, action: string, list: readonly string[]): AuthzDecision {
  for (const entry of list) {
    if (entry === "*") return { allowed: true, reason: `allowed by agents entry "*"` };
    const parts = entry.split(".");
    if (parts.length !== 2) continue;
    const [a, act] = parts as [string, string];
    if (a !== agent) continue;
    if (act === "*" || act === action) return { allowed: true, reason: `allowed by agents entry "${entry}"` };
  }
  return { allowed: false, reason: `no agents entry allows ${agent}.${action}` };
}

/** The `agents` claim as an authorizer (Choria's `actionlist`). */
export function actionListAuthorizer(): ClaimsAuthorizer {
  return {
    name: "actionlist",
    authorize(input) {
      if (input.agent === "discovery") return DISCOVERY_ALLOWED;
      const list = input.claims.agents;
      if (!Array.isArray(list) || list.length === 0) {
        return { allowed: false, reason: "the caller's token has no agents claim" };
      }
      return evaluateAgentList(
        input.agent,
        input.action,
        list.filter((e): e is string => typeof e === "string"),
      );
    },
  };
}
