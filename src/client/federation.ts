import type { NatsConnection } from "../core/connector/index.js";
import {
  decodeTransport,
  directSubject,
  encodeTransport,
  recordNetworkHop,
  type TransportHeaders,
} from "../core/protocol/index.js";

/** go-choria groups a federated direct request's targets 200 to a message. */
export const FEDERATION_BATCH = 200;

/** Publishing through federation brokers (Choria's plugin.choria.federation.collectives). */
export interface FederationOptions {
  /** the federation clusters every request is sent to, `choria.federation.<name>.federation` */
  collectives: string[];
}

/** What one federated publish needs; `subjects` are the collective subjects the brokers publish to. */
export interface FederatedPublish {
  nc: NatsConnection;
  federation: FederationOptions;
  identity: string;
  requestId: string;
  /** the signed transport as it would go out unfederated */
  bytes: Uint8Array;
  /** direct: node identities; otherwise the one broadcast or service subject */
  direct?: { collective: string; nodes: readonly string[] };
  subject?: string;
}

/**
 * go-choria's publishFederatedDirect/Broadcast: the client records its hop, then each
 * message carries `federation.request` and up to 200 `targets` and goes to every
 * federation cluster. The signed request inside is never re-encoded.
 * Returns the number of messages published.
 */
export function publishFederated(p: FederatedPublish): number {
  const t = decodeTransport(p.bytes, { strict: false });
  const headers: TransportHeaders = { ...(t.transport.headers ?? {}) };
  const server = `nats://${p.nc.getServer()}`;
  headers.trace = [...(headers.trace ?? [])];
  recordNetworkHop({ headers }, server, p.identity, server);
  let sent = 0;
  const send = (targets: string[]) => {
    headers.federation = { request: p.requestId, targets };
    const data = encodeTransport(t.inner, headers);
    for (const fc of p.federation.collectives) {
      p.nc.publish(`choria.federation.${fc}.federation`, data);
      sent++;
    }
  };
  if (p.direct) {
    const { collective, nodes } = p.direct;
    for (let i = 0; i < nodes.length; i += FEDERATION_BATCH)
      send(nodes.slice(i, i + FEDERATION_BATCH).map((n) => directSubject(collective, n)));
  } else if (p.subject !== undefined) {
    send([p.subject]);
  }
  return sent;
}

/** `plugin.choria.federation.collectives` (or CHORIA_FED_COLLECTIVE, which wins, as in go-choria). */
export function federationCollectives(
  configured: string[],
  env = process.env.CHORIA_FED_COLLECTIVE,
): string[] {
  const raw = env !== undefined && env.trim() !== "" ? env.split(",") : configured;
  return raw.map((s) => s.trim()).filter((s) => s !== "");
}
