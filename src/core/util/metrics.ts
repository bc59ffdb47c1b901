import { createServer, type Server as HttpServer } from "node:http";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";

const require = createRequire(import.meta.url);

/**
 * prom-client, loaded on first use: it (with its OpenTelemetry dependency) costs start-up
 * time and memory that a process without a metrics endpoint should not pay. Import its
 * types with `import type`, and the classes through this.
 */
export function promClient(): typeof import("prom-client") {
  return require("prom-client") as typeof import("prom-client");
}

export interface MetricsEndpointOptions {
  /** 0 picks a free port (see `port` once started) */
  port: number;
  /** interface to bind; default loopback */
  host?: string | undefined;
  /** rendered at every scrape (default: a new, empty one, to add metrics to) */
  registry?: Registry;
  /** the error start() rejects with when it cannot listen (default: the listen error itself) */
  listenError?: (err: Error) => Error;
}

/** The paths scraped: Prometheus's usual one and Choria's. */
export const METRICS_PATHS: readonly string[] = ["/metrics", "/choria/metrics"];

/**
 * A Prometheus scrape endpoint: GET /metrics (and /choria/metrics, where Choria serves
 * them) on host:port; anything else is 404, a failed render 500. The server's and the
 * broker's metrics extend it (overriding render() where a scrape needs more).
 */
export class MetricsEndpoint {
  readonly registry: Registry;
  private server: HttpServer | undefined;

  constructor(private readonly endpoint: MetricsEndpointOptions) {
    this.registry = endpoint.registry ?? new (promClient().Registry)();
  }

  /** The exposition text, rendered at every scrape. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  /** The bound port once started (useful with port 0), else the configured one. */
  get port(): number {
    const a = this.server?.address();
    return a && typeof a === "object" ? (a as AddressInfo).port : this.endpoint.port;
  }

  get host(): string {
    return this.endpoint.host ?? "127.0.0.1";
  }

  /** Listens; rejects with listenError(the listen error), e.g. for EADDRINUSE. */
  async start(): Promise<void> {
    if (this.server) return;
    const server = createServer((req, res) => {
      const path = (req.url ?? "/").split("?")[0] as string;
      if (req.method !== "GET" || !METRICS_PATHS.includes(path)) {
        res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
        return;
      }
      this.render().then(
        (body) => res.writeHead(200, { "content-type": this.registry.contentType }).end(body),
        (err: unknown) =>
          res
            .writeHead(500, { "content-type": "text/plain" })
            .end(`${err instanceof Error ? err.message : String(err)}\n`),
      );
    });
    const wording = this.endpoint.listenError ?? ((err: Error) => err);
    await new Promise<void>((resolve, reject) => {
      server.once("error", (err) => reject(wording(err)));
      server.listen(this.endpoint.port, this.host, () => resolve());
    });
    this.server = server;
  }

  /** Closes the listener and any open scrape connections. */
  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}

/**
 * A service's own Prometheus registry, served on a port when asked: the listen, port
 * and stop every service's metrics class needs, written once. Subclasses register their
 * metrics in `this.registry`.
 */
export class ServedMetrics {
  readonly registry: Registry = new (promClient().Registry)();
  private endpoint: MetricsEndpoint | undefined;

  /** Serves /metrics on port (0 = any free port); returns the bound port. */
  async listen(port: number, host?: string): Promise<number> {
    this.endpoint = new MetricsEndpoint({
      port,
      ...(host !== undefined && { host }),
      registry: this.registry,
    });
    await this.endpoint.start();
    return this.endpoint.port;
  }

  get port(): number | undefined {
    return this.endpoint?.port;
  }

  async stop(): Promise<void> {
    await this.endpoint?.stop();
    this.endpoint = undefined;
  }
}
