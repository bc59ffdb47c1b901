import {
  MAX_MESSAGE_BYTES,
  PROTOCOL_V2,
  recordNetworkHop,
  type TransportHeaders,
} from "../../core/protocol/index.js";
import type { BadMessageReason } from "./metrics.js";

/** `choria.federation.<cluster>.federation`: requests from clients come in here. */
export function federationRequestSubject(cluster: string): string {
  return `choria.federation.${cluster}.federation`;
}

/** `choria.federation.<cluster>.collective`: nodes' replies to federated requests come in here. */
export function federationCollectiveSubject(cluster: string): string {
  return `choria.federation.${cluster}.collective`;
}

/** A message the broker will not forward, with the reason it is counted under. */
export class BadMessage extends Error {
  constructor(
    readonly reason: BadMessageReason,
    message: string,
  ) {
    super(message);
  }
}

/** What to publish: the same bytes to every subject. */
export interface Forward {
  subjects: string[];
  data: Uint8Array;
  requestId: string;
}

// Where a federated request may be delivered: a node, an agent broadcast or a service
// broadcast in some collective; never a wildcard or any other subject the broker's own
// credential could reach.
const TARGET = /^[A-Za-z0-9_-]+\.(node\.[^\s*>]+|broadcast\.(agent|service)\.[A-Za-z0-9_-]+)$/;
/** A caller's reply inbox: `<collective>.reply.<hash>.<anything without wildcards>`. */
export const REPLY_INBOX = /^[A-Za-z0-9_-]+\.reply\.[0-9a-f]{32,64}\.[^\s*>]+$/;

/** A transport taken apart: its base64 `data` stays the sender's string, never decoded again. */
interface Opened {
  data: string;
  headers: TransportHeaders;
}

const B64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * A light decode of the transport layer, the broker's hot path: size, JSON, protocol,
 * `data` as base64 text (not decoded: it is forwarded as is) and headers an object.
 * The header fields used are type-checked where they are read (federationOf, seal).
 * No depth scan: nothing here walks the document recursively.
 */
function open(bytes: Uint8Array): Opened {
  if (bytes.byteLength > MAX_MESSAGE_BYTES)
    throw new BadMessage("malformed", `transport of ${bytes.byteLength} bytes exceeds ${MAX_MESSAGE_BYTES}`);
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8"));
  } catch (err) {
    throw new BadMessage("malformed", `not a Choria transport message: ${(err as Error).message}`);
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc))
    throw new BadMessage("malformed", "not a Choria transport message: not a JSON object");
  const { protocol, data, headers } = doc as Record<string, unknown>;
  if (protocol !== PROTOCOL_V2.transport)
    throw new BadMessage(
      "malformed",
      `not a Choria transport message: protocol is not ${PROTOCOL_V2.transport}`,
    );
  if (typeof data !== "string" || data.length % 4 !== 0 || !B64.test(data))
    throw new BadMessage("malformed", "transport data is not base64");
  if (headers !== undefined && (typeof headers !== "object" || headers === null || Array.isArray(headers)))
    throw new BadMessage("malformed", "transport headers are not an object");
  return { data, headers: (headers ?? {}) as TransportHeaders };
}

const isString = (v: unknown): v is string => typeof v === "string";

function malformed(what: string): BadMessage {
  return new BadMessage("malformed", `transport header ${what} is not the right type`);
}

/**
 * The outgoing transport: the incoming `data` string spliced in unchanged (no base64
 * round trip, so the signed bytes inside cannot change) and the headers as go-choria
 * writes them (empty ones left out; a federation header always written). Reply and
 * sender are type-checked here; trace and federation were by traceOf and federationOf.
 */
function seal(data: string, h: TransportHeaders): Buffer {
  const parts: string[] = [];
  if (h.reply !== undefined && h.reply !== "") {
    if (!isString(h.reply)) throw malformed("reply");
    parts.push(`"reply":${JSON.stringify(h.reply)}`);
  }
  if (h.sender !== undefined && h.sender !== "") {
    if (!isString(h.sender)) throw malformed("sender");
    parts.push(`"sender":${JSON.stringify(h.sender)}`);
  }
  if (h.trace !== undefined && h.trace.length > 0) parts.push(`"trace":${JSON.stringify(h.trace)}`);
  const f = h.federation;
  if (f !== undefined) {
    const fp: string[] = [];
    if (f.request !== undefined && f.request !== "") {
      if (!isString(f.request)) throw malformed("federation.request");
      fp.push(`"request":${JSON.stringify(f.request)}`);
    }
    if (f.reply !== undefined && f.reply !== "") fp.push(`"reply":${JSON.stringify(f.reply)}`);
    if (f.targets !== undefined && f.targets.length > 0) fp.push(`"targets":${JSON.stringify(f.targets)}`);
    parts.push(`"federation":{${fp.join(",")}}`);
  }
  return Buffer.from(
    `{"protocol":"${PROTOCOL_V2.transport}","data":"${data}","headers":{${parts.join(",")}}}`,
    "utf8",
  );
}

