import { createHash } from "node:crypto";
import {
  MAX_JSON_DEPTH,
  MAX_MESSAGE_BYTES,
  ProtocolError,
  isCallerReplySubject,
  isFederationReplySubject,
  jsonDepthExceeds,
  replySubject,
  decodeAnyTransport,
  decodeRequest,
  decodeRequestV1,
  decodeSecureRequest,
  decodeSecureRequestV1,
  type Request,
  type RpcRequestBody,
  type SecureRequest,
  type Transport,
} from "../core/protocol/index.js";
import {
  SecurityError,
  delegatedCallerId,
  tokenExpiry,
  verifyToken,
  type CallerVerdict,
  type ChoriaSecurity,
  type ClientClaims,
  type FileSecurity,
} from "../core/security/index.js";
import { REJECT_REASONS, type RejectReason } from "./stats.js";

/** A request whose bytes parsed and whose caller and signature verified. */
export interface DecodedRequest {
  ok: true;
  /** the protocol on the wire; a node answers in the same one */
  version: 1 | 2;
  /** v1: how the caller's certificate was judged (callerClaims are derived from it) */
  x509?: CallerVerdict;
  transport: Transport;
  secure: SecureRequest;
  request: Request;
  /** The payload after Choria's base64 steps ("ping" for discovery, JSON for RPC). */
  message: Buffer;
  /** The mcorpc body when the payload is a JSON object; frozen, shared by every node. */
  body?: RpcRequestBody;
  /** Why the payload is not a usable mcorpc body (raw agents do not care). */
  bodyError?: string;
  callerClaims: ClientClaims;
  /** Claims of the delegated signer, when one signed on the caller's behalf. */
  signerClaims?: ClientClaims;
  /** Where replies go: the transport's reply header, or the caller's inbox when it has none. */
  replyTo: string;
  /**
   * Set when the reply header is not under the caller's private inbox: nodes refuse
   * such a request rather than answer a third party or publish into a protected subject.
   */
  replyError?: string;
}

export interface DecodeRejection {
  ok: false;
  reason: RejectReason;
  detail: string;
}

export type DecodeResult = DecodedRequest | DecodeRejection;

/** The parts of ChoriaSecurity the decoder uses (tests and emulators may supply their own). */
export type DecoderSecurity = Pick<
  ChoriaSecurity,
  "verifyClientToken" | "verifySignerToken" | "verifySignature" | "issuers"
>;

export interface RequestDecoderOptions {
  /** protocol v2 (ed25519 + JWT); without it v2 requests are refused as wrong_protocol */
  security?: DecoderSecurity | undefined;
  /** protocol v1 (x509); without it v1 requests are refused as wrong_protocol */
  x509?: FileSecurity | undefined;
  /** Messages above this many bytes are refused before hashing or parsing. */
  maxBytes?: number;
  /** Distinct messages whose outcome is remembered (default 10 000). */
  cacheSize?: number;
  /** Bytes of messages whose outcome is remembered, estimated (default 32 MiB). */
  cacheBytes?: number;
  /** How long an outcome is remembered, ms (default 60 000; never past the caller token's expiry). */
  cacheTtlMs?: number;
  /**
   * Agents a caller holding only signed_fleet_management may call without a signer:
   * the AAA service's own aaa_signer, which users must reach to get requests signed.
   */
  signedOnlyAgents?: readonly string[];
}

export interface DecoderStats {
  /** decode() calls */
  messages: number;
  /** answered from the cache */
  cacheHits: number;
  /** full decodes (parse + token + signature checks) */
  verifications: number;
  /** outcomes remembered now, and their estimated bytes */
  cacheEntries: number;
  cacheBytes: number;
  rejected: Record<RejectReason, number>;
}

interface CacheEntry {
  result: DecodeResult;
  expiresAt: number;
  bytes: number;
}

/** Freezes a parsed document; iterative, though depth is already bounded by MAX_JSON_DEPTH. */
function deepFreeze<T>(o: T): T {
  const stack: unknown[] = [o];
  while (stack.length > 0) {
    const v = stack.pop();
    if (v !== null && typeof v === "object" && !Object.isFrozen(v)) {
      Object.freeze(v);
      for (const c of Object.values(v)) stack.push(c);
    }
  }
  return o;
}

// What a remembered outcome costs besides the message bytes it holds.
const ENTRY_OVERHEAD = 512;

