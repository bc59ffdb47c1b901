import { hash } from "node:crypto";
import type { ValidateFunction } from "ajv";
import { MAX_MESSAGE_BYTES, PROTOCOL_UNKNOWN, PROTOCOL_V2 } from "./constants.js";
import { MAX_JSON_DEPTH, jsonDepthExceeds } from "./depth.js";
import { ProtocolError } from "./errors.js";
import type { Filter } from "./filter.js";
import { goInt, goString, goStringArray, goStringMap } from "./gojson.js";
import { errorsText, validators } from "./schemas.js";
import type { Reply, Request, SecureReply, SecureRequest, Transport, TransportHeaders } from "./types.js";

// ---------------------------------------------------------------------------
// byte helpers

/** A Buffer view over the same memory (no copy). */
function view(u8: Uint8Array): Buffer {
  return Buffer.isBuffer(u8) ? u8 : Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

export function b64(u8: Uint8Array): string {
  return view(u8).toString("base64");
}

/**
 * Standard padded base64 as Go's encoding/base64 StdEncoding accepts it, or undefined.
 * Node's decoder silently skips bad characters, so a length mismatch reveals them
 * without re-encoding the whole input.
 */
export function decodeBase64Strict(s: string): Buffer | undefined {
  const n = s.length;
  if (n % 4 !== 0) return undefined;
  if (n === 0) return Buffer.alloc(0);
  let pad = 0;
  if (s.charCodeAt(n - 1) === 61) pad = s.charCodeAt(n - 2) === 61 ? 2 : 1;
  const buf = Buffer.from(s, "base64");
  if (buf.length !== (n / 4) * 3 - pad) return undefined;
  // Node also accepts the URL-safe alphabet; Go's StdEncoding does not.
  if (s.includes("-") || s.includes("_")) return undefined;
  return buf;
}

/** Encodes bytes or a UTF-8 string as the base64 a `message` field carries. */
export function encodeMessage(payload: Uint8Array | string): string {
  return typeof payload === "string" ? Buffer.from(payload, "utf8").toString("base64") : b64(payload);
}

// ---------------------------------------------------------------------------
// encoders: field order and omitempty rules follow go-choria's v2 structs.
//
// Each encoder first builds the document it is about to write (only what goes on the
// wire, after omitempty), checks it against the same compiled schema the decoders use,
// and then writes the JSON from that document. A peer would refuse a message that fails
// its schema, so failing here names the field to the caller instead. The schemas have no
// patterns and only `minLength: 1` on strings, so the check costs a few property tests,
// not a pass over the (possibly large) base64 fields.

export function mustMatch(validate: ValidateFunction, doc: object, what: string): void {
  if (!validate(doc)) {
    throw new ProtocolError(
      "schema",
      `refusing to encode a ${what} that fails Choria's ${what} schema: ${errorsText(validate.errors)}`,
    );
  }
}

export type FilterDoc = Filter;

/** The filter as encodeRequest writes it: every list present. */
export function filterDoc(f: Filter): FilterDoc {
  return {
    fact: f.fact ?? [],
    cf_class: f.cf_class ?? [],
    agent: f.agent ?? [],
    identity: f.identity ?? [],
    compound: f.compound ?? [],
  };
}

export function filterJson(f: FilterDoc): string {
  let facts = "[";
  const ff = f.fact;
  for (let i = 0; i < ff.length; i++) {
    const x = ff[i]!;
    if (i > 0) facts += ",";
    facts += `{"fact":${goString(x.fact)},"operator":${goString(x.operator)},"value":${goString(x.value)}}`;
  }
  facts += "]";
  let compound = "[";
  const cc = f.compound;
  for (let i = 0; i < cc.length; i++) {
    if (i > 0) compound += ",";
    const group = cc[i]!;
    compound += "[";
    for (let j = 0; j < group.length; j++) {
      if (j > 0) compound += ",";
      // Go encodes these as map[string]string, i.e. with sorted keys.
      compound += goStringMap(group[j] as unknown as Record<string, unknown>);
    }
    compound += "]";
  }
  compound += "]";
  return (
    `{"fact":${facts},"cf_class":${goStringArray(f.cf_class)},"agent":${goStringArray(f.agent)}` +
    `,"identity":${goStringArray(f.identity)},"compound":${compound}}`
  );
}

/** Request JSON: {protocol,message,id,sender,caller,collective,agent,ttl,time,filter?}. */
export function encodeRequest(r: Omit<Request, "protocol">): Buffer {
  const d: Request & { filter?: FilterDoc } = {
    protocol: PROTOCOL_V2.request,
    message: r.message,
    id: r.id,
    sender: r.sender,
    caller: r.caller,
    collective: r.collective,
    agent: r.agent,
    ttl: r.ttl,
    time: r.time,
  };
  if (r.filter) d.filter = filterDoc(r.filter);
  mustMatch(validators.request, d, "request");
  let s =
    `{"protocol":"${d.protocol}","message":${goString(d.message)},"id":${goString(d.id)}` +
    `,"sender":${goString(d.sender)},"caller":${goString(d.caller)},"collective":${goString(d.collective)}` +
    `,"agent":${goString(d.agent)},"ttl":${goInt(d.ttl, "ttl")},"time":${goInt(d.time, "time")}`;
  if (d.filter) s += `,"filter":${filterJson(d.filter)}`;
  return Buffer.from(s + "}", "utf8");
}

/** Secure request JSON: {protocol,request,signature,caller,signer?}; byte fields are base64. */
export function encodeSecureRequest(
  requestBytes: Uint8Array,
  signature: Uint8Array,
  callerJwt: string,
  signerJwt?: string,
): Buffer {
  const d: SecureRequest = {
    protocol: PROTOCOL_V2.secureRequest,
    request: b64(requestBytes),
    signature: b64(signature),
    caller: callerJwt,
  };
  if (signerJwt) d.signer = signerJwt;
  mustMatch(validators.secureRequest, d, "secure request");
  let s =
    `{"protocol":"${d.protocol}","request":"${d.request}"` +
    `,"signature":"${d.signature}","caller":${goString(d.caller)}`;
  if (d.signer !== undefined) s += `,"signer":${goString(d.signer)}`;
  return Buffer.from(s + "}", "utf8");
}

/** Reply JSON: {protocol,message,request,sender,agent,time}. */
export function encodeReply(r: Omit<Reply, "protocol">): Buffer {
  const d: Reply = {
    protocol: PROTOCOL_V2.reply,
    message: r.message,
    request: r.request,
    sender: r.sender,
    agent: r.agent,
    time: r.time,
  };
  mustMatch(validators.reply, d, "reply");
  const s =
    `{"protocol":"${d.protocol}","message":${goString(d.message)},"request":${goString(d.request)}` +
    `,"sender":${goString(d.sender)},"agent":${goString(d.agent)},"time":${goInt(d.time, "time")}}`;
  return Buffer.from(s, "utf8");
}

/** Secure reply JSON: {protocol,reply,hash,signature?,sender?}; hash is base64(sha256(reply bytes)). */
export function encodeSecureReply(
  replyBytes: Uint8Array,
  signature?: Uint8Array,
  senderJwt?: string,
): Buffer {
  const d: SecureReply = {
    protocol: PROTOCOL_V2.secureReply,
    reply: b64(replyBytes),
    hash: hash("sha256", replyBytes, "base64"),
  };
  // Go's omitempty drops a nil or zero-length []byte and an empty string.
  if (signature && signature.length > 0) d.signature = b64(signature);
  if (senderJwt) d.sender = senderJwt;
  mustMatch(validators.secureReply, d, "secure reply");
  let s = `{"protocol":"${d.protocol}","reply":"${d.reply}","hash":"${d.hash}"`;
  if (d.signature !== undefined) s += `,"signature":"${d.signature}"`;
  if (d.sender !== undefined) s += `,"sender":${goString(d.sender)}`;
  return Buffer.from(s + "}", "utf8");
}

/** The headers as written: empty strings and lists left out, a federation object always kept. */
function headersDoc(h: TransportHeaders): TransportHeaders {
  const d: TransportHeaders = {};
  if (h.reply) d.reply = h.reply;
  if (h.sender) d.sender = h.sender;
  if (h.trace && h.trace.length > 0) d.trace = h.trace;
  if (h.federation) {
    // A non-nil pointer is always written, even when every field inside is empty.
    const f = h.federation;
    const fd: NonNullable<TransportHeaders["federation"]> = {};
    if (f.request) fd.request = f.request;
    if (f.reply) fd.reply = f.reply;
    if (f.targets && f.targets.length > 0) fd.targets = f.targets;
    d.federation = fd;
  }
  return d;
}

function headersJson(d: TransportHeaders): string {
  const parts: string[] = [];
  if (d.reply !== undefined) parts.push(`"reply":${goString(d.reply)}`);
  if (d.sender !== undefined) parts.push(`"sender":${goString(d.sender)}`);
  if (d.trace !== undefined) parts.push(`"trace":[${d.trace.map((t) => goStringArray(t)).join(",")}]`);
  const f = d.federation;
  if (f !== undefined) {
    const fp: string[] = [];
    if (f.request !== undefined) fp.push(`"request":${goString(f.request)}`);
    if (f.reply !== undefined) fp.push(`"reply":${goString(f.reply)}`);
    if (f.targets !== undefined) fp.push(`"targets":${goStringArray(f.targets)}`);
    parts.push(`"federation":{${fp.join(",")}}`);
  }
  return `{${parts.join(",")}}`;
}

/** Transport JSON: {protocol,data,headers}; data is base64 of the secure layer. */
export function encodeTransport(inner: Uint8Array, headers: TransportHeaders): Buffer {
  const d: Transport = {
    protocol: PROTOCOL_V2.transport,
    data: b64(inner),
    headers: headersDoc(headers ?? {}),
  };
  mustMatch(validators.transport, d, "transport");
  const s = `{"protocol":"${d.protocol}","data":"${d.data}","headers":${headersJson(d.headers)}}`;
  return Buffer.from(s, "utf8");
}

// ---------------------------------------------------------------------------
// decoders

/**
 * Reply-side decode options. go-choria validates reply layers against their schemas
 * only in strict mode (off by default); `strict: false` swaps the schema for a check
 * of just the fields the client reads, which is most of a reply's decode cost.
 *
 * `lax: true` (decodeReply only) goes as far as go-choria's client does with strict
 * validation off: the reply is read the way json.Unmarshal fills a struct, so a missing
 * or null protocol, message, request, sender, agent or time takes Go's zero value
 * ("", an empty body, 0) and any protocol string is kept; a field of the wrong type or
 * a message that is not base64 still fails, as the Go unmarshal does. It implies
 * `strict: false`.
 */
export interface DecodeOptions {
  strict?: boolean;
  lax?: boolean;
}

/** Without a schema: the named fields must be strings (the rest is not read). */
function requireStrings(doc: Record<string, unknown>, fields: readonly string[], what: string): void {
  for (const f of fields) {
    if (typeof doc[f] !== "string") throw new ProtocolError("schema", `${what} has no string field ${f}`);
  }
}

export function parseLayer<T>(
  bytes: Uint8Array,
  protocol: string,
  validate: ValidateFunction | readonly string[] | null,
  what: string,
): T {
  if (bytes.byteLength > MAX_MESSAGE_BYTES) {
    throw new ProtocolError(
      "too_large",
      `${what} of ${bytes.byteLength} bytes exceeds the ${MAX_MESSAGE_BYTES} byte limit`,
    );
  }
  // A linear scan before JSON.parse: nothing recursive (schema checks, freezing, rendering)
  // ever sees a document deeper than this, whoever sent it.
  if (jsonDepthExceeds(bytes, MAX_JSON_DEPTH)) {
    throw new ProtocolError("too_deep", `${what} is nested deeper than ${MAX_JSON_DEPTH} levels`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(view(bytes).toString("utf8"));
  } catch (err) {
    throw new ProtocolError("malformed", `${what} is not valid JSON: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    throw new ProtocolError("malformed", `${what} is not a JSON object`);
  }
  // null: the caller checks every field itself (lax replies).
  if (validate === null) return doc as T;
  // Report a foreign protocol id on its own: it usually means v1 or a different layer, not corruption.
  const p = (doc as { protocol?: unknown }).protocol;
  if (typeof p === "string" && p !== protocol) {
    throw new ProtocolError("protocol", `${what} has protocol ${JSON.stringify(p)}, expected ${protocol}`);
  }
  if (typeof validate !== "function") {
    if (p !== protocol) throw new ProtocolError("schema", `${what} has no protocol field`);
    requireStrings(doc as Record<string, unknown>, validate, what);
  } else if (!validate(doc)) {
    throw new ProtocolError("schema", `${what} failed schema validation: ${errorsText(validate.errors)}`);
  }
  return doc as T;
}

function isB64Char(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 43 || c === 47;
}

export function mustB64(s: string, what: string): Buffer {
  const buf = decodeBase64Strict(s);
  if (buf === undefined) throw new ProtocolError("malformed", `${what} is not valid base64`);
  return buf;
}

const LIGHT = {
  transport: ["data"],
  secureReply: ["reply", "hash"],
  reply: ["message", "request", "sender", "agent"],
} as const;

export function decodeTransport(
  bytes: Uint8Array,
  opts: DecodeOptions = {},
): { transport: Transport; inner: Buffer } {
  const light = opts.strict === false;
  const transport = parseLayer<Transport>(
    bytes,
    PROTOCOL_V2.transport,
    light ? LIGHT.transport : validators.transport,
    "transport",
  );
  if (light) {
    // The schema requires headers; without it, give the header accessors an empty set.
    const h = transport.headers as unknown;
    if (h === undefined) transport.headers = {};
    else if (typeof h !== "object" || h === null || Array.isArray(h)) {
      throw new ProtocolError("schema", "transport headers are not an object");
    }
  }
  return { transport, inner: mustB64(transport.data, "transport data") };
}

export function decodeSecureRequest(bytes: Uint8Array): {
  secure: SecureRequest;
  requestBytes: Buffer;
  signature: Buffer;
} {
  const secure = parseLayer<SecureRequest>(
    bytes,
    PROTOCOL_V2.secureRequest,
    validators.secureRequest,
    "secure request",
  );
  return {
    secure,
    requestBytes: mustB64(secure.request, "secure request body"),
    signature: mustB64(secure.signature, "secure request signature"),
  };
}

/**
 * Decodes a request and its payload. The payload goes through go-choria's two tolerant
 * steps: the JSON-level base64 (kept as raw bytes when it is not base64), then the
 * server's second attempt (message.go SetBase64Payload) which decodes the result again
 * when that is itself valid base64. That is how broadcast discovery's base64("ping")
 * body arrives as "ping", while JSON RPC bodies pass through untouched.
 */
export function decodeRequest(bytes: Uint8Array): { request: Request; message: Buffer } {
  const request = parseLayer<Request>(bytes, PROTOCOL_V2.request, validators.request, "request");
  const f = request.filter as Partial<Filter> | undefined;
  if (f) {
    // The schema allows `agent` to be absent; give callers complete lists.
    f.fact ??= [];
    f.cf_class ??= [];
    f.agent ??= [];
    f.identity ??= [];
    f.compound ??= [];
  }
  const body = decodeBase64Strict(request.message) ?? Buffer.from(request.message, "utf8");
  return { request, message: tolerantPayload(body) };
}

/** The server's second base64 attempt (message.go SetBase64Payload): decoded when the body is itself base64. */
export function tolerantPayload(body: Buffer): Buffer {
  // Cheap pre-check first: JSON bodies (the common case) start with '{' and are never base64.
  const first = body[0];
  const maybe = body.length % 4 === 0 && first !== undefined && isB64Char(first);
  const inner = maybe ? decodeBase64Strict(body.toString("latin1")) : undefined;
  return inner ?? body;
}

export function decodeSecureReply(
  bytes: Uint8Array,
  opts: DecodeOptions = {},
): {
  secure: SecureReply;
  replyBytes: Buffer;
  hashOk: boolean;
  signature?: Buffer;
} {
  const check = opts.strict === false ? LIGHT.secureReply : validators.secureReply;
  const secure = parseLayer<SecureReply>(bytes, PROTOCOL_V2.secureReply, check, "secure reply");
  const replyBytes = mustB64(secure.reply, "secure reply body");
  // go-choria compares base64(sha256(reply)) with the hash string verbatim.
  // one-shot hash: no Hash object per reply (a client opens tens of thousands a second)
  const hashOk = hash("sha256", replyBytes, "base64") === secure.hash;
  const out: { secure: SecureReply; replyBytes: Buffer; hashOk: boolean; signature?: Buffer } = {
    secure,
    replyBytes,
    hashOk,
  };
  if (secure.signature !== undefined) out.signature = mustB64(secure.signature, "secure reply signature");
  return out;
}

export function decodeReply(bytes: Uint8Array, opts: DecodeOptions = {}): { reply: Reply; message: Buffer } {
  if (opts.lax === true) return decodeReplyLax(bytes);
  const reply = parseLayer<Reply>(
    bytes,
    PROTOCOL_V2.reply,
    opts.strict === false ? LIGHT.reply : validators.reply,
    "reply",
  );
  if (opts.strict === false && typeof reply.time !== "number") {
    throw new ProtocolError("schema", "reply has no numeric time");
  }
  return { reply, message: mustB64(reply.message, "reply message") };
}

/** Go's int64 range; a JSON number outside it or with a fraction fails json.Unmarshal. */
const INT64_MIN = -(2 ** 63);
const INT64_MAX = 2 ** 63;

function laxString(doc: Record<string, unknown>, field: string): string {
  const v = doc[field];
  if (v === undefined || v === null) return "";
  if (typeof v !== "string") throw new ProtocolError("schema", `reply field ${field} is not a string`);
  return v;
}

function decodeReplyLax(bytes: Uint8Array): { reply: Reply; message: Buffer } {
  // The size, depth and JSON checks stay; the protocol and field checks are Go's.
  const doc = parseLayer<Record<string, unknown>>(bytes, PROTOCOL_V2.reply, null, "reply");
  const p = doc.protocol;
  // go-choria starts from a v2 reply and its UnmarshalJSON maps null to "unknown".
  const protocol = p === undefined ? PROTOCOL_V2.reply : p === null ? PROTOCOL_UNKNOWN : p;
  if (typeof protocol !== "string") throw new ProtocolError("schema", "reply protocol is not a string");
  const t = doc.time ?? 0;
  if (typeof t !== "number" || !Number.isInteger(t) || t < INT64_MIN || t >= INT64_MAX) {
    throw new ProtocolError("schema", "reply time is not a 64-bit integer");
  }
  const reply: Reply = {
    protocol,
    message: laxString(doc, "message"),
    request: laxString(doc, "request"),
    sender: laxString(doc, "sender"),
    agent: laxString(doc, "agent"),
    time: t,
  };
  return { reply, message: mustB64(reply.message, "reply message") };
}
