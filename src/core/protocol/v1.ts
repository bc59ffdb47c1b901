import { hash, randomUUID } from "node:crypto";
import {
  b64,
  decodeBase64Strict,
  filterDoc,
  filterJson,
  mustB64,
  mustMatch,
  parseLayer,
  tolerantPayload,
  type DecodeOptions,
  type FilterDoc,
} from "./codec.js";
import { PROTOCOL_V1, PROTOCOL_V2 } from "./constants.js";
import { ProtocolError } from "./errors.js";
import { emptyFilter, type Filter } from "./filter.js";
import { goInt, goString, goStringArray } from "./gojson.js";
import { validators } from "./schemas.js";
import type { Reply, Request, Transport, TransportHeaders } from "./types.js";
import { protocolVersion } from "./version.js";

// Protocol v1 (x509 fleets): the layers of go-choria's protocol/v1, field order and
// omitempty as its structs. Decoders hand back the v2 shapes (Transport, Request, Reply)
// with v1 values normalised (ids, senders, times in ns), so one server and one client
// path serve both versions; `version` says which one was on the wire.

export interface TransportHeadersV1 {
  "reply-to"?: string;
  mc_sender?: string;
  "seen-by"?: [string, string, string][];
  federation?: { req?: string; "reply-to"?: string; target?: string[] };
}

export interface TransportV1 {
  protocol: string;
  data: string;
  headers: TransportHeadersV1;
}

export interface SecureRequestV1 {
  protocol: string;
  /** the request JSON as a raw string (not base64, whatever the schema text says) */
  message: string;
  /** base64 RSA PKCS#1 v1.5 SHA-256 signature over `message` */
  signature: string;
  /** the caller's PEM certificate */
  pubcert: string;
}

export interface RequestEnvelopeV1 {
  requestid: string;
  senderid: string;
  callerid: string;
  collective: string;
  agent: string;
  ttl: number;
  /** unix seconds */
  time: number;
  filter: Filter;
}

export interface RequestV1 {
  protocol: string;
  /** the payload as a raw string */
  message: string;
  envelope: RequestEnvelopeV1;
}

export interface SecureReplyV1 {
  protocol: string;
  message: string;
  /** base64 sha256 of `message` */
  hash: string;
}

export interface ReplyV1 {
  protocol: string;
  message: string;
  envelope: { requestid: string; senderid: string; agent: string; time: number };
}

/** A v1 request id: 32 hex characters (a UUID without its dashes). */
export function newRequestIdV1(): string {
  return randomUUID().replaceAll("-", "");
}

function text(payload: Uint8Array | string): string {
  return typeof payload === "string" ? payload : Buffer.from(payload).toString("utf8");
}

export type RequestV1Fields = Omit<RequestEnvelopeV1, "filter"> & {
  /** the payload (usually the RPC body JSON), carried as a raw string */
  message: Uint8Array | string;
  filter?: Filter;
};

/** Request JSON: {protocol,message,envelope{requestid,senderid,callerid,collective,agent,ttl,time,filter}}. */
export function encodeRequestV1(r: RequestV1Fields): Buffer {
  const filter: FilterDoc = filterDoc(r.filter ?? emptyFilter());
  const d: RequestV1 = {
    protocol: PROTOCOL_V1.request,
    message: text(r.message),
    envelope: {
      requestid: r.requestid,
      senderid: r.senderid,
      callerid: r.callerid,
      collective: r.collective,
      agent: r.agent,
      ttl: r.ttl,
      time: r.time,
      filter,
    },
  };
  mustMatch(validators.requestV1, d, "v1 request");
  const e = d.envelope;
  const s =
    `{"protocol":"${d.protocol}","message":${goString(d.message)},"envelope":{` +
    `"requestid":${goString(e.requestid)},"senderid":${goString(e.senderid)}` +
    `,"callerid":${goString(e.callerid)},"collective":${goString(e.collective)}` +
    `,"agent":${goString(e.agent)},"ttl":${goInt(e.ttl, "ttl")},"time":${goInt(e.time, "time")}` +
    `,"filter":${filterJson(filter)}}}`;
  return Buffer.from(s, "utf8");
}

/** Secure request JSON: {protocol,message,signature,pubcert}. */
export function encodeSecureRequestV1(
  requestJson: Uint8Array,
  signature: Uint8Array,
  pubcert: string,
): Buffer {
  const d: SecureRequestV1 = {
    protocol: PROTOCOL_V1.secureRequest,
    message: text(requestJson),
    signature: b64(signature),
    pubcert,
  };
  mustMatch(validators.secureRequestV1, d, "v1 secure request");
  const s =
    `{"protocol":"${d.protocol}","message":${goString(d.message)}` +
    `,"signature":"${d.signature}","pubcert":${goString(d.pubcert)}}`;
  return Buffer.from(s, "utf8");
}

