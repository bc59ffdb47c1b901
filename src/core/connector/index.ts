import { readFileSync } from "node:fs";
import {
  connect,
  credsAuthenticator,
  type Authenticator,
  type NatsConnection,
  type Status,
} from "@nats-io/transport-node";
import { ChorusError } from "../protocol/errors.js";
import { nkeyPublicFromEd25519Public, publicHexFromSeed, sign } from "../security/index.js";
import { lineLogger, type Logger } from "../util/index.js";

export type { NatsConnection, Status } from "@nats-io/transport-node";

export class ConnectorError extends ChorusError {}

export interface ConnectOptions {
  /** host:port, nats://host:port or tls://host:port */
  servers: string[];
  /** connection name shown in broker monitoring */
  name: string;
  /** CA bundle to verify the broker; implies TLS */
  caFile?: string;
  /** client certificate for mutual TLS, optional */
  certFile?: string;
  keyFile?: string;
  /**
   * Require TLS. Defaults to true when caFile is set or any server is tls://.
   * Plain connections are only meant for local tests.
   */
  tls?: boolean;
  /** NATS user JWT; the broker checks the nonce signature against its subject */
  natsJwt?: string;
  /** ed25519 seed (hex) whose key is the NATS JWT's subject */
  seedHex?: string;
  /** a NATS `.creds` file (user JWT and nkey seed), instead of natsJwt and seedHex */
  credsFile?: string;
  /** how long the first connect may take, ms (nats.js default 20 s) */
  timeoutMs?: number;
  /** prefix for request inboxes; Chorus uses the caller's reply prefix so ACLs allow replies */
  inboxPrefix?: string | undefined;
  /** reconnect forever (default) or not at all */
  reconnect?: boolean;
  /** keep retrying the first connect too (servers that start before the broker) */
  waitOnFirstConnect?: boolean;
  /** base wait between reconnect attempts, ms (jitter is added) */
  reconnectTimeWaitMs?: number;
  /** connection status changes (default: warnings and errors to stderr) */
  logger?: Pick<Logger, "info" | "warn" | "error">;
  /** sees every status event (including pings) */
  onStatus?: (s: Status) => void;
}

const stderrLogger = lineLogger((level, m) => {
  if (level === "warn" || level === "error") process.stderr.write(`chorus nats: ${m}\n`);
});

function describeStatus(s: Status): ["info" | "warn" | "error", string] {
  switch (s.type) {
    case "disconnect":
      return ["warn", `disconnected from ${s.server}`];
    case "reconnect":
      return ["info", `reconnected to ${s.server}`];
    case "reconnecting":
      return ["info", "reconnecting"];
    case "error":
      return ["error", `error: ${s.error.message}`];
    case "ldm":
      return ["warn", `server ${s.server} entering lame duck mode`];
    case "staleConnection":
      return ["warn", "stale connection"];
    case "slowConsumer":
      return ["warn", `slow consumer on ${s.sub.getSubject()} (${s.pending} pending)`];
    case "close":
      return ["info", "connection closed"];
    default:
      return ["info", s.type];
  }
}

/**
 * NATS user-JWT auth: the server's nonce signed with the user's ed25519 key. Same answer
 * as nats.js's jwtAuthenticator, but signed with Chorus's ed25519 backend instead of the
 * pure-JS tweetnacl (whose cold first key derivation and sign took ~50 ms at start-up).
 */
function userJwtAuthenticator(jwt: string, seedHex: string): Authenticator {
  const nkey = nkeyPublicFromEd25519Public(publicHexFromSeed(seedHex), "user");
  return (nonce?: string) => ({
    jwt,
    nkey,
    sig: nonce ? sign(seedHex, Buffer.from(nonce, "utf8")).toString("base64") : "",
  });
}

/**
 * Connects to the Chorus/Choria broker: TLS (verified against the CA), JWT auth
 * whose nonce is signed with the nkey form of our ed25519 seed, and endless
 * reconnects with jitter so a fleet does not stampede a restarted broker.
 */
export async function connectNats(opts: ConnectOptions): Promise<NatsConnection> {
  const log = opts.logger ?? stderrLogger;
  if (opts.natsJwt && !opts.seedHex)
    throw new ConnectorError("config", "a NATS JWT needs the ed25519 seed that signs the nonce");
  const wantTls = opts.tls ?? (opts.caFile !== undefined || opts.servers.some((s) => s.startsWith("tls://")));
  const tls = wantTls
    ? {
        ...(opts.caFile ? { caFile: opts.caFile } : {}),
        ...(opts.certFile ? { certFile: opts.certFile } : {}),
        ...(opts.keyFile ? { keyFile: opts.keyFile } : {}),
      }
    : null;
  let creds: Authenticator | undefined;
  if (opts.credsFile !== undefined) {
    try {
      creds = credsAuthenticator(readFileSync(opts.credsFile));
    } catch (err) {
      throw new ConnectorError(
        "config",
        `cannot read the NATS credentials ${opts.credsFile}: ${(err as Error).message}`,
      );
    }
  }
  const reconnect = opts.reconnect ?? true;
  const wait = opts.reconnectTimeWaitMs ?? 2000;
  const nc = await connect({
    servers: opts.servers,
    name: opts.name,
    tls,
    ...(opts.natsJwt && opts.seedHex
      ? { authenticator: userJwtAuthenticator(opts.natsJwt, opts.seedHex) }
      : creds
        ? { authenticator: creds }
        : {}),
    ...(opts.timeoutMs !== undefined && { timeout: opts.timeoutMs }),
    ...(opts.inboxPrefix ? { inboxPrefix: opts.inboxPrefix } : {}),
    reconnect,
    maxReconnectAttempts: reconnect ? -1 : 0,
    reconnectTimeWait: wait,
    reconnectJitter: Math.round(wait / 2),
    reconnectJitterTLS: wait,
    waitOnFirstConnect: opts.waitOnFirstConnect ?? false,
  });
  void (async () => {
    for await (const s of nc.status()) {
      opts.onStatus?.(s);
      if (s.type === "ping") continue;
      const [level, msg] = describeStatus(s);
      log[level](`${opts.name}: ${msg}`);
    }
  })();
  return nc;
}

/**
 * Drains (flushes what was published, ends subscriptions) and closes. A drain needs the
 * broker: with none (it went away and the connection is reconnecting) it fails or never
 * ends, and a connection left reconnecting keeps the process alive after SIGTERM. So
 * the drain gets `timeoutMs`, then the connection is closed regardless.
 */
export async function closeNats(nc: NatsConnection, timeoutMs = 3000): Promise<void> {
  if (nc.isClosed()) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    nc.drain().catch(() => undefined),
    new Promise<void>((r) => (timer = setTimeout(r, timeoutMs))),
  ]);
  clearTimeout(timer);
  if (!nc.isClosed()) await nc.close().catch(() => undefined);
}

/**
 * nc.flush() with a deadline: nats.js leaves a flush that waits for its PONG pending
 * forever if close() happens meanwhile, which would hang whoever awaits it.
 */
export async function flushNats(nc: NatsConnection, timeoutMs = 10_000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      nc.flush(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new ConnectorError("timeout", `the broker did not confirm a flush within ${timeoutMs} ms`),
            ),
          timeoutMs,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
