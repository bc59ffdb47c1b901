import { fastify, type FastifyError, type FastifyInstance, type FastifyReply } from "fastify";
import type { Logger as PinoLogger } from "pino";
import type { AaaMetrics } from "./metrics.js";
import type { RequestSigner } from "./signer.js";
import type { LoginRequest, UserlistAuthenticator } from "./userlist.js";

export const LOGIN_PATH = "/choria/v1/login";
export const SIGN_PATH = "/choria/v1/sign";
/** Largest body accepted: a signed RPC request (DDL limit 100 240 bytes) in base64 plus a token fits. */
export const MAX_BODY_BYTES = 128 * 1024;

export interface AaaHttpOptions {
  site: string;
  metrics: AaaMetrics;
  log: PinoLogger;
  signer: RequestSigner;
  /** unset: /login answers 404 (Choria runs signer-only services without an authenticator) */
  authenticator?: UserlistAuthenticator | undefined;
  /** PEM texts; mTLS when ca is given */
  tls?: { cert: string; key: string; ca?: string } | undefined;
  bodyLimit?: number;
}

// Choria's bodies, validated before any handler runs
const LOGIN_SCHEMA = {
  body: {
    type: "object",
    required: ["username", "password", "signature", "public_key", "timestamp"],
    properties: {
      username: { type: "string", minLength: 1, maxLength: 256 },
      password: { type: "string", maxLength: 1024 },
      signature: { type: "string", maxLength: 256 },
      public_key: { type: "string", maxLength: 128 },
      timestamp: { anyOf: [{ type: "string", maxLength: 20 }, { type: "integer" }] },
    },
  },
} as const;

const SIGN_SCHEMA = {
  body: {
    type: "object",
    required: ["token", "request"],
    properties: {
      token: { type: "string", minLength: 1, maxLength: 16384 },
      signature: { type: "string", maxLength: 256 },
      request: { type: "string", minLength: 1, pattern: "^[A-Za-z0-9+/=\\r\\n]+$" },
    },
  },
} as const;

interface SignBody {
  token: string;
  signature?: string;
  request: string;
}

/**
 * The login and sign HTTP API (Choria's paths and bodies) on Fastify. Unlike Choria,
 * which answers 200 with an `error` field, failures carry real status codes; the body
 * shape is the same ({token} / {secure_request} / {error}).
 */
export function buildAaaHttp(o: AaaHttpOptions): FastifyInstance {
  const site = o.site;
  const m = o.metrics;
  const app = fastify({
    loggerInstance: o.log,
    bodyLimit: o.bodyLimit ?? MAX_BODY_BYTES,
    ...(o.tls && {
      https: {
        cert: o.tls.cert,
        key: o.tls.key,
        ...(o.tls.ca !== undefined && { ca: o.tls.ca, requestCert: true, rejectUnauthorized: true }),
        minVersion: "TLSv1.2" as const,
      },
    }),
  }) as unknown as FastifyInstance;

  const finish = (path: string, reply: FastifyReply, code: number): void => {
    m.httpRequests.inc({ site, path, code: String(code) });
    m.httpTime.observe({ site, path }, reply.elapsedTime / 1000);
  };

  app.setErrorHandler((err: FastifyError, req, reply) => {
    const path = req.routeOptions.url ?? req.url;
    const status = err.validation ? 400 : (err.statusCode ?? 500);
    if (status >= 500) {
      req.log.error({ err }, "request failed");
      finish(path, reply, 500);
      return reply.code(500).send({ error: "internal error" });
    }
    m.badRequests.inc({ site, path });
    req.log.warn({ reason: err.message, code: err.code }, "bad request");
    finish(path, reply, status);
    const error =
      status === 413
        ? "request too large"
        : err.validation
          ? `invalid request: ${err.message}`
          : "invalid request";
    return reply.code(status).send({ error });
  });

  app.setNotFoundHandler((req, reply) => {
    finish("other", reply, 404);
    return reply.code(404).send({ error: "not found" });
  });

  if (o.authenticator) {
    const auth = o.authenticator;
    app.post<{ Body: LoginRequest }>(LOGIN_PATH, { schema: LOGIN_SCHEMA }, async (req, reply) => {
      const out = await auth.login(req.body, req.ip);
      if (out.ok) {
        finish(LOGIN_PATH, reply, 200);
        return reply.code(200).send({ token: out.token });
      }
      if (out.status === 400) m.badRequests.inc({ site, path: LOGIN_PATH });
      if (out.retryAfterS !== undefined) void reply.header("retry-after", String(out.retryAfterS));
      finish(LOGIN_PATH, reply, out.status);
      return reply.code(out.status).send({ error: out.error });
    });
  }

  app.post<{ Body: SignBody }>(SIGN_PATH, { schema: SIGN_SCHEMA }, async (req, reply) => {
    const b = req.body;
    const request = Buffer.from(b.request, "base64");
    const out = await o.signer.sign({ token: b.token, signature: b.signature ?? "", request });
    if (out.ok) {
      req.log.info({ caller: out.callerid }, "signed request");
      finish(SIGN_PATH, reply, 200);
      return reply.code(200).send({ secure_request: out.secureRequest.toString("base64") });
    }
    if (out.status === 400) m.badRequests.inc({ site, path: SIGN_PATH });
    req.log.warn({ status: out.status, reason: out.reason }, "sign refused");
    finish(SIGN_PATH, reply, out.status);
    return reply.code(out.status).send({ error: out.error });
  });

  return app;
}
