import { createHash } from "node:crypto";

function md5hex(s: string): string {
  return createHash("md5").update(s, "utf8").digest("hex");
}

/** `<collective>.reply.<md5hex(callerid)>`: the client inbox prefix go-choria uses. */
export function replyPrefix(collective: string, callerId: string): string {
  return `${collective}.reply.${md5hex(callerId)}`;
}

/** `<collective>.reply.<md5hex(callerid)>.<requestid>` */
export function replySubject(collective: string, callerId: string, requestId: string): string {
  return `${replyPrefix(collective, callerId)}.${requestId}`;
}

/** `<collective>.broadcast.agent.<agent>` */
export function broadcastSubject(collective: string, agent: string): string {
  return `${collective}.broadcast.agent.${agent}`;
}

/** `<collective>.broadcast.service.<agent>` (subscribed with queue group = agent name) */
export function serviceSubject(collective: string, agent: string): string {
  return `${collective}.broadcast.service.${agent}`;
}

/** `<collective>.node.<identity>` */
export function directSubject(collective: string, identity: string): string {
  return `${collective}.node.${identity}`;
}
