import { existsSync, readFileSync } from "node:fs";
import { connectNats, type NatsConnection } from "../../core/connector/index.js";
import { replyPrefix } from "../../core/protocol/index.js";
import { decodeTokenUnverified, loadSeedFile } from "../../core/security/index.js";
import type { Logger } from "../../core/util/index.js";
import type { Endpoint } from "./config.js";
import { ReplicatorError } from "./errors.js";

/**
 * The NATS login of an endpoint's Choria credential: the seed, the NATS user JWT (the
 * token's `.nats` companion from setup, or the token itself when it is one), and the
 * reply prefix its permissions allow for inboxes (JetStream API answers come there).
 */
function choriaLogin(e: Endpoint): { seedHex: string; natsJwt: string; inboxPrefix?: string } | undefined {
  const c = e.choria;
  if (!c) return undefined;
  try {
    const seedHex = loadSeedFile(c.seed_file).seedHex;
    const companion = `${c.jwt_file}.nats`;
    const natsJwt = readFileSync(existsSync(companion) ? companion : c.jwt_file, "utf8").trim();
    let caller: unknown;
    try {
      const claims = decodeTokenUnverified(readFileSync(c.jwt_file, "utf8").trim());
      caller = claims.callerid ?? claims.identity;
    } catch {
      caller = undefined; // a bare NATS user JWT: default inboxes
    }
    return {
      seedHex,
      natsJwt,
      ...(typeof caller === "string" && { inboxPrefix: replyPrefix(c.collective, caller) }),
    };
  } catch (err) {
    throw new ReplicatorError(
      "config",
      `choria credential ${c.seed_file}, ${c.jwt_file}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}

/** The inbox prefix an endpoint's credential may subscribe to (undefined: NATS's default). */
export function endpointInboxPrefix(e: Endpoint): string | undefined {
  return choriaLogin(e)?.inboxPrefix;
}

/** Connects to one endpoint (reconnecting forever, as a replicator must outlive outages). */
export async function connectEndpoint(e: Endpoint, name: string, log: Logger): Promise<NatsConnection> {
  const login = choriaLogin(e);
  try {
    return await connectNats({
      servers: e.servers,
      name,
      ...(e.tls?.ca !== undefined && { caFile: e.tls.ca }),
      ...(e.tls?.cert !== undefined && { certFile: e.tls.cert }),
      ...(e.tls?.key !== undefined && { keyFile: e.tls.key }),
      ...(login ?? {}),
      ...(e.credentials !== undefined && { credsFile: e.credentials }),
      ...(e.connectTimeoutMs !== undefined && { timeoutMs: e.connectTimeoutMs }),
      // a replicator started while the other side is down waits for it
      waitOnFirstConnect: true,
      logger: log,
    });
  } catch (err) {
    if (err instanceof ReplicatorError) throw err;
    throw new ReplicatorError(
      "connect",
      `cannot connect to ${e.servers.join(",")}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}