function securityReason(err: SecurityError, v1 = false): RejectReason {
  switch (err.code) {
    case "expired":
    case "not_yet_valid":
      return v1 ? "expired_certificate" : "expired_token";
    case "caller_mismatch":
      return "caller_mismatch";
    case "bad_signature":
      // v1: the request's own signature; v2: a token's, which is an untrusted caller
      return v1 ? "bad_signature" : "untrusted_caller";
    case "not_allowed":
      return "not_allow_listed";
    case "no_fleet_management":
    case "requires_signer":
      return "no_fleet_management";
    default:
      return v1 ? "untrusted_certificate" : "untrusted_caller";
  }
}

function reject(reason: RejectReason, detail: string): DecodeRejection {
  return { ok: false, reason, detail };
}

/**
 * Turns raw NATS message bytes into a verified request, once per process: the
 * outcome (good or bad) is cached by the bytes' sha256, so a direct request sent
 * to 50 000 virtual nodes, or one broadcast seen on ten connections, costs one
 * parse and one signature check. Results are shared and must not be mutated.
 */
export class RequestDecoder {
  readonly maxBytes: number;
  readonly cacheSize: number;
  readonly cacheTtlMs: number;
  readonly cacheBytes: number;
  private readonly security: DecoderSecurity | undefined;
  private readonly x509: FileSecurity | undefined;
  private readonly signedOnlyAgents: ReadonlySet<string>;
  private readonly cache = new Map<string, CacheEntry>();
  private readonly keys = new WeakMap<DecodeResult, string>();
  private cachedBytes = 0;
  private readonly counters: Omit<DecoderStats, "cacheEntries" | "cacheBytes">;

  constructor(opts: RequestDecoderOptions) {
    if (!opts.security && !opts.x509)
      throw new TypeError("RequestDecoder needs a v2 security provider, an x509 one, or both");
    this.security = opts.security;
    this.x509 = opts.x509;
    this.signedOnlyAgents = new Set(opts.signedOnlyAgents ?? []);
    this.maxBytes = opts.maxBytes ?? MAX_MESSAGE_BYTES;
    this.cacheSize = Math.max(1, opts.cacheSize ?? 10_000);
    this.cacheTtlMs = opts.cacheTtlMs ?? 60_000;
    this.cacheBytes = Math.max(1024 * 1024, opts.cacheBytes ?? 32 * 1024 * 1024);
    this.counters = {
      messages: 0,
      cacheHits: 0,
      verifications: 0,
      rejected: Object.fromEntries(REJECT_REASONS.map((r) => [r, 0])) as Record<RejectReason, number>,
    };
  }

  get stats(): DecoderStats {
    return {
      ...this.counters,
      cacheEntries: this.cache.size,
      cacheBytes: this.cachedBytes,
      rejected: { ...this.counters.rejected },
    };
  }

  /** Forgets every cached outcome (e.g. after the trusted issuers change). */
  clear(): void {
    this.cache.clear();
    this.cachedBytes = 0;
  }

  /**
   * Forgets one outcome: callers do this when no node of theirs wanted the request,
   * so bodies nobody matched are not held (a flood of big unmatched broadcasts would
   * otherwise sit in memory until they expire).
   */
  forget(result: DecodeResult): void {
    // rejections hold no body and keep a flood of the same bad bytes cheap: kept
    if (!result.ok) return;
    const key = this.keys.get(result);
    if (key === undefined) return;
    const e = this.cache.get(key);
    if (e?.result === result) this.evict(key, e);
  }

  private evict(key: string, e: CacheEntry): void {
    this.cache.delete(key);
    this.cachedBytes -= e.bytes;
  }

  decode(bytes: Uint8Array): DecodeResult {
    this.counters.messages++;
    // Checked before hashing so a flood of huge messages costs nothing.
    if (bytes.byteLength > this.maxBytes) {
      return this.count(
        reject("too_large", `message of ${bytes.byteLength} bytes exceeds the ${this.maxBytes} byte limit`),
      );
    }
    const key = createHash("sha256").update(bytes).digest("base64");
    const now = Date.now();
    const hit = this.cache.get(key);
    if (hit) {
      this.evict(key, hit);
      if (hit.expiresAt > now) {
        this.cache.set(key, hit); // most recently used goes last
        this.cachedBytes += hit.bytes;
        this.counters.cacheHits++;
        return this.count(hit.result);
      }
    }
    this.counters.verifications++;
    const result = this.verify(bytes);
    let expiresAt = now + this.cacheTtlMs;
    if (result.ok) {
      const exp = tokenExpiry(result.callerClaims);
      if (exp !== undefined) expiresAt = Math.min(expiresAt, exp * 1000);
    }
    // Rejections keep no message bytes; a good result holds every layer (measured ~3.5x the bytes).
    const size = ENTRY_OVERHEAD + (result.ok ? bytes.byteLength * 4 : 0);
    if (size <= this.cacheBytes / 4) {
      while (
        this.cache.size > 0 &&
        (this.cache.size >= this.cacheSize || this.cachedBytes + size > this.cacheBytes)
      ) {
        const oldest = this.cache.entries().next().value as [string, CacheEntry];
        this.evict(oldest[0], oldest[1]);
      }
      this.cache.set(key, { result, expiresAt, bytes: size });
      this.cachedBytes += size;
      this.keys.set(result, key);
    }
    return this.count(result);
  }

