import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { AddressInfo } from "node:net";
import type { FastifyInstance } from "fastify";
import { pino, type Logger } from "pino";
import { jetstreamManager } from "@nats-io/jetstream";
import { clientSettings, loadConfig } from "../../core/config/index.js";
import { closeNats, connectNats, type NatsConnection } from "../../core/connector/index.js";
import { replyPrefix } from "../../core/protocol/index.js";
import { FileSecurity, loadSeedFile, securityFromSettings } from "../../core/security/index.js";
import { actionListAuthorizer, cedarAuthorizer, type Server } from "../../server/index.js";
import { startSignerAgent } from "./agent.js";
import { FileAuditor, JetStreamAuditor, type Auditor } from "./auditors.js";
import { AaaConfigError, loadAaaConfig, type AaaConfig } from "./config.js";
import { buildAaaHttp } from "./http.js";
import { AaaMetrics } from "./metrics.js";
import { RequestSigner, type SignerLog } from "./signer.js";
import { UserlistAuthenticator } from "./userlist.js";

export interface AaaServiceOptions {
  /** default: pino at the config's loglevel to logfile or stderr */
  logger?: Logger;
  /** unix ms (tests) */
  now?: () => number;
}

function readText(path: string, what: string): string {
  try {
    return readFileSync(path, "utf8").trim();
  } catch (err) {
    throw new AaaConfigError("config", `cannot read ${what} ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

/**
 * Creates the audit stream when it is missing and the credential may; otherwise
 * records wait in the spool until an operator creates it (logged with the fix).
 */
async function ensureAuditStream(nc: NatsConnection, stream: string, topic: string, log: Logger) {
  try {
    // no account-info probe: the auditor's credential may touch only its own stream
    const jsm = await jetstreamManager(nc, { checkAPI: false });
    const info = await jsm.streams.info(stream).catch(() => undefined);
    if (info) {
      if (!info.config.subjects?.some((s) => s === topic || topic.startsWith(s.replace(/>$/, "")))) {
        log.warn({ stream, topic, subjects: info.config.subjects }, "audit stream does not take the topic");
      }
      return;
    }
    // duplicate_window: at least the time a crashed service takes to come back and re-send
    await jsm.streams.add({ name: stream, subjects: [topic], duplicate_window: 10 * 60 * 1e9 });
    log.info({ stream, topic }, "created the audit stream");
  } catch (err) {
    log.warn(
      { stream, topic, err: (err as Error).message },
      "cannot check or create the audit stream; records stay in the spool until it exists",
    );
  }
}

/**
 * The AAA service: login (userlist), the request signer over HTTP and, with
 * basicjwt_signer.choria_service, as the aaa_signer RPC service agent; auditors and
 * Prometheus metrics. Embeddable:
 *
 *     const aaa = AaaService.fromFile("aaa.yaml");
 *     await aaa.start();   // aaa.port, aaa.monitorPort
 *     await aaa.stop();
 */
/**
 * The signer's privileged certificate for protocol v1, when the service's choria_config
 * names plugin.security.file.* (Chorus only: go-choria's aaasvc signs v2 requests only).
 */
function signerX509(choriaConfig: string | undefined): FileSecurity | undefined {
  if (!choriaConfig) return undefined;
  const cfg = loadConfig(choriaConfig);
  if (!cfg.get("plugin.security.file.certificate")) return undefined;
  const x = clientSettings(cfg).x509;
  if (!x) return undefined;
  const sec = new FileSecurity(x);
  // nodes accept it for other callers only when it is privileged by their own rules
  if (!sec.isPrivileged(sec.certname))
    throw new AaaConfigError(
      "config",
      `${choriaConfig}: the signer's certificate ${sec.certname} does not match plugin.choria.security.privileged_users, so nodes would refuse what it signs`,
    );
  return sec;
}

export class AaaService {
  readonly config: AaaConfig;
  readonly log: Logger;
  readonly metrics: AaaMetrics;
  private signerInstance: RequestSigner | undefined;
  private authenticator: UserlistAuthenticator | undefined;
  private http: FastifyInstance | undefined;
  private agentServer: Server | undefined;
  private auditors: Auditor[] = [];
  private auditNc: NatsConnection | undefined;
  private started = false;

  constructor(
    config: AaaConfig,
    private readonly opts: AaaServiceOptions = {},
  ) {
    this.config = config;
    this.log =
      opts.logger ??
      pino(
        { name: "chorus-aaa", level: config.loglevel === "fatal" ? "fatal" : config.loglevel },
        config.logfile ? pino.destination({ dest: config.logfile, mkdir: true }) : pino.destination(2),
      );
    this.metrics = new AaaMetrics(config.site);
  }

  static fromFile(path: string, opts: AaaServiceOptions = {}): AaaService {
    return new AaaService(loadAaaConfig(path), opts);
  }

  /** The bound login/sign port (port 0 picks one), when listening. */
  get port(): number | undefined {
    const a = this.http?.server.address();
    return a && typeof a === "object" ? (a as AddressInfo).port : undefined;
  }

  get monitorPort(): number | undefined {
    return this.metrics.port;
  }

  /** The RequestSigner in use (for embedding and benchmarks). */
  get signer(): RequestSigner | undefined {
    return this.signerInstance;
  }

  /** The embedded node hosting aaa_signer, when choria_service is on. */
  get agent(): Server | undefined {
    return this.agentServer;
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    try {
      await this.startParts();
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  private async startParts(): Promise<void> {
    const c = this.config;
    const site = c.site;
    const log = this.log;
    this.auditors = await this.makeAuditors();
    const bj = c.basicjwt_signer;
    const signerLog = log.child({ component: "signer" });
    const slog: SignerLog = (level, msg, fields) => signerLog[level](fields ?? {}, msg);
    const authorizer = c.authorizer === "cedar" ? cedarAuthorizer() : actionListAuthorizer();
    const x509 = signerX509(c.choria_config);
    if (x509) log.info({ certname: x509.certname }, "signing protocol v1 requests with the x509 certificate");
    this.signerInstance = new RequestSigner({
      ...(x509 && { x509 }),
      site,
      issuers: bj.issuers,
      signerToken: readText(bj.signing_token, "basicjwt_signer.signing_token"),
      signerSeedHex: loadSeedFile(bj.signing_seed).seedHex,
      maxValiditySeconds: bj.maxValidityS,
      allowBearerTokens: bj.allow_bearer_tokens,
      authorizer,
      auditors: this.auditors,
      ...(this.opts.now && { now: this.opts.now }),
      metrics: this.metrics.signerSink(authorizer.name),
      log: slog,
    });

    if (c.userlist) {
      this.authenticator = new UserlistAuthenticator(c.userlist, {
        site,
        metrics: this.metrics,
        log: log.child({ component: "authenticator", authenticator: "userlist" }),
        ...(this.opts.now && { now: this.opts.now }),
      });
      await this.authenticator.start();
    }

    if (c.monitor_port !== undefined) {
      await this.metrics.listen(c.monitor_port, c.listen_address);
      log.info({ port: this.metrics.port }, "prometheus metrics listening");
    }

    if (c.port !== undefined) {
      const tls =
        c.tls_certificate && c.tls_key
          ? {
              cert: readText(c.tls_certificate, "tls_certificate"),
              key: readText(c.tls_key, "tls_key"),
              ...(c.tls_ca && { ca: readText(c.tls_ca, "tls_ca") }),
            }
          : undefined;
      if (!tls) log.warn("tls_certificate and tls_key are not set: serving login and sign over plain HTTP");
      this.http = buildAaaHttp({
        site,
        metrics: this.metrics,
        log: log.child({ component: "http" }),
        signer: this.signerInstance,
        authenticator: this.authenticator,
        tls,
      });
      await this.http.listen({ port: c.port, host: c.listen_address });
      log.info(
        { port: this.port, tls: tls !== undefined, mtls: tls?.ca !== undefined },
        "AAA service listening",
      );
    }

    if (bj.choria_service && c.choria_config) {
      this.agentServer = await startSignerAgent({
        choriaConfig: c.choria_config,
        signer: this.signerInstance,
        log: log.child({ component: "agent" }),
      });
      log.info({ identity: this.agentServer.identity }, "aaa_signer service agent running");
    }
  }

  private async makeAuditors(): Promise<Auditor[]> {
    const c = this.config;
    const site = c.site;
    const out: Auditor[] = [];
    const onError = (name: string) => (err: Error) => {
      this.metrics.auditorErrors.inc({ site, auditor: name });
      this.log.error({ auditor: name, err: err.message }, "audit failed");
    };
    if (c.logfile_auditor) {
      out.push(
        new FileAuditor({
          path: c.logfile_auditor.logfile,
          ...(c.logfile_auditor.rotate_bytes !== undefined && {
            rotateBytes: c.logfile_auditor.rotate_bytes,
          }),
          ...(c.logfile_auditor.keep !== undefined && { keep: c.logfile_auditor.keep }),
          onError: onError("logfile"),
        }),
      );
    }
    if (c.jetstream_auditor) {
      const ja = c.jetstream_auditor;
      const servers = ja.servers
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s !== "");
      // credentials: a Choria client config whose TLS files and NATS JWT are used
      let sec: ReturnType<typeof securityFromSettings> | undefined;
      let inboxPrefix: string | undefined;
      if (ja.credentials) {
        const settings = clientSettings(loadConfig(ja.credentials));
        sec = securityFromSettings(settings);
        // JetStream acks come to an inbox the credential may subscribe to
        inboxPrefix = replyPrefix(settings.mainCollective, sec.callerId);
      }
      this.auditNc = await connectNats({
        servers,
        name: `chorus-aaa-audit-${site}`,
        waitOnFirstConnect: true,
        ...(inboxPrefix && { inboxPrefix }),
        ...(sec?.caFile && { caFile: sec.caFile }),
        ...(sec?.certFile && { certFile: sec.certFile }),
        ...(sec?.keyFile && { keyFile: sec.keyFile }),
        ...(sec?.natsJwt && { natsJwt: sec.natsJwt, seedHex: sec.seedHex }),
        logger: this.log.child({ component: "audit-nats" }),
      });
      const alog = this.log.child({ component: "audit-jetstream" });
      if (ja.stream) await ensureAuditStream(this.auditNc, ja.stream, ja.topic, alog);
      out.push(
        await JetStreamAuditor.create({
          nc: this.auditNc,
          subject: ja.topic,
          ...(ja.stream && { stream: ja.stream }),
          spoolFile: ja.spool ?? join(dirname(c.file.startsWith("<") ? "." : c.file), "aaa-audit.spool"),
          onError: onError("jetstream"),
          log: (level, msg, fields) => alog[level](fields ?? {}, msg),
        }),
      );
    }
    return out;
  }

  /** Stops listening, the agent, the auditors (flushing them), in that order. */
  async stop(): Promise<void> {
    this.started = false;
    const http = this.http;
    this.http = undefined;
    if (http) await http.close().catch((err: Error) => this.log.warn({ err: err.message }, "http close"));
    const agent = this.agentServer;
    this.agentServer = undefined;
    if (agent) await agent.stop().catch((err: Error) => this.log.warn({ err: err.message }, "agent stop"));
    this.authenticator?.stop();
    this.authenticator = undefined;
    await this.metrics.stop();
    for (const a of this.auditors)
      await a.close().catch((err: Error) => this.log.warn({ err: err.message }, "auditor close"));
    this.auditors = [];
    const nc = this.auditNc;
    this.auditNc = undefined;
    if (nc) await closeNats(nc);
  }
}
