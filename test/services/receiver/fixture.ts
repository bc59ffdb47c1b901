// A secure fleet (TLS + JWT broker with JetStream), receiver configs for it, and messages
// built the way nodes and clients build them: replies through the real v2 codec, request
// records as the async client writes them.
import { hash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pino } from "pino";
import { stringify } from "yaml";
import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "../../../src/core/connector/index.js";
import {
  asyncRecordSubject,
  asyncReplySubject,
  decodeTransport,
  encodeMessage,
  encodeReply,
  encodeSecureReply,
  encodeTransport,
  newRequestId,
  nowNanos,
} from "../../../src/core/protocol/index.js";
import { startSecureFleet, type SecureFleet } from "../../helpers/fleet.js";
import { sign } from "../../../src/core/security/index.js";
import { connectAs } from "../lifecycle/connect.js";
import type { ReceiverService } from "../../../src/services/receiver/index.js";

export const silent = pino({ level: process.env.CHORUS_TEST_LOG ?? "silent" });
export const CALLER = "choria=alice";

export interface ReplyOptions {
  statuscode?: number;
  statusmsg?: string;
  data?: Record<string, unknown>;
  agent?: string;
  /** the request id inside the reply (default: the one of the subject) */
  inner?: string;
  timeNs?: number;
}

/** A reply as a node publishes it: transport → secure reply (hashed) → reply → mcorpc body. */
export function replyBytes(
  requestId: string,
  sender: string,
  o: ReplyOptions & { signer?: { seedHex: string; token: string } } = {},
): Buffer {
  const body = {
    action: "ping",
    statuscode: o.statuscode ?? 0,
    statusmsg: o.statusmsg ?? "OK",
    data: o.data ?? { pong: sender },
  };
  const reply = encodeReply({
    message: encodeMessage(JSON.stringify(body)),
    request: o.inner ?? requestId,
    sender,
    agent: o.agent ?? "rpcutil",
    time: o.timeNs ?? nowNanos(),
  });
  const sig = o.signer && sign(o.signer.seedHex, reply);
  return encodeTransport(encodeSecureReply(reply, sig, o.signer?.token), { sender });
}

/** A reply whose secure layer carries a hash that is not its body's. */
export function tamperedReplyBytes(requestId: string, sender: string): Buffer {
  const { inner } = decodeTransport(replyBytes(requestId, sender));
  const secure = JSON.parse(inner.toString()) as { hash: string };
  secure.hash = Buffer.alloc(32).toString("base64");
  return encodeTransport(Buffer.from(JSON.stringify(secure)), { sender });
}

export const replySubjectFor = (requestId: string, caller = CALLER, collective = "mcollective"): string =>
  asyncReplySubject(collective, caller, requestId);

export interface RecordFields {
  request_id: string;
  nodes: string[];
  caller?: string;
  agent?: string;
  time?: string;
}

/** A request record body as the async client publishes it. */
export function recordBytes(r: RecordFields): Buffer {
  const caller = r.caller ?? CALLER;
  return Buffer.from(
    JSON.stringify({
      protocol: "io.chorus.async.v1.request",
      request_id: r.request_id,
      agent: r.agent ?? "rpcutil",
      action: "ping",
      caller,
      collective: "mcollective",
      reply_to: asyncReplySubject("mcollective", caller, r.request_id),
      nodes: r.nodes,
      discovered: r.nodes.length,
      time: r.time ?? new Date().toISOString(),
      ttl: 60,
    }),
  );
}

export const recordSubjectFor = (requestId: string, caller = CALLER): string =>
  asyncRecordSubject(caller, requestId);

export const md5 = (s: string): string => hash("md5", s, "hex");

export interface ReceiverFleet {
  fleet: SecureFleet;
  /** an org_admin connection (the broker's credential): publishes anywhere */
  pub: NatsConnection;
  /** a client config whose credential may subscribe to every reply subject (direct mode) */
  directClientConfig: string;
  /** writes a receiver config in the setup dir; `undefined` deletes a key */
  writeConfig(over?: Record<string, unknown>, name?: string): string;
  /** publishes a record with a JetStream ack, as the client does */
  publishRecord(r: RecordFields): Promise<void>;
  stop(): Promise<void>;
}

let configs = 0;

export async function receiverFleet(): Promise<ReceiverFleet> {
  const fleet = await startSecureFleet();
  const pub = await connectAs(fleet.setup, "broker");
  const js = jetstream(pub);
  const directClientConfig = join(fleet.setup.dir, "receiver-client.conf");
  writeFileSync(
    directClientConfig,
    readFileSync(fleet.setup.adminClientConfig, "utf8").replaceAll(
      "credentials/admin-client.",
      "credentials/broker.",
    ),
  );
  return {
    fleet,
    pub,
    directClientConfig,
    writeConfig(over = {}, name = `receiver-${++configs}.yaml`) {
      const cfg: Record<string, unknown> = {
        choria_config: fleet.setup.adminClientConfig,
        store: `sqlite:receiver-${configs}.db`,
        http_listen: "127.0.0.1:0",
        flush_interval: "20ms",
        loglevel: "error",
        ...over,
      };
      for (const [k, v] of Object.entries(cfg)) if (v === undefined) delete cfg[k];
      const file = join(fleet.setup.dir, name);
      writeFileSync(file, stringify(cfg));
      return file;
    },
    async publishRecord(r) {
      await js.publish(recordSubjectFor(r.request_id, r.caller), recordBytes(r), {
        msgID: `rec-${r.request_id}`,
      });
    },
    async stop() {
      await pub.close().catch(() => {});
      await fleet.stop();
    },
  };
}

export { newRequestId };

export { waitFor as until } from "../../broker/helpers.js";

/** A receiver metric's value: the sum over the series with these labels. */
export async function metric(
  r: ReceiverService,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const m = r.metrics.registry.getSingleMetric(name);
  if (!m) throw new Error(`no metric ${name}`);
  const { values } = await m.get();
  const match = (l: Record<string, unknown>) => Object.entries(labels).every(([k, x]) => l[k] === x);
  return values.filter((v) => match(v.labels)).reduce((sum, v) => sum + v.value, 0);
}