  private count(r: DecodeResult): DecodeResult {
    if (!r.ok) this.counters.rejected[r.reason]++;
    return r;
  }

  private verify(bytes: Uint8Array): DecodeResult {
    let transport: Transport;
    let secure: SecureRequest;
    let requestBytes: Buffer;
    let signature: Buffer;
    let inner: Buffer;
    const security = this.security;
    try {
      const t = decodeAnyTransport(bytes);
      transport = t.transport;
      inner = t.inner;
      if (t.version === 1) return this.verifyV1(transport, inner);
      if (!security)
        return reject("wrong_protocol", "a protocol v2 request reached a node that speaks only v1 (x509)");
      const s = decodeSecureRequest(inner);
      secure = s.secure;
      requestBytes = s.requestBytes;
      signature = s.signature;
    } catch (err) {
      return this.protocolRejection(err);
    }

    let callerClaims: ClientClaims;
    let signerClaims: ClientClaims | undefined;
    let signingKey: string;
    let signedOnly = false;
    try {
      if (secure.signer) {
        // Delegation: the signer vouches for the caller and its key signs the request;
        // the caller may then hold signed_fleet_management instead of fleet_management.
        signerClaims = security.verifySignerToken(secure.signer);
        callerClaims = this.delegatedCaller(secure.caller);
        signingKey = signerClaims.public_key;
      } else {
        try {
          callerClaims = security.verifyClientToken(secure.caller);
        } catch (err) {
          if (!(
            err instanceof SecurityError &&
            err.code === "requires_signer" &&
            this.signedOnlyAgents.size > 0
          ))
            throw err;
          // checked against the request's agent once it is decoded, below
          callerClaims = this.delegatedCaller(secure.caller);
          signedOnly = true;
        }
        signingKey = callerClaims.public_key;
      }
    } catch (err) {
      if (err instanceof SecurityError) return reject(securityReason(err), err.message);
      return reject("untrusted_caller", `caller token rejected: ${(err as Error).message}`);
    }
    if (!security.verifySignature(signingKey, requestBytes, signature)) {
      return reject("bad_signature", `request signature does not verify for ${callerClaims.callerid}`);
    }

    let request: Request;
    let message: Buffer;
    try {
      ({ request, message } = decodeRequest(requestBytes));
    } catch (err) {
      return this.protocolRejection(err);
    }
    // before JSON.parse and everything recursive after it (freezing, validation, handlers)
    if (jsonDepthExceeds(message, MAX_JSON_DEPTH)) {
      return reject(
        "too_deep",
        `request body from ${request.caller} is nested deeper than ${MAX_JSON_DEPTH} levels`,
      );
    }
    if (signedOnly && !this.signedOnlyAgents.has(request.agent)) {
      return reject(
        "no_fleet_management",
        `caller ${callerClaims.callerid} may only make requests signed by a delegator`,
      );
    }
    // A delegated signer writes the caller id in its subject-safe form (Choria's AAA does).
    const callerOk =
      request.caller === callerClaims.callerid ||
      (signerClaims !== undefined && request.caller === delegatedCallerId(callerClaims.callerid));
    if (!callerOk) {
      return reject(
        "caller_mismatch",
        `request caller ${request.caller} does not match token callerid ${callerClaims.callerid}`,
      );
    }

    const out: DecodedRequest = {
      ok: true,
      version: 2,
      transport,
      secure,
      request,
      message,
      callerClaims,
      replyTo: replySubject(request.collective, request.caller, request.id),
    };
    if (signerClaims) out.signerClaims = signerClaims;
    return settle(out);
  }

