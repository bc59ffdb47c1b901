import type { Logger } from "pino";
import { builtinDDL } from "../../core/ddl/index.js";
import { StatusCode } from "../../core/protocol/index.js";
import {
  Server,
  allowAll,
  type ActionReply,
  type ActionRequest,
  type AgentHandler,
} from "../../server/index.js";
import type { RequestSigner } from "./signer.js";

export const SIGNER_AGENT = "aaa_signer";

/** Choria's words for every refusal, whatever the cause (the reason goes to the log). */
export const REQUEST_DENIED = "Request Denied";

/**
 * aaa_signer#sign: the RPC form of POST /choria/v1/sign. `request` is the request JSON
 * itself (not base64), the answer the secure request JSON as a string.
 */
export function signAction(signer: RequestSigner, log: Logger): AgentHandler {
  return async (req: ActionRequest, reply: ActionReply) => {
    const { request, token, signature } = req.data as { request: string; token: string; signature: string };
    // Choria's agent always answers with the output field, empty when refused
    reply.data = { secure_request: "" };
    const out = await signer.sign({ token, signature, request: Buffer.from(request, "utf8") });
    if (out.ok) {
      reply.data.secure_request = out.secureRequest.toString("utf8");
      return;
    }
    log.warn(
      { requestid: req.requestId, sender: req.caller, status: out.status, reason: out.reason },
      "signing over RPC refused",
    );
    reply.fail(REQUEST_DENIED, StatusCode.Aborted);
  };
}

/**
 * Hosts the aaa_signer service agent on an embedded node built from a Choria server
 * config (choria_config). Any caller that can reach the agent may ask; the signer's
 * own token, signature and policy checks decide, so node-side RPC authorization is off
 * for this instance as in Choria.
 */
export async function startSignerAgent(o: {
  choriaConfig: string;
  signer: RequestSigner;
  log: Logger;
}): Promise<Server> {
  const server = await Server.fromConfigFile(o.choriaConfig, {
    logger: o.log,
    authorizer: allowAll,
    // users hold signed_fleet_management only: this is the one agent they reach unsigned
    signedOnlyAgents: [SIGNER_AGENT],
    reloadOnSighup: false,
    waitOnFirstConnect: true,
  });
  server.registerAgent(builtinDDL(SIGNER_AGENT), { sign: signAction(o.signer, o.log) }, { replace: true });
  await server.start();
  return server;
}
