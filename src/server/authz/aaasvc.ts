import type { Logger } from "../../core/util/index.js";
import type { Authorizer, AuthzDecision } from "../types.js";
import { REGO_UNSUPPORTED, cedarAuthorizer } from "./cedar.js";
import { DISCOVERY_ALLOWED, actionListAuthorizer, type AuthzInput, type ClaimsAuthorizer } from "./claims.js";

export interface AaasvcAuthorizerOptions {
  /** where denials are reported */
  logger?: Pick<Logger, "warn">;
  /** distinct Cedar policies kept parsed (default 64) */
  maxCachedPolicies?: number;
}

const nonEmpty = (v: unknown): boolean =>
  (Array.isArray(v) && v.length > 0) || (typeof v === "string" && v.trim() !== "");

/**
 * Choria's `aaasvc` rpcauthprovider: the node trusts what the caller's verified JWT
 * says it may do. An `agents` list is Choria's action list; a `cedar_policy` is
 * evaluated with site "server". A token must carry exactly one of the two; an
 * `opa_policy` (Rego) cannot be evaluated and is denied with a reason saying so.
 */
export class AaasvcAuthorizer implements Authorizer {
  private readonly actionList: ClaimsAuthorizer = actionListAuthorizer();
  private readonly cedar: ClaimsAuthorizer;

  constructor(private readonly opts: AaasvcAuthorizerOptions = {}) {
    this.cedar = cedarAuthorizer(
      opts.maxCachedPolicies !== undefined ? { maxCached: opts.maxCachedPolicies } : {},
    );
  }

  authorize(req: Parameters<Authorizer["authorize"]>[0]): AuthzDecision {
    const d = this.decide({
      agent: req.agent,
      action: req.action,
      data: req.data,
      callerid: req.caller,
      sender: req.sender ?? "",
      collective: req.collective,
      ttl: req.ttl ?? 0,
      // requests carry unix nanoseconds
      time: Math.floor((req.time ?? 0) / 1e9),
      site: "server",
      claims: req.callerClaims,
      filter: req.filter,
    });
    if (!d.allowed) {
      this.opts.logger?.warn(
        { caller: req.caller, agent: req.agent, action: req.action, reason: d.reason },
        `denying ${req.caller} access to ${req.agent}#${req.action}: ${d.reason}`,
      );
    }
    return d;
  }

  /** The decision for one request (exposed for tests and tooling). */
  decide(input: AuthzInput): AuthzDecision {
    if (input.agent === "discovery") return DISCOVERY_ALLOWED;
    const c = input.claims;
    const agents = nonEmpty(c.agents);
    const cedar = nonEmpty(c.cedar_policy);
    const rego = nonEmpty(c.opa_policy);
    if (agents && (cedar || rego))
      return { allowed: false, reason: "the caller's token has both agents and a policy" };
    if (agents) return this.actionList.authorize(input);
    // A token for a mixed fleet may carry Rego for Choria nodes and Cedar for Chorus ones.
    if (cedar) return this.cedar.authorize(input);
    if (rego) return { allowed: false, reason: REGO_UNSUPPORTED };
    return { allowed: false, reason: "the caller's token has no agents or policy" };
  }
}