export interface ReplyV1Fields {
  message: Uint8Array | string;
  requestid: string;
  senderid: string;
  agent: string;
  /** unix seconds */
  time: number;
}

/** Reply JSON: {protocol,message,envelope{requestid,senderid,agent,time}}. */
export function encodeReplyV1(r: ReplyV1Fields): Buffer {
  const d: ReplyV1 = {
    protocol: PROTOCOL_V1.reply,
    message: text(r.message),
    envelope: { requestid: r.requestid, senderid: r.senderid, agent: r.agent, time: r.time },
  };
  mustMatch(validators.replyV1, d, "v1 reply");
  const e = d.envelope;
  const s =
    `{"protocol":"${d.protocol}","message":${goString(d.message)},"envelope":{` +
    `"requestid":${goString(e.requestid)},"senderid":${goString(e.senderid)}` +
    `,"agent":${goString(e.agent)},"time":${goInt(e.time, "time")}}}`;
  return Buffer.from(s, "utf8");
}

/** Secure reply JSON: {protocol,message,hash}; v1 replies are hashed, never signed. */
export function encodeSecureReplyV1(replyJson: Uint8Array): Buffer {
  const d: SecureReplyV1 = {
    protocol: PROTOCOL_V1.secureReply,
    message: text(replyJson),
    hash: hash("sha256", replyJson, "base64"),
  };
  mustMatch(validators.secureReplyV1, d, "v1 secure reply");
  return Buffer.from(
    `{"protocol":"${d.protocol}","message":${goString(d.message)},"hash":"${d.hash}"}`,
    "utf8",
  );
}

function headersV1(h: TransportHeaders): TransportHeadersV1 {
  const d: TransportHeadersV1 = {};
  if (h.reply) d["reply-to"] = h.reply;
  if (h.sender) d.mc_sender = h.sender;
  if (h.trace && h.trace.length > 0) d["seen-by"] = h.trace;
  if (h.federation) {
    const f = h.federation;
    const fd: NonNullable<TransportHeadersV1["federation"]> = {};
    if (f.request) fd.req = f.request;
    if (f.reply) fd["reply-to"] = f.reply;
    if (f.targets && f.targets.length > 0) fd.target = f.targets;
    d.federation = fd;
  }
  return d;
}

function headersV1Json(d: TransportHeadersV1): string {
  const parts: string[] = [];
  if (d["reply-to"] !== undefined) parts.push(`"reply-to":${goString(d["reply-to"])}`);
  if (d.mc_sender !== undefined) parts.push(`"mc_sender":${goString(d.mc_sender)}`);
  if (d["seen-by"] !== undefined)
    parts.push(`"seen-by":[${d["seen-by"].map((t) => goStringArray(t)).join(",")}]`);
  const f = d.federation;
  if (f !== undefined) {
    const fp: string[] = [];
    if (f.req !== undefined) fp.push(`"req":${goString(f.req)}`);
    if (f["reply-to"] !== undefined) fp.push(`"reply-to":${goString(f["reply-to"])}`);
    if (f.target !== undefined) fp.push(`"target":${goStringArray(f.target)}`);
    parts.push(`"federation":{${fp.join(",")}}`);
  }
  return `{${parts.join(",")}}`;
}

/** Transport JSON: {protocol,data,headers}; takes the v2 header names and writes v1's. */
export function encodeTransportV1(inner: Uint8Array, headers: TransportHeaders): Buffer {
  const d: TransportV1 = {
    protocol: PROTOCOL_V1.transport,
    data: b64(inner),
    headers: headersV1(headers ?? {}),
  };
  mustMatch(validators.transportV1, d, "v1 transport");
  return Buffer.from(
    `{"protocol":"${d.protocol}","data":"${d.data}","headers":${headersV1Json(d.headers)}}`,
    "utf8",
  );
}

// ---------------------------------------------------------------------------
// decoders

function headersFromV1(h: TransportHeadersV1): TransportHeaders {
  const d: TransportHeaders = {};
  if (h["reply-to"] !== undefined) d.reply = h["reply-to"];
  if (h.mc_sender !== undefined) d.sender = h.mc_sender;
  if (h["seen-by"] !== undefined) d.trace = h["seen-by"];
  if (h.federation !== undefined) {
    const f = h.federation;
    const fd: NonNullable<TransportHeaders["federation"]> = {};
    if (f.req !== undefined) fd.request = f.req;
    if (f["reply-to"] !== undefined) fd.reply = f["reply-to"];
    if (f.target !== undefined) fd.targets = f.target;
    d.federation = fd;
  }
  return d;
}

/**
 * A transport of either version. v1 headers come back under the v2 names (reply,
 * sender, trace, federation.request/reply/targets) so callers read one shape; anything
 * else (an unknown protocol, a bare secure layer) is refused with code "protocol".
 */
