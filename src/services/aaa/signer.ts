import {
  PROTOCOL_V1,
  ProtocolError,
  decodeRequest,
  decodeRequestV1,
  encodeRequest,
  encodeRequestV1,
  encodeSecureRequest,
  encodeSecureRequestV1,
  protocolVersion,
  type Request,
} from "../../core/protocol/index.js";
import {
  SecurityError,
  delegatedCallerId,
  decodeTokenUnverified,
  publicHexFromSeed,
  sign,
  verify,
  verifyToken,
  VerifiedTokenCache,
  type ClientClaims,
  type FileSecurity,
} from "../../core/security/index.js";
import type { AuthzDecision, AuthzInput } from "../../server/index.js";
import type { AuditRecord, Auditor } from "./auditors.js";

/**
 * What the signer hands its authorizer (the server tier's AuthzInput): every field comes
 * from the verified token and the request itself; Choria's signer passes only the
 * request and claims, so its policies could not see sender, collective, ttl or filter.
 */
export type SignerAuthzInput = AuthzInput;
export type SignerAuthzDecision = AuthzDecision;

/** The server tier's ClaimsAuthorizer (actionListAuthorizer, cedarAuthorizer), or an async one. */
export interface SignerAuthorizer {
  readonly name: string;
  authorize(input: SignerAuthzInput): SignerAuthzDecision | Promise<SignerAuthzDecision>;
}

export interface SignerMetricsHooks {
  allowed?(agentAction: string): void;
  denied?(agentAction: string): void;
  invalidToken?(): void;
  error?(): void;
  /** the authorizer failed, or its policy could not be evaluated (choria_aaa_authorizer_errors) */
  authorizerError?(): void;
}

