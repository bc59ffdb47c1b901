import { decodeReply, decodeSecureReply, decodeTransport, StatusCode } from "../protocol/index.js";
import { SecurityError, verify, verifyToken } from "../security/index.js";
import type { DropCounts } from "./types.js";

/**
 * What reply verification needs from a security provider. ChoriaSecurity fits; a
 * worker thread can build one from the issuer keys alone (see issuerTrust).
 */
export interface ReplyTrust {
  verifyServerToken(jwt: string): { identity: string; public_key: string };
  verifySignature(publicHex: string, data: Uint8Array, sig: Uint8Array): boolean;
}

/** A ReplyTrust from issuer keys alone, for places without a ChoriaSecurity (worker threads). */
export function issuerTrust(issuers: string[]): ReplyTrust {
  const trusted = [...issuers];
  return {
    verifyServerToken(jwt) {
      const c = verifyToken(jwt, trusted);
      if (c.purpose !== "choria_server")
        throw new SecurityError("wrong_purpose", `token purpose is ${c.purpose}, need choria_server`);
      return c as { identity: string; public_key: string };
    },
    verifySignature: verify,
  };
}

export type DropReason = keyof DropCounts;

export type OpenedReply =
  | { ok: true; sender: string; requestId: string; agent: string; timeNs: number; message: Buffer }
  | { ok: false; reason: DropReason; detail: string };

export function emptyDropCounts(): DropCounts {
  return { malformed: 0, hash: 0, signature: 0, request: 0, duplicate: 0 };
}

/**
 * Checks a reply signature: the sender JWT must be a server token from a trusted
 * issuer, name the same identity as the reply, and its key must verify the signature
 * over the exact reply bytes. Returns why it failed, or undefined when it is good.
 * Plain data in, plain data out, so it can run in a worker thread unchanged.
 */
export function checkReplySignature(
  trust: ReplyTrust,
  replyBytes: Uint8Array,
  signature: Uint8Array | undefined,
  senderJwt: string | undefined,
  sender: string,
): string | undefined {
  if (!signature || signature.length === 0) return "reply is not signed";
  if (!senderJwt) return "reply carries no sender token";
  let claims: { identity: string; public_key: string };
  try {
    claims = trust.verifyServerToken(senderJwt);
  } catch (err) {
    return `sender token rejected: ${(err as Error).message}`;
  }
  if (claims.identity !== sender) return `sender token is for ${claims.identity}, reply claims ${sender}`;
  if (!trust.verifySignature(claims.public_key, replyBytes, signature)) return "bad reply signature";
  return undefined;
}

/**
 * Unwraps one reply message (transport → secure reply → reply). The hash is always
 * checked; the signature only when `trust` is given. This is the whole per-reply
 * crypto cost, behind a bytes-in/data-out boundary so it can move to workers.
 */
export function openReply(bytes: Uint8Array, trust?: ReplyTrust): OpenedReply {
  let secureBytes: Buffer;
  let secure: ReturnType<typeof decodeSecureReply>;
  let decoded: ReturnType<typeof decodeReply>;
  try {
    secureBytes = decodeTransport(bytes).inner;
    secure = decodeSecureReply(secureBytes);
    if (!secure.hashOk) return { ok: false, reason: "hash", detail: "reply hash mismatch" };
    decoded = decodeReply(secure.replyBytes);
  } catch (err) {
    return { ok: false, reason: "malformed", detail: (err as Error).message };
  }
  const reply = decoded.reply;
  if (trust) {
    const why = checkReplySignature(
      trust,
      secure.replyBytes,
      secure.signature,
      secure.secure.sender,
      reply.sender,
    );
    if (why !== undefined) return { ok: false, reason: "signature", detail: `${reply.sender}: ${why}` };
  }
  return {
    ok: true,
    sender: reply.sender,
    requestId: reply.request,
    agent: reply.agent,
    timeNs: reply.time,
    message: decoded.message,
  };
}

export interface RpcReplyFields {
  statuscode: number;
  statusmsg: string;
  data: Record<string, unknown>;
}

/**
 * Parses an mcorpc reply body with Choria's defaults (0, "OK", {}). Only cheap type
 * checks: a body that is not an object counts as an unknown error rather than a drop,
 * so the operator sees that the node answered.
 */
export function parseRpcReplyBody(message: Buffer): RpcReplyFields {
  let doc: unknown;
  try {
    doc = JSON.parse(message.toString("utf8"));
  } catch {
    return { statuscode: StatusCode.UnknownError, statusmsg: "reply body is not JSON", data: {} };
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) {
    return { statuscode: StatusCode.UnknownError, statusmsg: "reply body is not a JSON object", data: {} };
  }
  const b = doc as { statuscode?: unknown; statusmsg?: unknown; data?: unknown };
  const statuscode =
    b.statuscode === undefined ? 0 : Number.isInteger(b.statuscode) ? (b.statuscode as number) : 5;
  const statusmsg = typeof b.statusmsg === "string" ? b.statusmsg : statuscode === 0 ? "OK" : "";
  const data =
    b.data !== null && typeof b.data === "object" && !Array.isArray(b.data)
      ? (b.data as Record<string, unknown>)
      : {};
  return { statuscode, statusmsg, data };
}
