import {
  encodeMessage,
  encodeRequest,
  encodeSecureRequest,
  encodeTransport,
  newRequestId,
  nowNanos,
} from "../../core/protocol/index.js";

/** The node's credential: its server JWT (sent as caller) and a signer over request bytes. */
export interface RegistrationCredential {
  token: string;
  sign(data: Uint8Array): Uint8Array;
}

export const registrationSubject = (collective: string): string =>
  `${collective}.broadcast.agent.registration`;

/**
 * Wraps a registration payload the way go-choria does: a v2 request for agent
 * "registration" from `choria=<identity>`, signed by the node, in a transport whose
 * reply goes to dev.null (nobody answers registration).
 */
export function encodeRegistrationMessage(o: {
  payload: Uint8Array;
  identity: string;
  collective: string;
  credential: RegistrationCredential;
  ttl?: number;
}): Buffer {
  const request = encodeRequest({
    message: encodeMessage(o.payload),
    id: newRequestId(),
    sender: o.identity,
    caller: `choria=${o.identity}`,
    collective: o.collective,
    agent: "registration",
    ttl: o.ttl ?? 60,
    time: nowNanos(),
  });
  const secure = encodeSecureRequest(request, o.credential.sign(request), o.credential.token);
  return encodeTransport(secure, { reply: "dev.null", sender: o.identity });
}