/** Denials that mean the policy could not be evaluated, not that it said no (cedarAuthorizer's words). */
const POLICY_FAILURE = /^cedar (policy does not parse|evaluation failed)|\(policy errors: /;

export type SignerLog = (
  level: "info" | "warn" | "error" | "debug",
  msg: string,
  fields?: Record<string, unknown>,
) => void;

export interface SignerOptions {
  site: string;
  /** org issuer public keys (hex ed25519) that user JWTs must chain to */
  issuers: string[];
  /** the delegator identity: its client JWT (with authentication_delegator) and ed25519 seed (hex) */
  signerToken: string;
  signerSeedHex: string;
  maxValiditySeconds: number;
  allowBearerTokens?: boolean;
  authorizer: SignerAuthorizer;
  auditors: Auditor[];
  /** ms, for tests */
  now?: () => number;
  metrics?: SignerMetricsHooks;
  log?: SignerLog;
  /**
   * A privileged x509 certificate (go-choria's privileged_users): with it, protocol v1
   * requests are signed too, with RSA, so x509 fleets can have AAA as v2 fleets do.
   */
  x509?: FileSecurity | undefined;
}

export type SignOutcome =
  | { ok: true; secureRequest: Buffer; callerid: string }
  | {
      ok: false;
      status: 400 | 401 | 403 | 500;
      /** generic, safe to show the caller: "Request denied" or "invalid request" */
      error: string;
      /** detail for logs */
      reason: string;
    };

export interface SignInput {
  token: string;
  /** hex ed25519 signature over `request` by the token's key; "" for bearer tokens */
  signature: string;
  /** the raw request JSON the client signed */
  request: Buffer;
}

/** The callerid written into audit records when the token or signature did not verify. */
export const UNVERIFIED_CALLER = "unverified";

const DENIED = "Request denied";
const INVALID = "invalid request";
const HEX_SIG = /^[0-9a-fA-F]{128}$/;

/** The request as the audit record shows it: parsed JSON when it parses, else the raw text. */
function auditView(bytes: Buffer): unknown {
  try {
    return JSON.parse(bytes.toString("utf8")) as unknown;
  } catch {
    return bytes.toString("utf8");
  }
}

function rpcBody(message: Buffer): { action: string; data: Record<string, unknown> } {
  try {
    const b = JSON.parse(message.toString("utf8")) as unknown;
    if (typeof b === "object" && b !== null && !Array.isArray(b)) {
      const o = b as Record<string, unknown>;
      const data = o.data;
      return {
        action: typeof o.action === "string" ? o.action : "",
        data:
          typeof data === "object" && data !== null && !Array.isArray(data)
            ? (data as Record<string, unknown>)
            : {},
      };
    }
  } catch {
    // discovery bodies ("ping") and raw agents are not JSON
  }
  return { action: "", data: {} };
}

/**
 * The basicjwt signer: verifies a user's JWT and request signature, authorizes the
 * request, records it with every auditor, and only then signs it as the delegator.
 */
export class RequestSigner {
  private readonly o: SignerOptions;
  private readonly now: () => number;
  private readonly log: SignerLog;
  private readonly tokens = new VerifiedTokenCache<ClientClaims>();

  constructor(o: SignerOptions) {
    if (!(o.maxValiditySeconds > 0)) throw new Error("maxValiditySeconds must be a positive number");
    if (o.issuers.length === 0) throw new Error("at least one issuer public key is required");
    // A delegator token for another key would make every signed request fail on the nodes.
    const claims = decodeTokenUnverified(o.signerToken);
    const pub = publicHexFromSeed(o.signerSeedHex);
    if (claims.public_key !== pub) {
      throw new Error(`signer token is for public key ${String(claims.public_key)}, seed is for ${pub}`);
    }
    const perms = (claims as Partial<ClientClaims>).permissions;
    if (claims.purpose !== "choria_client_id" || !perms?.authentication_delegator) {
      throw new Error("signer token must be a client token with authentication_delegator permission");
    }
    this.o = o;
    this.now = o.now ?? Date.now;
    this.log = o.log ?? (() => {});
  }

  async sign(req: SignInput): Promise<SignOutcome> {
    const o = this.o;
    const nowS = Math.floor(this.now() / 1000);

    // 1. the request: nothing to audit when it is not a request at all
    let request: Request;
    let message: Buffer;
    const v1 = protocolVersion(req.request) === PROTOCOL_V1.request;
    try {
      if (v1 && !o.x509)
        throw new ProtocolError(
          "protocol",
          "v1 requests (choria:request:1) need the signer's privileged x509 certificate (plugin.security.file.* in its choria_config)",
        );
      ({ request, message } = v1 ? decodeRequestV1(req.request) : decodeRequest(req.request));
    } catch (err) {
      o.metrics?.error?.();
      const reason = `invalid request: ${err instanceof ProtocolError ? err.message : String(err)}`;
      return { ok: false, status: 400, error: INVALID, reason };
    }
    const body = rpcBody(message);
    const agentAction = body.action ? `${request.agent}.${body.action}` : request.agent;
    // v1 is audited in the v2 field names (id, sender, caller, agent...) so readers see one shape
    const view = v1 ? { ...request } : auditView(req.request);

    // 2. the token
    let claims: ClientClaims;
    try {
      claims = this.verifyClaims(req.token, nowS);
    } catch (err) {
      o.metrics?.invalidToken?.();
      const reason = `invalid token: ${(err as Error).message}`;
      return this.refuse(401, reason, agentAction, this.unverified(req.token, request, view, nowS, reason));
    }

    // 3. the request signature by the token's key
    const sigProblem = this.checkSignature(req, claims);
    if (sigProblem) {
      const reason = `invalid signature: ${sigProblem}`;
      return this.refuse(401, reason, agentAction, this.unverified(req.token, request, view, nowS, reason));
    }

    // 4. the caller the nodes will see
    const callerid = delegatedCallerId(claims.callerid);
    let requestBytes: Buffer;
    try {
      const { protocol: _p, ...rest } = request;
      requestBytes = v1
        ? encodeRequestV1({
            message,
            requestid: request.id,
            senderid: request.sender,
            callerid,
            collective: request.collective,
            agent: request.agent,
            ttl: request.ttl,
            time: Math.floor(request.time / 1e9),
            ...(request.filter && { filter: request.filter }),
          })
        : encodeRequest({ ...rest, caller: callerid });
    } catch (err) {
      o.metrics?.error?.();
      return { ok: false, status: 400, error: INVALID, reason: `cannot re-encode request: ${String(err)}` };
    }
    const signedView = v1 ? { ...request, caller: callerid } : auditView(requestBytes);

    // 5. authorization; discovery is always allowed, as both of Choria's authorizers do
    let decision: SignerAuthzDecision;
    if (request.agent === "discovery") {
      decision = { allowed: true, reason: "discovery requests are always allowed" };
    } else {
      try {
        decision = await o.authorizer.authorize({
          agent: request.agent,
          action: body.action,
          data: body.data,
          callerid,
          sender: request.sender,
          collective: request.collective,
          ttl: request.ttl,
          // requests carry unix nanoseconds; policies see seconds, as on nodes (AaasvcAuthorizer)
          time: Math.floor(request.time / 1e9),
          site: o.site,
          claims,
          filter: request.filter,
        });
      } catch (err) {
        decision = { allowed: false, reason: `authorizer ${o.authorizer.name} failed: ${String(err)}` };
        o.metrics?.authorizerError?.();
      }
      if (!decision.allowed && POLICY_FAILURE.test(decision.reason)) o.metrics?.authorizerError?.();
    }

    // 6. audit before answering: a request nobody recorded is never signed
    const record: AuditRecord = {
      protocol: "io.choria.signer.v1.signature_audit",
      callerid,
      action: decision.allowed ? "allow" : "deny",
      site: o.site,
      time: nowS,
      request: signedView,
      reason: decision.reason,
    };
    if (!decision.allowed) {
      return this.refuse(403, `denied by ${o.authorizer.name}: ${decision.reason}`, agentAction, record);
    }
    const auditErr = await this.audit(record);
    if (auditErr) {
      o.metrics?.error?.();
      this.log("error", "not signing an unaudited request", { id: request.id, callerid, error: auditErr });
      return { ok: false, status: 500, error: DENIED, reason: `audit failed: ${auditErr}` };
    }

    // 7. sign as the delegator; the caller's own JWT names who asked
    let secureRequest: Buffer;
    try {
      // v1: the privileged certificate signs as the caller (nodes accept it for any caller id)
      secureRequest =
        v1 && o.x509
          ? encodeSecureRequestV1(requestBytes, o.x509.sign(requestBytes), o.x509.certPem)
          : encodeSecureRequest(
              requestBytes,
              sign(o.signerSeedHex, requestBytes),
              req.token.trim(),
              o.signerToken,
            );
    } catch (err) {
      o.metrics?.error?.();
      return { ok: false, status: 500, error: DENIED, reason: `cannot build secure request: ${String(err)}` };
    }
    o.metrics?.allowed?.(agentAction);
    this.log("info", "allowing request", {
      id: request.id,
      callerid,
      sender: request.sender,
      agent: agentAction,
    });
    return { ok: true, secureRequest, callerid };
  }

  private verifyClaims(token: string, nowS: number): ClientClaims {
    // a chain-issued token costs two signature checks: do them once per token
    const claims = this.tokens.get(
      token,
      () => {
        const c = verifyToken(token, this.o.issuers, nowS);
        if (c.purpose !== "choria_client_id") {
          throw new SecurityError("wrong_purpose", `token purpose is ${c.purpose}, need choria_client_id`);
        }
        return c as ClientClaims;
      },
      nowS,
    );
    // Choria's `service` permission (ExtendedServiceLifetime) lifts the validity cap entirely.
    if (claims.permissions?.service) return claims;
    if (typeof claims.exp !== "number") throw new SecurityError("malformed", "token has no expiry");
    if (claims.exp - nowS > this.o.maxValiditySeconds) {
      throw new SecurityError(
        "malformed",
        `token expires in ${claims.exp - nowS}s, more than the allowed ${this.o.maxValiditySeconds}s`,
      );
    }
    return claims;
  }

  /** undefined when the signature is good (or absent with bearer tokens allowed), else why not. */
  private checkSignature(req: SignInput, claims: ClientClaims): string | undefined {
    const sig = req.signature ?? "";
    if (sig === "") return this.o.allowBearerTokens ? undefined : "no signature";
    if (!HEX_SIG.test(sig)) return "signature is not 64 bytes of hex";
    return verify(claims.public_key, req.request, Buffer.from(sig, "hex"))
      ? undefined
      : "signature does not verify with the token's public key";
  }

  private unverified(
    token: string,
    request: Request,
    view: unknown,
    nowS: number,
    reason: string,
  ): AuditRecord {
    let claimed = request.caller;
    try {
      const c = decodeTokenUnverified(token);
      if (typeof c.callerid === "string" && c.callerid !== "") claimed = c.callerid;
    } catch {
      // not even a JWT: the request's caller is all there is
    }
    return {
      protocol: "io.choria.signer.v1.signature_audit",
      callerid: UNVERIFIED_CALLER,
      claimed_callerid: claimed,
      action: "deny",
      site: this.o.site,
      time: nowS,
      request: view,
      reason,
    };
  }

  /** Audits a refusal and builds the answer; a failed audit of a refusal is logged, the refusal stands. */
  private async refuse(
    status: 401 | 403,
    reason: string,
    agentAction: string,
    record: AuditRecord,
  ): Promise<SignOutcome> {
    this.o.metrics?.denied?.(agentAction);
    this.log("warn", "denying request", { callerid: record.callerid, agent: agentAction, reason });
    const err = await this.audit(record);
    if (err) {
      this.o.metrics?.error?.();
      this.log("error", "could not audit a denied request", { error: err });
    }
    return { ok: false, status, error: DENIED, reason };
  }

  /** Runs every auditor; the first failure's message, or undefined when all recorded it. */
  private async audit(record: AuditRecord): Promise<string | undefined> {
    const results = await Promise.allSettled(this.o.auditors.map((a) => a.audit(record)));
    const failures: string[] = [];
    results.forEach((r, i) => {
      if (r.status === "rejected") failures.push(`${this.o.auditors[i]!.name}: ${String(r.reason)}`);
    });
    return failures.length > 0 ? failures.join("; ") : undefined;
  }
}