/** A copy of the seen-by hops, checked to be string triples (a light decode does not). */
function traceOf(h: TransportHeaders): NonNullable<TransportHeaders["trace"]> {
  const t = h.trace as unknown;
  if (t === undefined || t === null) return [];
  if (!Array.isArray(t) || !t.every((x) => Array.isArray(x) && x.length === 3 && x.every(isString)))
    throw malformed("trace");
  return [...(t as NonNullable<TransportHeaders["trace"]>)];
}

type FederationHeader = NonNullable<TransportHeaders["federation"]>;

/** The federation header checked for type (a light decode does not); undefined when absent. */
function federationOf(h: TransportHeaders): FederationHeader | undefined {
  const f = h.federation as unknown;
  if (f === undefined) return undefined;
  if (typeof f !== "object" || f === null || Array.isArray(f)) throw malformed("federation");
  const { request, reply, targets } = f as Record<string, unknown>;
  if (request !== undefined && !isString(request)) throw malformed("federation.request");
  if (reply !== undefined && !isString(reply)) throw malformed("federation.reply");
  if (targets !== undefined && !(Array.isArray(targets) && targets.every(isString)))
    throw malformed("federation.targets");
  return f as FederationHeader;
}

/**
 * go-choria's request path (ingest → request transformer → egest) for one message: the
 * caller's reply-to is kept in `federation.reply`, reply-to becomes the collective
 * subject, targets are taken off the message, and one seen-by hop is recorded. The
 * signed request inside is carried over byte for byte.
 */
export function transformRequest(
  data: Uint8Array,
  cluster: string,
  hop: { incoming: string; processor: string; outgoing: string },
): Forward {
  const { data: inner, headers } = open(data);
  const fed = federationOf(headers);
  if (fed === undefined) throw new BadMessage("not_federated", "request carries no federation header");
  const id = fed.request ?? "";
  const targets = fed.targets ?? [];
  if (targets.length === 0) throw new BadMessage("no_targets", `request ${id} has no targets`);
  for (const t of targets)
    if (!TARGET.test(t))
      throw new BadMessage(
        "bad_target",
        `request ${id}: target "${t.slice(0, 200)}" is not a node or broadcast subject`,
      );
  const reply = headers.reply as unknown;
  if (!reply) throw new BadMessage("no_reply", `request ${id} has no reply-to`);
  if (!isString(reply) || !REPLY_INBOX.test(reply))
    throw new BadMessage(
      "bad_reply",
      `request ${id}: reply-to "${String(reply).slice(0, 200)}" is not a reply inbox`,
    );
  const out: TransportHeaders = {
    ...headers,
    reply: federationCollectiveSubject(cluster),
    federation: { ...(fed.request !== undefined && { request: fed.request }), reply },
  };
  out.trace = traceOf(headers);
  recordNetworkHop({ headers: out }, hop.incoming, hop.processor, hop.outgoing);
  return { subjects: [...targets], data: seal(inner, out), requestId: id };
}

/**
 * go-choria's reply path (ingest → reply transformer → egest): the federation headers
 * come off, a hop is recorded, and the reply goes to the caller's saved reply-to.
 */
export function transformReply(
  data: Uint8Array,
  hop: { incoming: string; processor: string; outgoing: string },
): Forward {
  const { data: inner, headers } = open(data);
  const fed = federationOf(headers);
  if (fed === undefined) throw new BadMessage("not_federated", "reply carries no federation header");
  const id = fed.request ?? "";
  const reply = fed.reply ?? "";
  if (reply === "") throw new BadMessage("no_reply", `reply to ${id} has no saved reply-to`);
  if (!REPLY_INBOX.test(reply))
    throw new BadMessage(
      "bad_reply",
      `reply to ${id}: saved reply-to "${reply.slice(0, 200)}" is not a reply inbox`,
    );
  const out: TransportHeaders = { ...headers };
  delete out.federation;
  out.trace = traceOf(headers);
  recordNetworkHop({ headers: out }, hop.incoming, hop.processor, hop.outgoing);
  return { subjects: [reply], data: seal(inner, out), requestId: id };
}
