import { createHash, timingSafeEqual } from "node:crypto";
import type { ServerResponse } from "node:http";
import { fastify, type FastifyError, type FastifyInstance } from "fastify";
import type { Logger } from "pino";
import { REQUEST_ID_PATTERN } from "./ingest.js";
import type { ReplyStore, RequestStatus } from "./store.js";

export interface ReceiverHttpOptions {
  store: ReplyStore;
  log: Logger;
  /** how often a watch looks for changes, ms (default 200) */
  watchIntervalMs?: number;
  /** how long a watch of a request not stored yet waits for it before 404, ms (default 5 s) */
  watchWaitMs?: number;
  /** comment line sent to an idle watch so proxies keep it open, ms (default 15 s) */
  keepaliveMs?: number;
  /** when set, every route but /healthz needs `Authorization: Bearer <token>` */
  token?: string;
  /** counts calls refused for a missing or wrong token */
  onUnauthorized?: () => void;
}

/** Whether an Authorization header carries `token`, compared in constant time. */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
  if (!m) return false;
  const a = createHash("sha256")
    .update(m[1] as string)
    .digest();
  const b = createHash("sha256").update(token).digest();
  return timingSafeEqual(a, b);
}

const STATUS_SCHEMA = {
  type: "object",
  required: [
    "request_id",
    "agent",
    "action",
    "caller",
    "collective",
    "created",
    "discovered",
    "replied",
    "ok",
    "failed",
    "unexpected",
    "complete",
    "known",
  ],
  properties: {
    request_id: { type: "string" },
    agent: { type: "string" },
    action: { type: "string" },
    caller: { type: "string" },
    collective: { type: "string" },
    created: { type: "string" },
    discovered: { type: "integer" },
    replied: { type: "integer" },
    ok: { type: "integer" },
    failed: { type: "integer" },
    unexpected: { type: "integer" },
    complete: { type: "boolean" },
    last_reply: { type: "string" },
    known: { type: "boolean" },
  },
} as const;

const ERROR_SCHEMA = {
  type: "object",
  required: ["error"],
  properties: { error: { type: "string" } },
} as const;
const ID_PARAMS = {
  type: "object",
  required: ["id"],
  properties: { id: { type: "string", pattern: REQUEST_ID_PATTERN } },
} as const;
const ERRORS = { 400: ERROR_SCHEMA, 404: ERROR_SCHEMA, 500: ERROR_SCHEMA } as const;

const LIST_SCHEMA = {
  querystring: {
    type: "object",
    additionalProperties: false,
    properties: {
      limit: { type: "integer", minimum: 1, maximum: 1000, default: 50 },
      caller: { type: "string", minLength: 1, maxLength: 1024 },
      agent: { type: "string", minLength: 1, maxLength: 1024 },
      before: { type: "string", format: "date-time" },
    },
  },
  response: {
    200: {
      type: "object",
      required: ["requests"],
      properties: { requests: { type: "array", items: STATUS_SCHEMA } },
    },
    ...ERRORS,
  },
} as const;

const STATUS_ROUTE = { params: ID_PARAMS, response: { 200: STATUS_SCHEMA, ...ERRORS } } as const;

const REPLIES_SCHEMA = {
  params: ID_PARAMS,
  querystring: {
    type: "object",
    additionalProperties: false,
    properties: {
      limit: { type: "integer", minimum: 1, maximum: 1000, default: 100 },
      offset: { type: "integer", minimum: 0, maximum: 100_000_000, default: 0 },
      failed: { type: "boolean" },
    },
  },
  response: {
    200: {
      type: "object",
      required: ["replies"],
      properties: {
        replies: {
          type: "array",
          items: {
            type: "object",
            required: ["sender", "statuscode", "statusmsg", "data", "time"],
            properties: {
              sender: { type: "string" },
              statuscode: { type: "integer" },
              statusmsg: { type: "string" },
              // any JSON the node answered
              data: {},
              time: { type: "string" },
            },
          },
        },
      },
    },
    ...ERRORS,
  },
} as const;

const WATCH_SCHEMA = { params: ID_PARAMS, response: { 404: ERROR_SCHEMA, 400: ERROR_SCHEMA } } as const;
const HEALTH_SCHEMA = {
  response: { 200: { type: "object", required: ["ok"], properties: { ok: { type: "boolean" } } } },
} as const;

interface IdParams {
  id: string;
}