export function decodeAnyTransport(
  bytes: Uint8Array,
  opts: DecodeOptions = {},
): { version: 1 | 2; transport: Transport; inner: Buffer } {
  const light = opts.strict === false;
  // Peek without parsing twice: parseLayer rejects a foreign protocol, so pick the right one first.
  const p = protocolVersion(bytes);
  if (p !== PROTOCOL_V1.transport) {
    const t = parseLayer<Transport>(
      bytes,
      PROTOCOL_V2.transport,
      light ? ["data"] : validators.transport,
      "transport",
    );
    if (light) {
      const h = t.headers as unknown;
      if (h === undefined) t.headers = {};
      else if (typeof h !== "object" || h === null || Array.isArray(h))
        throw new ProtocolError("schema", "transport headers are not an object");
    }
    return { version: 2, transport: t, inner: mustB64(t.data, "transport data") };
  }
  const t = parseLayer<TransportV1>(
    bytes,
    PROTOCOL_V1.transport,
    light ? ["data"] : validators.transportV1,
    "v1 transport",
  );
  const h = (t.headers as unknown) ?? {};
  if (typeof h !== "object" || h === null || Array.isArray(h))
    throw new ProtocolError("schema", "v1 transport headers are not an object");
  return {
    version: 1,
    transport: { protocol: t.protocol, data: t.data, headers: headersFromV1(h as TransportHeadersV1) },
    inner: mustB64(t.data, "v1 transport data"),
  };
}

export function decodeSecureRequestV1(bytes: Uint8Array): {
  secure: SecureRequestV1;
  requestBytes: Buffer;
  signature: Buffer;
} {
  const secure = parseLayer<SecureRequestV1>(
    bytes,
    PROTOCOL_V1.secureRequest,
    validators.secureRequestV1,
    "v1 secure request",
  );
  // go-choria's unsigned markers: "insecure registration" fails here; "insecure" happens to be
  // base64 and fails the signature check instead. Either way nothing unsigned is accepted.
  const signature = decodeBase64Strict(secure.signature);
  if (signature === undefined)
    throw new ProtocolError("malformed", "v1 secure request signature is not valid base64");
  return { secure, requestBytes: Buffer.from(secure.message, "utf8"), signature };
}

/** A v1 request, also as the v2-shaped Request the rest of Chorus reads (time in ns, ids renamed). */
export function decodeRequestV1(bytes: Uint8Array): { v1: RequestV1; request: Request; message: Buffer } {
  const v1 = parseLayer<RequestV1>(bytes, PROTOCOL_V1.request, validators.requestV1, "v1 request");
  const e = v1.envelope;
  const f = e.filter as Partial<Filter>;
  f.fact ??= [];
  f.cf_class ??= [];
  f.agent ??= [];
  f.identity ??= [];
  f.compound ??= [];
  const message = tolerantPayload(Buffer.from(v1.message, "utf8"));
  const request: Request = {
    protocol: v1.protocol,
    message: b64(message),
    id: e.requestid,
    sender: e.senderid,
    caller: e.callerid,
    collective: e.collective,
    agent: e.agent,
    ttl: e.ttl,
    time: e.time * 1e9,
    filter: e.filter,
  };
  return { v1, request, message };
}

export function decodeSecureReplyV1(
  bytes: Uint8Array,
  opts: DecodeOptions = {},
): { secure: SecureReplyV1; replyBytes: Buffer; hashOk: boolean } {
  const check = opts.strict === false ? ["message", "hash"] : validators.secureReplyV1;
  const secure = parseLayer<SecureReplyV1>(bytes, PROTOCOL_V1.secureReply, check, "v1 secure reply");
  const replyBytes = Buffer.from(secure.message, "utf8");
  return { secure, replyBytes, hashOk: hash("sha256", replyBytes, "base64") === secure.hash };
}

/** A v1 reply as the v2-shaped Reply (request id, sender, time in ns) plus its payload. */
export function decodeReplyV1(
  bytes: Uint8Array,
  opts: DecodeOptions = {},
): { reply: Reply; message: Buffer } {
  const light = opts.strict === false;
  const v1 = parseLayer<ReplyV1>(
    bytes,
    PROTOCOL_V1.reply,
    light ? ["message"] : validators.replyV1,
    "v1 reply",
  );
  const e = v1.envelope as Partial<ReplyV1["envelope"]> | undefined;
  if (
    light &&
    (typeof e !== "object" ||
      e === null ||
      typeof e.requestid !== "string" ||
      typeof e.senderid !== "string" ||
      typeof e.agent !== "string" ||
      typeof e.time !== "number")
  )
    throw new ProtocolError("schema", "v1 reply envelope lacks requestid, senderid, agent or time");
  const env = e as ReplyV1["envelope"];
  const message = tolerantPayload(Buffer.from(v1.message, "utf8"));
  return {
    reply: {
      protocol: v1.protocol,
      message: b64(message),
      request: env.requestid,
      sender: env.senderid,
      agent: env.agent,
      time: env.time * 1e9,
    },
    message,
  };
}