  /**
   * go-choria's v1 checks: the caller's certificate (pubcert) chains to our CA and may act
   * as the request's caller id (file provider rules), then its RSA signature over the
   * request JSON holds. The caller gets client claims with fleet access, as an x509
   * caller has: what it may do is up to the action policy, as in Choria.
   */
  private verifyV1(transport: Transport, inner: Buffer): DecodeResult {
    const x509 = this.x509;
    if (!x509)
      return reject("wrong_protocol", "a protocol v1 (x509) request reached a node that speaks only v2");
    let secure: ReturnType<typeof decodeSecureRequestV1>;
    let dec: ReturnType<typeof decodeRequestV1>;
    try {
      secure = decodeSecureRequestV1(inner);
      dec = decodeRequestV1(secure.requestBytes);
    } catch (err) {
      return this.protocolRejection(err);
    }
    const { request, message } = dec;
    let verdict: CallerVerdict;
    try {
      // the caller's certificate, then its signature over the request (one certificate lookup)
      verdict = x509.verifyCaller(request.caller, secure.secure.pubcert, Date.now(), {
        data: secure.requestBytes,
        signature: secure.signature,
      });
    } catch (err) {
      if (err instanceof SecurityError) return reject(securityReason(err, true), err.message);
      return reject("untrusted_certificate", `caller certificate rejected: ${(err as Error).message}`);
    }
    if (jsonDepthExceeds(message, MAX_JSON_DEPTH))
      return reject(
        "too_deep",
        `request body from ${request.caller} is nested deeper than ${MAX_JSON_DEPTH} levels`,
      );
    const callerClaims: ClientClaims = {
      callerid: request.caller,
      purpose: "choria_client_id",
      public_key: "",
      permissions: { fleet_management: true },
      exp: Math.floor(verdict.notAfter / 1000),
    } as ClientClaims;
    const out: DecodedRequest = {
      ok: true,
      version: 1,
      x509: verdict,
      transport,
      secure: {
        protocol: secure.secure.protocol,
        request: secure.requestBytes.toString("base64"),
        signature: secure.signature.toString("base64"),
        caller: secure.secure.pubcert,
      },
      request,
      message,
      callerClaims,
      replyTo: replySubject(request.collective, request.caller, request.id),
    };
    return settle(out);
  }

  private delegatedCaller(jwt: string): ClientClaims {
    const c = verifyToken(jwt, [...(this.security as DecoderSecurity).issuers]) as ClientClaims;
    if (c.purpose !== "choria_client_id")
      throw new SecurityError("wrong_purpose", `caller token purpose is ${c.purpose}`);
    if (!c.permissions?.fleet_management && !c.permissions?.signed_fleet_management)
      throw new SecurityError("no_fleet_management", `caller ${c.callerid} has no fleet management access`);
    return c;
  }

  private protocolRejection(err: unknown): DecodeRejection {
    if (err instanceof ProtocolError) return reject(err.code, err.message);
    return reject("malformed", (err as Error).message);
  }
}

/** The last steps of both versions: where replies may go, the body parsed, everything frozen. */
function settle(out: DecodedRequest): DecodedRequest {
  checkReply(out);
  const parsed = parseBody(out.message);
  if (typeof parsed === "string") out.bodyError = parsed;
  else out.body = deepFreeze(parsed);
  deepFreeze(out.request);
  deepFreeze(out.transport);
  return out;
}

/**
 * Decides where the reply may go. The reply header is not signed, so anyone who saw a
 * request could re-wrap it; only the caller's own inbox (or a federation broker's
 * collector, carrying a saved reply that is itself the caller's inbox) is accepted.
 */
function checkReply(d: DecodedRequest): void {
  const h = d.transport.headers;
  const caller = d.request.caller;
  if (!h.reply) return;
  // A delegated request's client listens on the inbox of its token's callerid, which
  // the signer may have rewritten in the request.
  const ownInbox = (subject: string) =>
    isCallerReplySubject(subject, caller) ||
    (d.signerClaims !== undefined && isCallerReplySubject(subject, d.callerClaims.callerid));
  if (ownInbox(h.reply)) {
    d.replyTo = h.reply;
    return;
  }
  const saved = h.federation?.reply;
  if (isFederationReplySubject(h.reply) && saved !== undefined && ownInbox(saved)) {
    d.replyTo = h.reply;
    return;
  }
  d.replyError = `reply subject ${JSON.stringify(h.reply.slice(0, 200))} is not under the inbox of caller ${caller}`;
}

/** Parses an mcorpc body; returns a reason string when the payload is not one. */
function parseBody(message: Buffer): RpcRequestBody | string {
  let doc: unknown;
  try {
    doc = JSON.parse(message.toString("utf8"));
  } catch {
    return "request body is not JSON";
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc))
    return "request body is not a JSON object";
  const b = doc as Partial<RpcRequestBody>;
  if (typeof b.action !== "string" || b.action === "") return "request body has no action";
  if (b.data === undefined || b.data === null) b.data = {};
  if (typeof b.data !== "object" || Array.isArray(b.data)) return "request body data is not an object";
  return b as RpcRequestBody;
}