/** One Server-Sent Event. */
function sse(res: ServerResponse, event: string, data: unknown): void {
  res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * The receiver's HTTP/JSON API over the store: request list, status, replies, and a
 * Server-Sent Events watch. Every route has JSON schemas; errors are {"error": "..."}
 * with a real status (400 for a malformed id or query, 404 for an unknown request).
 */
export function buildReceiverHttp(o: ReceiverHttpOptions): FastifyInstance {
  const { store } = o;
  const interval = o.watchIntervalMs ?? 200;
  const app = fastify({ loggerInstance: o.log }) as unknown as FastifyInstance;

  app.setErrorHandler((err: FastifyError, req, reply) => {
    const status = err.validation ? 400 : (err.statusCode ?? 500);
    if (status >= 500) {
      req.log.error({ err }, "request failed");
      return reply.code(500).send({ error: err.message || "internal error" });
    }
    return reply
      .code(status)
      .send({ error: err.validation ? `invalid request: ${err.message}` : err.message });
  });
  app.setNotFoundHandler((_req, reply) => reply.code(404).send({ error: "not found" }));
  const token = o.token;
  if (token !== undefined) {
    // the replies of every caller's requests are here: not for whoever can reach the port
    app.addHook("onRequest", async (req, reply) => {
      if (req.url === "/healthz" || bearerMatches(req.headers.authorization, token)) return;
      o.onUnauthorized?.();
      await reply
        .code(401)
        .header("www-authenticate", 'Bearer realm="chorus receiver"')
        .send({ error: "this receiver API needs a bearer token (plugin.chorus.receiver.api_token_file)" });
    });
  }

  app.get("/healthz", { schema: HEALTH_SCHEMA }, () => ({ ok: true }));

  app.get<{ Querystring: { limit: number; caller?: string; agent?: string; before?: string } }>(
    "/v1/requests",
    { schema: LIST_SCHEMA },
    async (req) => {
      const q = req.query;
      return {
        requests: await store.list({
          limit: q.limit,
          caller: q.caller,
          agent: q.agent,
          beforeMs: q.before === undefined ? undefined : Date.parse(q.before),
        }),
      };
    },
  );

  app.get<{ Params: IdParams }>("/v1/requests/:id", { schema: STATUS_ROUTE }, async (req, reply) => {
    const st = await store.status(req.params.id);
    if (!st) return reply.code(404).send({ error: `no request ${req.params.id} is stored` });
    return st;
  });

  app.get<{ Params: IdParams; Querystring: { limit: number; offset: number; failed?: boolean } }>(
    "/v1/requests/:id/replies",
    { schema: REPLIES_SCHEMA },
    async (req, reply) => {
      const id = req.params.id;
      const q = req.query;
      const replies = await store.replies(id, { limit: q.limit, offset: q.offset, failed: q.failed });
      if (replies.length === 0 && !(await store.status(id)))
        return reply.code(404).send({ error: `no request ${id} is stored` });
      return { replies };
    },
  );

  app.get<{ Params: IdParams }>("/v1/requests/:id/watch", { schema: WATCH_SCHEMA }, async (req, reply) => {
    const id = req.params.id;
    let gone = false;
    req.raw.once("close", () => (gone = true));
    // a watch started right after the request may come before its record is committed
    let st = await store.status(id);
    const until = Date.now() + (o.watchWaitMs ?? 5000);
    while (!st && !gone && Date.now() < until) {
      await sleep(interval);
      st = await store.status(id);
    }
    if (!st) return reply.code(404).send({ error: `no request ${id} is stored` });
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      "content-type": "text/event-stream",
      "cache-control": "no-cache",
      connection: "keep-alive",
    });
    const keepalive = setInterval(() => res.write(": keepalive\n\n"), o.keepaliveMs ?? 15_000);
    try {
      let last = "";
      let cur: RequestStatus | undefined = st;
      while (!gone) {
        if (cur) {
          const text = JSON.stringify(cur);
          if (text !== last) {
            last = text;
            res.write(`event: status\ndata: ${text}\n\n`);
          }
          if (cur.complete) {
            sse(res, "complete", cur);
            break;
          }
        }
        await sleep(interval);
        if (gone) break;
        try {
          cur = await store.status(id);
        } catch (err) {
          // the store may be back on the next look; the watcher is told meanwhile
          sse(res, "error", { error: (err as Error).message });
          cur = undefined;
        }
      }
    } finally {
      clearInterval(keepalive);
      res.end();
    }
  });

  return app;
}
