import { randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { extname, join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import {
  fastify,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from "fastify";
import { pino, type Logger as PinoLogger } from "pino";
import { decode as decodeNatsJwt } from "@nats-io/jwt";
import type { Registry } from "prom-client";
import {
  Client,
  ClientError,
  ReceiverApi,
  login,
  receiverApiFromConfig,
  receiverTokenFromConfig,
  remoteSigner,
  type RpcReply,
} from "../../client/index.js";
import { clientSettings, loadConfig } from "../../core/config/index.js";
import {
  builtinDDL,
  builtinDDLNames,
  findAction,
  formatIssues,
  validateInputs,
  type AgentDDL,
} from "../../core/ddl/index.js";
import type { NatsConnection } from "../../core/connector/index.js";
import { buildFilter } from "../../core/filter/index.js";
import { replyPrefix, type Filter } from "../../core/protocol/index.js";
import { securityFromSettings } from "../../core/security/index.js";
import { logLine, promClient, type Logger } from "../../core/util/index.js";
import { subjectMatches } from "../../services/provisioner/index.js";
import { registrationSubject } from "../../services/registration/index.js";
import type {
  AuditQuery,
  AuditResponse,
  DdlAgent,
  DdlResponse,
  DiscoverRequest,
  FilterSpec,
  FleetQuery,
  LoginRequest,
  NodeStatus,
  RequestEventName,
  ScoutCheck,
  SessionInfo,
  StartRequest,
} from "./api-types.js";
import {
  LocalUsers,
  SessionStore,
  clearedCookie,
  sessionCookie,
  sessionIdFrom,
  type Session,
} from "./auth.js";
import { AuditReader, DEFAULT_AUDIT_STREAM } from "./audit.js";
import { FleetTable, FleetWatcher } from "./fleet.js";

export interface UiOptions {
  /** the client config file the console's Client is made from */
  config: string;
  /** default 127.0.0.1 */
  host?: string;
  /** default 0: a free port */
  port?: number;
  /** TLS certificate and key files (PEM) */
  cert: string;
  key: string;
  /** local users (when the client config has no AAA login): name -> bcrypt hash */
  users?: Record<string, string>;
  /** a dev login: user `admin` (or devUser) with this password */
  devPassword?: string;
  devUser?: string;
  /** session lifetime, ms (default 1 h) */
  sessionTtlMs?: number;
  /** the receiver's HTTP API for /api/jobs (default: the config's plugin.chorus.receiver.api) */
  receiverUrl?: string;
  /** its bearer token (default: the file in the config's plugin.chorus.receiver.api_token_file) */
  receiverToken?: string;
  /**
   * a client config whose credential may read the AAA audit stream (JetStream consumer
   * rights, e.g. the dev setup's admin-client.conf): the Audit page reads the stream with
   * it, and registration is subscribed with it when its permissions allow
   */
  auditConfig?: string;
  /** the audit stream (default CHORUS_AAA_AUDIT) */
  auditStream?: string;
  /** audit records kept in memory, newest (default 10 000) */
  auditKeep?: number;
  /** /metrics answers a request with `Authorization: Bearer <this>` (or a logged-in session) */
  metricsToken?: string;
  /** where the browser bundle is (default dist/ui-web/ of the package) */
  webRoot?: string;
  /** the fleet's registration interval, seconds: nodes go stale after twice this */
  registrationIntervalS?: number;
  /** rpcutil#inventory poll period, ms (default 60 000) */
  inventoryEveryMs?: number;
  /** overrides for the Client (tests: discoveryTimeoutMs) */
  discoveryTimeoutMs?: number;
  logger?: PinoLogger;
}

export interface UiServer {
  url: string;
  port: number;
  readonly fleet: FleetTable;
  /** the registration subscription: live, refused (not permitted), or off (no audit config) */
  readonly registration: () => Promise<"live" | "refused" | "off">;
  /** one inventory poll, awaited (tests, and after start) */
  refreshFleet(): Promise<void>;
  close(): Promise<void>;
}

const DEFAULT_WEB_ROOT = fileURLToPath(new URL("../../../dist/ui-web/", import.meta.url));
const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".map": "application/json; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
};

const strList = { type: "array", items: { type: "string", maxLength: 1024 }, maxItems: 64 } as const;
const FILTER_PROPS = {
  identity: strList,
  fact: strList,
  class: strList,
  agent: strList,
  compound: strList,
} as const;
const FILTER_SCHEMA = { type: "object", additionalProperties: false, properties: FILTER_PROPS } as const;
const NAME = { type: "string", minLength: 1, maxLength: 128, pattern: "^[a-zA-Z0-9_-]+$" } as const;

/** Runs kept for late SSE subscribers this long after they end. */
const RUN_KEEP_MS = 10 * 60_000;
const MAX_RUNS = 200;

interface RunEvent {
  name: RequestEventName;
  data: unknown;
}

/** One request started from the console: its events so far, and who is listening. */
class RequestRun {
  readonly events: RunEvent[] = [];
  readonly listeners = new Set<(e: RunEvent) => void>();
  ended = false;
  endedAt = 0;
  /** the user who started it: only they may follow it */
  constructor(readonly owner: string) {}
  emit(name: RequestEventName, data: unknown): void {
    const e = { name, data };
    this.events.push(e);
    for (const l of this.listeners) l(e);
    if (name === "end") {
      this.ended = true;
      this.endedAt = Date.now();
      this.listeners.clear();
    }
  }
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * A failed fleet call as the person in the browser should read it: the AAA service's
 * refusal is "not authorised" (403), an expired AAA login asks for a new one (401).
 */
function fleetError(err: unknown, what: string, user: string): HttpError {
  if (err instanceof HttpError) return err;
  const msg = (err as Error).message;
  if (err instanceof ClientError) {
    if (err.code === "signer_denied")
      return new HttpError(
        403,
        `not authorised: the AAA service refused ${what} for ${user} (its reason is on the Audit page)`,
      );
    if (err.code === "token_expired" || err.code === "no_token")
      return new HttpError(401, `your AAA login has ended (${msg}): log in again`);
  }
  return new HttpError(502, `${what} failed: ${msg}`);
}

function filterOf(spec: FilterSpec | undefined, agent?: string): Filter {
  try {
    return buildFilter({
      identity: spec?.identity ?? [],
      facts: spec?.fact ?? [],
      classes: spec?.class ?? [],
      agents: [...(spec?.agent ?? []), ...(agent ? [agent] : [])],
      compound: spec?.compound ?? [],
    });
  } catch (err) {
    throw new HttpError(400, `bad filter: ${(err as Error).message}`);
  }
}

function ddlView(d: AgentDDL): DdlAgent {
  return {
    name: d.metadata.name,
    description: d.metadata.description,
    version: d.metadata.version,
    actions: d.actions.map((a) => ({
      name: a.action,
      description: a.description,
      ...(a.display && { display: a.display }),
      inputs: Object.entries(a.input).map(([name, i]) => ({
        name,
        prompt: i.prompt,
        description: i.description,
        type: i.type,
        optional: i.optional,
        ...(i.default !== undefined && { default: i.default }),
        ...(i.list && { list: i.list }),
        ...(i.validation !== undefined && { validation: i.validation }),
        ...(i.maxlength !== undefined && { maxlength: i.maxlength }),
      })),
      outputs: Object.entries(a.output).map(([name, o]) => ({
        name,
        description: o.description,
        display_as: o.display_as,
        ...(o.type && { type: o.type }),
      })),
    })),
  };
}

function uiMetrics(registry: Registry) {
  const p = promClient();
  return {
    http: new p.Counter({
      name: "chorus_ui_http_requests_total",
      help: "HTTP requests by route and status code",
      labelNames: ["route", "code"] as const,
      registers: [registry],
    }),
    badInput: new p.Counter({
      name: "chorus_ui_bad_input_total",
      help: "Requests refused for bad input (schema, filter or DDL validation)",
      labelNames: ["route"] as const,
      registers: [registry],
    }),
    loginFailures: new p.Counter({
      name: "chorus_ui_login_failures_total",
      help: "Failed console logins",
      registers: [registry],
    }),
    logins: new p.Counter({
      name: "chorus_ui_logins_total",
      help: "Successful console logins",
      registers: [registry],
    }),
    sessions: new p.Gauge({
      name: "chorus_ui_sessions",
      help: "Live console sessions",
      registers: [registry],
    }),
    requests: new p.Counter({
      name: "chorus_ui_rpc_requests_total",
      help: "Fleet requests started from the console",
      registers: [registry],
    }),
  };
}

/**
 * The audit connection's logger: the connector logs every asynchronous permission error,
 * but a refused registration subscription is expected with an audit-only credential and
 * the fleet watcher says so once, at info; it is not an error of the console.
 */
function quietRefusedRegistration(log: PinoLogger): Logger {
  const refused = /Permissions Violation for Subscription to "[^"]*\.broadcast\.agent\.registration"/;
  const at =
    (level: "debug" | "info" | "warn" | "error") =>
    (f: Record<string, unknown> | string, m?: string): void => {
      const l = level === "error" && refused.test(logLine(f, m)) ? "debug" : level;
      if (typeof f === "string") log[l](f);
      else log[l](f, m);
    };
  return { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}

/**
 * Why a client config's credential may not subscribe to registration, read from its NATS
 * user JWT (`<token_file>.nats`), so the broker is not asked for what it will refuse;
 * nothing when there is no such JWT to tell (the broker then decides).
 */
function registrationRefusal(config: string, collective: string): { registrationRefused?: string } {
  const jwtFile = `${clientSettings(loadConfig(config)).tokenFile}.nats`;
  if (!existsSync(jwtFile)) return {};
  let sub: { allow?: string[]; deny?: string[] } | undefined;
  try {
    sub = decodeNatsJwt<{ sub?: { allow?: string[]; deny?: string[] } }>(readFileSync(jwtFile, "utf8").trim())
      .nats?.sub;
  } catch {
    return {};
  }
  const subject = registrationSubject(collective);
  const allow = sub?.allow ?? [];
  if ((sub?.deny ?? []).some((p) => subjectMatches(p, subject)))
    return { registrationRefused: "its NATS permissions deny it" };
  if (allow.length > 0 && !allow.some((p) => subjectMatches(p, subject)))
    return { registrationRefused: "its NATS permissions do not include it" };
  return {};
}

/** Starts the web console: HTTPS API and static front end over one Chorus client. */
export async function startUi(o: UiOptions): Promise<UiServer> {
  const log = o.logger ?? pino({ name: "chorus-ui" });
  const cfg = loadConfig(o.config);
  const settings = clientSettings(cfg);
  const aaa = settings.loginUrls.length > 0 && settings.requestSigner !== undefined;
  const caFile = settings.caFile;
  const ttlMs = o.sessionTtlMs ?? 3_600_000;
  const webRoot = resolve(o.webRoot ?? DEFAULT_WEB_ROOT);

  // The console's own client (fleet polls; local-mode requests). In AAA mode it needs the
  // config's own login token, as the CLI does; each user's requests get their own signer.
  const client = await Client.fromConfigFile(o.config, {
    logger: log,
    ...(o.discoveryTimeoutMs !== undefined && { discoveryTimeoutMs: o.discoveryTimeoutMs }),
  });
  const nc = await client.connect();
  // The audit credential's own connection: the audit stream and, if it may, registration.
  let auditClient: Client | undefined;
  let auditNc: NatsConnection | undefined;
  if (o.auditConfig) {
    try {
      auditClient = await Client.fromConfigFile(o.auditConfig, { logger: quietRefusedRegistration(log) });
      auditNc = await auditClient.connect();
    } catch (err) {
      await auditClient?.close();
      await client.close();
      throw new Error(`audit config ${o.auditConfig}: ${(err as Error).message}`, { cause: err });
    }
  }
  const audit = auditNc
    ? new AuditReader({
        nc: auditNc,
        stream: o.auditStream ?? DEFAULT_AUDIT_STREAM,
        log,
        ...(o.auditKeep !== undefined && { keep: o.auditKeep }),
      })
    : undefined;
  audit?.start();

  const registry = new (promClient().Registry)();
  const m = uiMetrics(registry);
  const local = new LocalUsers(
    o.users ?? {},
    o.devPassword !== undefined ? { username: o.devUser ?? "admin", password: o.devPassword } : undefined,
  );
  const sessions = new SessionStore(ttlMs, (s) => {
    m.sessions.set(sessions.size);
    if (s.client) void s.client.close();
    if (s.dir) rmSync(s.dir, { recursive: true, force: true });
  });
  const sweeper = setInterval(() => sessions.sweep(), 60_000);
  sweeper.unref();

  const table = new FleetTable({
    ...(o.registrationIntervalS !== undefined && { registrationIntervalS: o.registrationIntervalS }),
  });
  const watcher = new FleetWatcher({
    table,
    nc,
    client,
    collective: client.collective,
    log,
    ...(auditNc && {
      registrationNc: auditNc,
      registrationBy: `the audit config ${o.auditConfig}`,
      ...(o.auditConfig && registrationRefusal(o.auditConfig, client.collective)),
    }),
    ...(o.inventoryEveryMs !== undefined && { inventoryEveryMs: o.inventoryEveryMs }),
  });
  watcher.start();

  const runs = new Map<string, RequestRun>();
  // the URL and token as `chorus job` finds them: given, or from the client config
  const receiverUrl = o.receiverUrl ?? receiverApiFromConfig(o.config);
  const receiver = receiverUrl
    ? new ReceiverApi({ url: receiverUrl, token: o.receiverToken ?? receiverTokenFromConfig(o.config) })
    : undefined;

  const app = fastify({
    loggerInstance: log,
    bodyLimit: 256 * 1024,
    https: { cert: readFileSync(o.cert), key: readFileSync(o.key), minVersion: "TLSv1.2" as const },
  }) as unknown as FastifyInstance;

  app.addHook("onResponse", async (req, reply) => {
    m.http.inc({ route: req.routeOptions.url ?? "unknown", code: String(reply.statusCode) });
  });
  app.setErrorHandler((err: FastifyError, req, reply) => {
    const route = req.routeOptions.url ?? "unknown";
    if (err.validation) {
      m.badInput.inc({ route });
      return reply.code(400).send({ error: `bad request: ${err.message}` });
    }
    if (err instanceof HttpError) {
      if (err.status === 400) m.badInput.inc({ route });
      return reply.code(err.status).send({ error: err.message });
    }
    if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) {
      m.badInput.inc({ route });
      return reply.code(err.statusCode).send({ error: err.message });
    }
    req.log.error({ err }, "request failed");
    return reply.code(500).send({ error: `internal error: ${err.message}` });
  });
  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send({ error: `no such path: ${req.url.split("?")[0]}` }),
  );

  // Callers whose reply subjects the console's connection was seen to be allowed to read.
  const receivable = new Set<string>();
  const mayReceive = async (prefix: string, callerId: string): Promise<void> => {
    if (receivable.has(prefix)) return;
    let refused: string | undefined;
    const sub = nc.subscribe(`${prefix}.>`, {
      callback: (err) => {
        if (err) refused = err.message;
      },
    });
    // a refused SUB is answered before the PONG of this flush
    await nc.flush();
    sub.unsubscribe();
    if (refused !== undefined) {
      log.error({ callerId, err: refused }, "the console cannot receive this user's replies");
      throw new HttpError(
        503,
        `the console cannot receive replies for ${callerId}: its credential may not subscribe to ${prefix}.> ` +
          `(${refused}); give the console's credential the subscription <collective>.reply.> (see docs/ui.md)`,
      );
    }
    receivable.add(prefix);
  };

  const sessionOf = (req: FastifyRequest): Session => {
    const r = sessions.lookup(sessionIdFrom(req.headers.cookie));
    if (!r.ok) throw new HttpError(401, r.error);
    return r.session;
  };
  const info = (s: Session): SessionInfo => ({
    username: s.username,
    expiresAt: new Date(s.expiresAt).toISOString(),
    mode: s.mode,
    collective: client.collective,
  });
  const clientOf = (s: Session): Client => s.client ?? client;

  // Every /api route but login needs a session.
  app.addHook("onRequest", async (req) => {
    const path = req.url.split("?")[0] ?? "";
    if (path.startsWith("/api/") && path !== "/api/login") sessionOf(req);
  });

  app.post<{ Body: LoginRequest }>(
    "/api/login",
    {
      schema: {
        body: {
          type: "object",
          required: ["username", "password"],
          additionalProperties: false,
          properties: {
            username: { type: "string", minLength: 1, maxLength: 256 },
            password: { type: "string", maxLength: 1024 },
          },
        },
      },
    },
    async (req, reply) => {
      const { username, password } = req.body;
      let s: Session;
      if (aaa && settings.requestSigner) {
        // The user's own seed and token, private to this session.
        const dir = mkdtempSync(join(tmpdir(), "chorus-ui-session-"));
        const seedFile = join(dir, "user.seed");
        const tokenFile = join(dir, "user.jwt");
        try {
          await login({ urls: settings.loginUrls, username, password, seedFile, tokenFile, caFile });
        } catch (err) {
          rmSync(dir, { recursive: true, force: true });
          m.loginFailures.inc();
          const msg = (err as Error).message;
          req.log.info({ username, err: msg }, "AAA login failed");
          // an unreachable service is not the user's typing: say which it is
          if (/no login endpoint answered/.test(msg))
            throw new HttpError(503, `the AAA login service did not answer: ${msg}`);
          throw new HttpError(401, "wrong username or password");
        }
        const rs = settings.requestSigner;
        let userClient: Client;
        try {
          // The user's own identity (their token's callerid): nodes answer only to the
          // caller's inbox, so replies come to this user's reply subjects, which the
          // console's shared connection must be allowed to read.
          const security = securityFromSettings({ ...settings, seedFile, tokenFile });
          await mayReceive(replyPrefix(client.collective, security.callerId), security.callerId);
          userClient = await Client.fromConfigFile(o.config, {
            logger: log,
            connection: nc,
            security,
            requestSigner: remoteSigner({ url: rs.url, service: rs.service, tokenFile, seedFile, caFile }),
            ...(o.discoveryTimeoutMs !== undefined && { discoveryTimeoutMs: o.discoveryTimeoutMs }),
          });
        } catch (err) {
          rmSync(dir, { recursive: true, force: true });
          throw err;
        }
        s = sessions.create(username, "aaa", { client: userClient, dir });
      } else {
        if (!(await local.check(username, password))) {
          m.loginFailures.inc();
          req.log.info({ username }, "login failed");
          throw new HttpError(401, "wrong username or password");
        }
        s = sessions.create(username, "local");
      }
      m.logins.inc();
      m.sessions.set(sessions.size);
      req.log.info({ username, mode: s.mode }, "logged in");
      void reply.header("set-cookie", sessionCookie(s.id));
      return info(s);
    },
  );

  app.post("/api/logout", async (req, reply) => {
    const s = sessionOf(req);
    sessions.end(s.id);
    void reply.header("set-cookie", clearedCookie());
    return { ok: true };
  });

  app.get("/api/session", async (req) => info(sessionOf(req)));

  const fleetQuerySchema = {
    type: "object",
    additionalProperties: false,
    properties: {
      ...FILTER_PROPS,
      status: { type: "string", enum: ["alive", "stale", "gone"] },
      offset: { type: "integer", minimum: 0, default: 0 },
      limit: { type: "integer", minimum: 1, maximum: 1000, default: 100 },
    },
  } as const;

  app.get<{ Querystring: FleetQuery }>(
    "/api/fleet",
    { schema: { querystring: fleetQuerySchema } },
    async (req) => {
      const q = req.query;
      const offset = q.offset ?? 0;
      const limit = q.limit ?? 100;
      const { total, nodes } = table.page(filterOf(q), q.status as NodeStatus | undefined, offset, limit);
      return {
        total,
        offset,
        limit,
        nodes,
        summary: table.summary(),
        registration: watcher.registration,
        inventoryEveryS: watcher.inventoryEveryS,
      };
    },
  );

  app.get<{ Querystring: Omit<FilterSpec, "fact"> & { fact: string; where?: string[] } }>(
    "/api/fleet/counts",
    {
      schema: {
        querystring: {
          type: "object",
          additionalProperties: false,
          required: ["fact"],
          // `fact` names the fact to count by; filter by facts with `where`
          properties: {
            fact: { type: "string", minLength: 1, maxLength: 256 },
            identity: strList,
            class: strList,
            agent: strList,
            compound: strList,
            where: strList,
          },
        },
      },
    },
    async (req) => {
      const q = req.query;
      const counts = table.counts(q.fact, filterOf({ ...q, fact: q.where ?? [] }));
      return { fact: q.fact, counts };
    },
  );

  app.get<{ Params: { identity: string } }>(
    "/api/fleet/:identity",
    {
      schema: {
        params: {
          type: "object",
          required: ["identity"],
          properties: { identity: { type: "string", minLength: 1, maxLength: 256 } },
        },
      },
    },
    async (req) => {
      const n = table.get(req.params.identity);
      if (!n) throw new HttpError(404, `unknown node ${req.params.identity}`);
      return n;
    },
  );

  const ddlFor = (agent: string): AgentDDL => {
    try {
      return builtinDDL(agent);
    } catch {
      throw new HttpError(400, `unknown agent ${agent}`);
    }
  };

  app.get("/api/ddl", async (): Promise<DdlResponse> => {
    const agents: DdlAgent[] = [];
    for (const name of builtinDDLNames()) {
      try {
        agents.push(ddlView(builtinDDL(name)));
      } catch (err) {
        log.warn(`DDL ${name}: ${(err as Error).message}`);
      }
    }
    return { agents };
  });

  app.post<{ Body: DiscoverRequest }>(
    "/api/discover",
    {
      schema: {
        body: {
          type: "object",
          additionalProperties: false,
          properties: { agent: NAME, filter: FILTER_SCHEMA },
        },
      },
    },
    async (req) => {
      const s = sessionOf(req);
      const filter = filterOf(req.body.filter, req.body.agent);
      const nodes = (
        await clientOf(s)
          .discover({ filter })
          .catch((err: unknown) => {
            throw fleetError(err, "discovery", s.username);
          })
      ).sort();
      return { count: nodes.length, nodes: nodes.slice(0, 100) };
    },
  );

  app.post<{ Body: StartRequest }>(
    "/api/requests",
    {
      schema: {
        body: {
          type: "object",
          required: ["agent", "action"],
          additionalProperties: false,
          properties: {
            agent: NAME,
            action: NAME,
            inputs: { type: "object", maxProperties: 64 },
            filter: FILTER_SCHEMA,
            batch_size: { type: "integer", minimum: 1, maximum: 100_000 },
            batch_sleep: { type: "number", minimum: 0, maximum: 3600 },
            canary: { type: "integer", minimum: 1, maximum: 100_000 },
          },
        },
      },
    },
    async (req) => {
      const s = sessionOf(req);
      const b = req.body;
      const ddl = ddlFor(b.agent);
      if (!findAction(ddl, b.action)) throw new HttpError(400, `agent ${b.agent} has no action ${b.action}`);
      const inputs = b.inputs ?? {};
      const issues = validateInputs(ddl, b.action, inputs);
      if (issues.length > 0) throw new HttpError(400, `${b.agent}#${b.action}: ${formatIssues(issues)}`);
      // as the CLI's --batch-sleep needs --batch: a pause between batches means nothing without batches
      if (b.batch_sleep !== undefined && b.batch_size === undefined)
        throw new HttpError(400, "batch_sleep needs batch_size");
      const filter = filterOf(b.filter);

      // Keep the table of runs bounded: drop ended runs past their keep time, then the oldest.
      const now = Date.now();
      for (const [id, r] of runs) if (r.ended && now - r.endedAt > RUN_KEEP_MS) runs.delete(id);
      while (runs.size >= MAX_RUNS) {
        const oldest = runs.keys().next().value as string;
        runs.delete(oldest);
      }
      const id = randomUUID();
      const run = new RequestRun(s.username);
      runs.set(id, run);
      m.requests.inc();
      req.log.info({ user: s.username, agent: b.agent, action: b.action, id }, "request started");

      let total = 0;
      let done = 0;
      void clientOf(s)
        .request(b.agent, b.action, inputs, {
          filter,
          ddl,
          ...(b.batch_size !== undefined && { batchSize: b.batch_size }),
          ...(b.batch_sleep !== undefined && { batchSleepMs: b.batch_sleep * 1000 }),
          ...(b.canary !== undefined && { canary: b.canary }),
          onPublish: (targets) => {
            total = targets.length;
            run.emit("targets", { total });
            run.emit("progress", { done, total });
          },
          onReply: (r: RpcReply) => {
            done++;
            run.emit("reply", {
              sender: r.sender,
              statuscode: r.statuscode,
              statusmsg: r.statusmsg,
              data: r.data,
            });
            run.emit("progress", { done, total });
          },
        })
        .then((res) => {
          const st = res.stats;
          run.emit("summary", {
            requestid: st.requestid,
            discovered: st.discovered,
            responses: st.responses,
            ok: st.ok,
            failed: st.failed,
            noResponses: st.noResponses,
            unexpected: st.unexpected,
            requestMs: Math.round(st.requestMs),
            ...(st.canaryStopped && { canaryStopped: true }),
            ...(st.skipped && st.skipped.length > 0 && { skipped: st.skipped.length }),
          });
          run.emit("end", { ok: !st.canaryStopped });
        })
        .catch((err: unknown) => {
          const e = fleetError(err, `${b.agent}#${b.action}`, s.username);
          req.log.info({ user: s.username, id, err: (err as Error).message }, "request failed");
          run.emit("error", { error: e.message, kind: e.status === 403 ? "denied" : "failed" });
          run.emit("end", { ok: false });
        });
      return { id };
    },
  );

  app.get<{ Params: { id: string } }>(
    "/api/requests/:id/events",
    {
      schema: {
        params: {
          type: "object",
          required: ["id"],
          properties: { id: { type: "string", pattern: "^[0-9a-f-]{36}$" } },
        },
      },
    },
    async (req, reply) => {
      const s = sessionOf(req);
      const run = runs.get(req.params.id);
      // Another user's request id is as unknown as a made-up one.
      if (!run || run.owner !== s.username) {
        throw new HttpError(404, `no request ${req.params.id}`);
      }
      reply.hijack();
      const raw = reply.raw;
      raw.writeHead(200, {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache",
        connection: "keep-alive",
      });
      const write = (e: RunEvent): void => {
        raw.write(`event: ${e.name}\ndata: ${JSON.stringify(e.data)}\n\n`);
        if (e.name === "end") raw.end();
      };
      for (const e of run.events) write(e);
      if (run.ended) return;
      run.listeners.add(write);
      req.raw.on("close", () => run.listeners.delete(write));
    },
  );

  app.get("/api/jobs", async () => {
    if (!receiver) throw new HttpError(503, "no receiver configured: start the console with --receiver URL");
    try {
      return { jobs: (await receiver.list()) as unknown as Record<string, unknown>[] };
    } catch (err) {
      throw new HttpError(502, `receiver: ${(err as Error).message}`);
    }
  });

  app.get<{ Params: { id: string } }>(
    "/api/jobs/:id",
    {
      schema: {
        params: {
          type: "object",
          required: ["id"],
          properties: { id: { type: "string", pattern: "^[0-9A-Za-z]{1,64}$" } },
        },
      },
    },
    async (req) => {
      if (!receiver)
        throw new HttpError(503, "no receiver configured: start the console with --receiver URL");
      try {
        const [job, replies] = await Promise.all([
          receiver.status(req.params.id),
          receiver.replies(req.params.id),
        ]);
        return {
          job: job as unknown as Record<string, unknown>,
          replies: replies as unknown as Record<string, unknown>[],
        };
      } catch (err) {
        throw new HttpError(502, `receiver: ${(err as Error).message}`);
      }
    },
  );

  app.get<{ Querystring: AuditQuery }>(
    "/api/audit",
    {
      schema: {
        querystring: {
          type: "object",
          additionalProperties: false,
          properties: {
            caller: { type: "string", maxLength: 256 },
            agent: { type: "string", maxLength: 128 },
            decision: { type: "string", enum: ["allow", "deny", "unknown"] },
            limit: { type: "integer", minimum: 1, maximum: 500, default: 200 },
            before: { type: "integer", minimum: 1 },
          },
        },
      },
    },
    async (req): Promise<AuditResponse> => {
      if (!audit)
        return {
          records: [],
          matched: 0,
          note:
            "The console reads no audit stream: start it with --audit-config FILE, a client config " +
            `whose credential may read the JetStream stream ${o.auditStream ?? DEFAULT_AUDIT_STREAM} ` +
            "(in a dev setup: admin-client.conf).",
        };
      const page = audit.log.query(req.query);
      return {
        stream: audit.stream,
        ...page,
        ...(audit.note !== undefined && { note: audit.note }),
      };
    },
  );

  app.get<{ Querystring: FilterSpec }>(
    "/api/scout",
    { schema: { querystring: FILTER_SCHEMA } },
    async (req) => {
      const s = sessionOf(req);
      const res = await clientOf(s)
        .request("scout", "checks", {}, { filter: filterOf(req.query, "scout") })
        .catch((err: unknown) => {
          throw fleetError(err, "scout#checks", s.username);
        });
      const checks: ScoutCheck[] = [];
      const counts: Record<string, number> = {};
      for (const r of res.replies) {
        if (r.statuscode !== 0) continue;
        const list = Array.isArray(r.data.checks) ? (r.data.checks as Record<string, unknown>[]) : [];
        for (const c of list) {
          const state = String(c.state ?? "UNKNOWN");
          counts[state] = (counts[state] ?? 0) + 1;
          const start = typeof c.start_time === "number" ? c.start_time : undefined;
          checks.push({
            node: r.sender,
            name: String(c.name ?? ""),
            state,
            ...(start !== undefined && { since: new Date(start * 1000).toISOString() }),
            ...(c.status !== null && c.status !== undefined && { output: JSON.stringify(c.status) }),
          });
        }
      }
      return { checks, counts, noResponses: res.stats.noResponses };
    },
  );

  // Metrics name users' activity: a scraper shows the bearer token, a person their session.
  const metricsToken = o.metricsToken !== undefined ? Buffer.from(o.metricsToken) : undefined;
  const bearerOk = (header: string | undefined): boolean => {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
    if (!m || !metricsToken) return false;
    const given = Buffer.from(m[1] as string);
    return given.length === metricsToken.length && timingSafeEqual(given, metricsToken);
  };
  app.get("/metrics", async (req, reply) => {
    if (!bearerOk(req.headers.authorization)) {
      const r = sessions.lookup(sessionIdFrom(req.headers.cookie));
      if (!r.ok) {
        void reply.header("www-authenticate", 'Bearer realm="chorus-ui metrics"');
        throw new HttpError(
          401,
          metricsToken
            ? "metrics need the bearer token (--metrics-token-file) or a logged-in session"
            : "metrics need a logged-in session (or start the console with --metrics-token-file)",
        );
      }
    }
    void reply.header("content-type", registry.contentType);
    return registry.metrics();
  });

  // The front end: files under webRoot only; "/" is index.html.
  const serveStatic = async (req: FastifyRequest, reply: FastifyReply) => {
    let path: string;
    try {
      path = decodeURIComponent(req.url.split("?")[0] ?? "/");
    } catch {
      throw new HttpError(400, "bad path");
    }
    if (path.includes("\0")) throw new HttpError(400, "bad path");
    if (path === "/" || path === "") path = "/index.html";
    const file = resolve(webRoot, `.${path}`);
    if (file !== webRoot && !file.startsWith(webRoot.endsWith(sep) ? webRoot : webRoot + sep)) {
      throw new HttpError(404, `no such path: ${path}`);
    }
    let body: Buffer;
    try {
      if (!statSync(file).isFile()) throw new Error("not a file");
      body = readFileSync(file);
    } catch {
      throw new HttpError(404, `no such path: ${path}`);
    }
    void reply.header("content-type", CONTENT_TYPES[extname(file)] ?? "application/octet-stream");
    void reply.header("x-content-type-options", "nosniff");
    return reply.send(body);
  };
  app.get("/", serveStatic);
  app.get("/*", serveStatic);

  await app.listen({ host: o.host ?? "127.0.0.1", port: o.port ?? 0 });
  const addr = app.server.address();
  const port = typeof addr === "object" && addr ? addr.port : (o.port ?? 0);
  const host = o.host ?? "127.0.0.1";
  const url = `https://${host.includes(":") ? `[${host}]` : host}:${port}/`;
  log.info({ url, mode: aaa ? "aaa" : "local" }, "console listening");

  return {
    url,
    port,
    fleet: table,
    registration: async () => {
      await watcher.registrationSettled();
      return watcher.registration;
    },
    refreshFleet: () => watcher.poll(),
    async close() {
      clearInterval(sweeper);
      await app.close();
      sessions.endAll();
      await watcher.stop();
      await audit?.stop();
      await auditClient?.close();
      await client.close();
    },
  };
}

/** A random dev password (printed by `chorus ui` when none is given). */
export function randomDevPassword(): string {
  return randomBytes(12).toString("base64url");
}
