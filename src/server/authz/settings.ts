import { join } from "node:path";
import type { ServerSettings } from "../../core/config/index.js";
import { ServerError } from "../registry.js";
import { allowAll, type Authorizer } from "../types.js";
import { AaasvcAuthorizer } from "./aaasvc.js";
import { ActionPolicyAuthorizer, type ActionPolicyOptions } from "./actionpolicy.js";

/**
 * The authorizer a config asks for: action_policy with `<configdir>/policies` unless
 * `rpcauthorization` is off, or aaasvc (the caller's JWT claims). Other providers
 * (rego_policy) are refused rather than silently allowing everything.
 */
export function authorizerFromSettings(
  s: Pick<
    ServerSettings,
    | "configDir"
    | "rpcAuthorization"
    | "rpcAuthProvider"
    | "actionPolicyAllowUnconfigured"
    | "actionPolicyEnableDefault"
  >,
  logger?: ActionPolicyOptions["logger"],
  /** plugin.actionpolicy.default_name */
  defaultName = "default",
): Authorizer {
  if (!s.rpcAuthorization) return allowAll;
  const provider = s.rpcAuthProvider.trim().toLowerCase() || "action_policy";
  if (provider === "aaasvc") return new AaasvcAuthorizer(logger ? { logger } : {});
  if (provider !== "action_policy") {
    throw new ServerError(
      "config",
      `rpcauthprovider "${s.rpcAuthProvider}" is not supported; use action_policy, aaasvc or set rpcauthorization = false`,
    );
  }
  return new ActionPolicyAuthorizer({
    policyDir: join(s.configDir, "policies"),
    allowUnconfigured: s.actionPolicyAllowUnconfigured,
    enableDefault: s.actionPolicyEnableDefault,
    defaultName,
    ...(logger && { logger }),
  });
}
