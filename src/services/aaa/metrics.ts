import type { Counter, Histogram, Summary } from "prom-client";
import { CHORUS_VERSION, ServedMetrics, promClient } from "../../core/util/index.js";

/**
 * The AAA service's Prometheus metrics under Choria's names (site label on all), plus
 * Chorus's own chorus_aaa_* extras. Scraped on monitor_port at /metrics.
 */
export class AaaMetrics extends ServedMetrics {
  readonly site: string;
  readonly authenticatorErrors: Counter<"site" | "authenticator">;
  readonly authenticatorTime: Summary<"site" | "authenticator">;
  readonly authorizerAllowed: Counter<"site" | "authorizer" | "action">;
  readonly authorizerDenied: Counter<"site" | "authorizer" | "action">;
  readonly authorizerErrors: Counter<"site" | "authorizer">;
  readonly signerErrors: Counter<"site" | "signer">;
  readonly signerAllowed: Counter<"site" | "signer">;
  readonly signerDenied: Counter<"site" | "signer">;
  readonly signerInvalidToken: Counter<"site" | "signer">;
  readonly auditorErrors: Counter<"site" | "auditor">;
  readonly loginFailures: Counter<"site" | "reason">;
  readonly lockouts: Counter<"site" | "scope">;
  readonly usersFileErrors: Counter<"site">;
  readonly credentialCache: Counter<"site" | "result">;
  readonly httpRequests: Counter<"site" | "path" | "code">;
  readonly badRequests: Counter<"site" | "path">;
  readonly httpTime: Histogram<"site" | "path">;

  constructor(site: string) {
    super();
    const p = promClient();
    this.site = site;
    const registers = [this.registry];
    this.authenticatorErrors = new p.Counter({
      name: "choria_aaa_authenticator_errors",
      help: "Total number of authentication requests that failed",
      labelNames: ["site", "authenticator"],
      registers,
    });
    this.authenticatorTime = new p.Summary({
      name: "choria_aaa_authenticator_time",
      help: "Time taken to handle logins",
      labelNames: ["site", "authenticator"],
      registers,
    });
    this.authorizerAllowed = new p.Counter({
      name: "choria_aaa_authorizer_allowed",
      help: "Total number of requests that were allowed",
      labelNames: ["site", "authorizer", "action"],
      registers,
    });
    this.authorizerDenied = new p.Counter({
      name: "choria_aaa_authorizer_denied",
      help: "Total number of requests that were denied",
      labelNames: ["site", "authorizer", "action"],
      registers,
    });
    this.authorizerErrors = new p.Counter({
      name: "choria_aaa_authorizer_errors",
      help: "Total number of requests could not be authorized",
      labelNames: ["site", "authorizer"],
      registers,
    });
    this.signerErrors = new p.Counter({
      name: "choria_aaa_signer_errors",
      help: "Total number of requests that could not be signed",
      labelNames: ["site", "signer"],
      registers,
    });
    this.signerAllowed = new p.Counter({
      name: "choria_aaa_signer_allowed",
      help: "Total number of requests that were allowed by the authorizer",
      labelNames: ["site", "signer"],
      registers,
    });
    this.signerDenied = new p.Counter({
      name: "choria_aaa_signer_denied",
      help: "Total number of requests that were denied by the authorizer",
      labelNames: ["site", "signer"],
      registers,
    });
    this.signerInvalidToken = new p.Counter({
      name: "choria_aaa_signer_invalid_token",
      help: "Total number of requests that contained invalid tokens",
      labelNames: ["site", "signer"],
      registers,
    });
    this.auditorErrors = new p.Counter({
      name: "choria_aaa_auditor_errors",
      help: "Total number of audit requests that failed",
      labelNames: ["site", "auditor"],
      registers,
    });
    const build = new p.Gauge({
      name: "choria_aaa_build_info",
      help: "Build information about the running AAA service",
      labelNames: ["site", "version"],
      registers,
    });
    build.set({ site, version: CHORUS_VERSION }, 1);
    this.loginFailures = new p.Counter({
      name: "chorus_aaa_login_failures_total",
      help: "Failed logins by reason",
      labelNames: ["site", "reason"],
      registers,
    });
    this.lockouts = new p.Counter({
      name: "chorus_aaa_login_lockouts_total",
      help: "Logins refused because the user or address is locked out",
      labelNames: ["site", "scope"],
      registers,
    });
    this.usersFileErrors = new p.Counter({
      name: "chorus_aaa_users_file_errors_total",
      help: "Users file reloads that failed (the last good list stays in use)",
      labelNames: ["site"],
      registers,
    });
    this.credentialCache = new p.Counter({
      name: "chorus_aaa_credential_cache_total",
      help: "Password checks: hit (verified recently, no bcrypt), shared (joined a bcrypt run in progress), miss (bcrypt ran)",
      labelNames: ["site", "result"],
      registers,
    });
    this.httpRequests = new p.Counter({
      name: "chorus_aaa_http_requests_total",
      help: "HTTP requests by path and status code",
      labelNames: ["site", "path", "code"],
      registers,
    });
    this.badRequests = new p.Counter({
      name: "chorus_aaa_bad_requests_total",
      help: "HTTP requests refused as malformed (bad JSON, missing fields, too large)",
      labelNames: ["site", "path"],
      registers,
    });
    this.httpTime = new p.Histogram({
      name: "chorus_aaa_http_request_seconds",
      help: "Time to answer login and sign requests",
      labelNames: ["site", "path"],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
  }

  /** What the request signer reports into (signers' and authorizers' counters). */
  signerSink(authorizer: string): {
    allowed(action: string): void;
    denied(action: string): void;
    invalidToken(): void;
    error(): void;
    authorizerError(): void;
  } {
    const site = this.site;
    return {
      allowed: (action) => {
        this.signerAllowed.inc({ site, signer: "basicjwt" });
        this.authorizerAllowed.inc({ site, authorizer, action });
      },
      denied: (action) => {
        this.signerDenied.inc({ site, signer: "basicjwt" });
        this.authorizerDenied.inc({ site, authorizer, action });
      },
      invalidToken: () => this.signerInvalidToken.inc({ site, signer: "basicjwt" }),
      error: () => this.signerErrors.inc({ site, signer: "basicjwt" }),
      authorizerError: () => this.authorizerErrors.inc({ site, authorizer }),
    };
  }
}
