import {
  encodeMessage,
  encodeRequest,
  encodeRequestV1,
  encodeSecureRequest,
  encodeSecureRequestV1,
  encodeTransport,
  encodeTransportV1,
  newRequestId,
  newRequestIdV1,
  nowNanos,
} from "../../core/protocol/index.js";

/** The node's credential: its server JWT (sent as caller) and a signer over request bytes. */
export interface RegistrationCredential {
  token: string;
  sign(data: Uint8Array): Uint8Array;
  /** a v1 (x509) node's PEM certificate: the message is then protocol v1, RSA-signed */
  pubcert?: string;
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
  if (o.credential.pubcert !== undefined) {
    const v1 = encodeRequestV1({
      message: o.payload,
      requestid: newRequestIdV1(),
      senderid: o.identity,
      callerid: `choria=${o.identity}`,
      collective: o.collective,
      agent: "registration",
      ttl: o.ttl ?? 60,
      time: Math.floor(Date.now() / 1000),
    });
    const secure = encodeSecureRequestV1(v1, o.credential.sign(v1), o.credential.pubcert);
    return encodeTransportV1(secure, { reply: "dev.null", sender: o.identity });
  }
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
