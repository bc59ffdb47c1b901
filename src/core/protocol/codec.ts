import { hash } from "node:crypto";
import type { ValidateFunction } from "ajv";
import { MAX_MESSAGE_BYTES, PROTOCOL_V2 } from "./constants.js";
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

function b64(u8: Uint8Array): string {
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
// encoders: field order and omitempty rules follow go-choria's v2 structs

function filterJson(f: Filter): string {
  let facts = "[";
  const ff = f.fact ?? [];
  for (let i = 0; i < ff.length; i++) {
    const x = ff[i]!;
    if (i > 0) facts += ",";
    facts += `{"fact":${goString(x.fact)},"operator":${goString(x.operator)},"value":${goString(x.value)}}`;
  }
  facts += "]";
  let compound = "[";
  const cc = f.compound ?? [];
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
  let s =
    `{"protocol":"${PROTOCOL_V2.request}","message":${goString(r.message)},"id":${goString(r.id)}` +
    `,"sender":${goString(r.sender)},"caller":${goString(r.caller)},"collective":${goString(r.collective)}` +
    `,"agent":${goString(r.agent)},"ttl":${goInt(r.ttl, "ttl")},"time":${goInt(r.time, "time")}`;
  if (r.filter) s += `,"filter":${filterJson(r.filter)}`;
  return Buffer.from(s + "}", "utf8");
}

/** Secure request JSON: {protocol,request,signature,caller,signer?}; byte fields are base64. */
export function encodeSecureRequest(
  requestBytes: Uint8Array,
  signature: Uint8Array,
  callerJwt: string,
  signerJwt?: string,
): Buffer {
  let s =
    `{"protocol":"${PROTOCOL_V2.secureRequest}","request":"${b64(requestBytes)}"` +
    `,"signature":"${b64(signature)}","caller":${goString(callerJwt)}`;
  if (signerJwt) s += `,"signer":${goString(signerJwt)}`;
  return Buffer.from(s + "}", "utf8");
}

/** Reply JSON: {protocol,message,request,sender,agent,time}. */
export function encodeReply(r: Omit<Reply, "protocol">): Buffer {
  const s =
    `{"protocol":"${PROTOCOL_V2.reply}","message":${goString(r.message)},"request":${goString(r.request)}` +
    `,"sender":${goString(r.sender)},"agent":${goString(r.agent)},"time":${goInt(r.time, "time")}}`;
  return Buffer.from(s, "utf8");
}

/** Secure reply JSON: {protocol,reply,hash,signature?,sender?}; hash is base64(sha256(reply bytes)). */
export function encodeSecureReply(
  replyBytes: Uint8Array,
  signature?: Uint8Array,
  senderJwt?: string,
): Buffer {
  const digest = hash("sha256", replyBytes, "base64");
  let s = `{"protocol":"${PROTOCOL_V2.secureReply}","reply":"${b64(replyBytes)}","hash":"${digest}"`;
  // Go's omitempty drops a nil or zero-length []byte and an empty string.
  if (signature && signature.length > 0) s += `,"signature":"${b64(signature)}"`;
  if (senderJwt) s += `,"sender":${goString(senderJwt)}`;
  return Buffer.from(s + "}", "utf8");
}

function headersJson(h: TransportHeaders): string {
  const parts: string[] = [];
  if (h.reply) parts.push(`"reply":${goString(h.reply)}`);
  if (h.sender) parts.push(`"sender":${goString(h.sender)}`);
  if (h.trace && h.trace.length > 0) {
    parts.push(`"trace":[${h.trace.map((t) => goStringArray(t)).join(",")}]`);
  }
  if (h.federation) {
    // A non-nil pointer is always written, even when every field inside is empty.
    const f = h.federation;
    const fp: string[] = [];
    if (f.request) fp.push(`"request":${goString(f.request)}`);
    if (f.reply) fp.push(`"reply":${goString(f.reply)}`);
    if (f.targets && f.targets.length > 0) fp.push(`"targets":${goStringArray(f.targets)}`);
    parts.push(`"federation":{${fp.join(",")}}`);
  }
  return `{${parts.join(",")}}`;
}

/** Transport JSON: {protocol,data,headers}; data is base64 of the secure layer. */
export function encodeTransport(inner: Uint8Array, headers: TransportHeaders): Buffer {
  const s = `{"protocol":"${PROTOCOL_V2.transport}","data":"${b64(inner)}","headers":${headersJson(headers ?? {})}}`;
  return Buffer.from(s, "utf8");
}

// ---------------------------------------------------------------------------
// decoders

/**
 * Reply-side decode options. go-choria validates reply layers against their schemas
 * only in strict mode (off by default); `strict: false` swaps the schema for a check
 * of just the fields the client reads, which is most of a reply's decode cost.
 */
export interface DecodeOptions {
  strict?: boolean;
}

/** Without a schema: the named fields must be strings (the rest is not read). */
function requireStrings(doc: Record<string, unknown>, fields: readonly string[], what: string): void {
  for (const f of fields) {
    if (typeof doc[f] !== "string") throw new ProtocolError("schema", `${what} has no string field ${f}`);
  }
}

function parseLayer<T>(
  bytes: Uint8Array,
  protocol: string,
  validate: ValidateFunction | readonly string[],
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

function mustB64(s: string, what: string): Buffer {
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
  const check = opts.strict === false ? LIGHT.transport : validators.transport;
  const transport = parseLayer<Transport>(bytes, PROTOCOL_V2.transport, check, "transport");
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
  // Cheap pre-check first: JSON bodies (the common case) start with '{' and are never base64.
  const first = body[0];
  const maybe = body.length % 4 === 0 && first !== undefined && isB64Char(first);
  const inner = maybe ? decodeBase64Strict(body.toString("latin1")) : undefined;
  return { request, message: inner ?? body };
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
