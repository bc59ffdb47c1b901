import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { loadConfig, serverSettings } from "../../src/core/config/index.js";
import { connectNats } from "../../src/core/connector/index.js";
import type { AgentDDL } from "../../src/core/ddl/index.js";
import { matchFilter } from "../../src/core/filter/index.js";
import {
  broadcastSubject,
  decodeRequest,
  decodeSecureRequest,
  decodeTransport,
  directSubject,
  encodeMessage,
  encodeReply,
  encodeSecureReply,
  encodeTransport,
  nowNanos,
  type Request,
} from "../../src/core/protocol/index.js";
import {
  ChoriaSecurity,
  createClientToken,
  createServerToken,
  generateKeyPair,
  orgIssuer,
  sign,
  verify,
  verifyToken,
  writeSeedFile,
  type Issuer,
  type KeyPair,
} from "../../src/core/security/index.js";

export const COLLECTIVE = "mcollective";

/** A tiny agent DDL for the tests: echo, a failing action and output defaults. */
export const TEST_DDL: AgentDDL = {
  metadata: {
    name: "testagent",
    description: "test agent",
    author: "tests",
    license: "Apache-2.0",
    version: "1.0.0",
    url: "https://example.invalid",
    timeout: 2,
  },
  actions: [
    {
      action: "echo",
      description: "echo a message",
      display: "always",
      input: {
        message: {
          prompt: "Message",
          description: "what to echo",
          type: "string",
          optional: false,
          validation: "^[a-z ]+$",
          maxlength: 64,
        },
        count: { prompt: "Count", description: "a number", type: "integer", optional: true },
      },
      output: {
        message: { description: "the message", display_as: "Message" },
        extra: { description: "defaulted", display_as: "Extra Thing", default: "dflt" },
      },
    },
    {
      action: "fail",
      description: "always fails",
      display: "failed",
      input: {},
      output: {},
    },
  ],
};

export interface TestTrust {
  dir: string;
  org: Issuer;
  issuers: string[];
  clientSecurity: ChoriaSecurity;
  cleanup(): void;
}

/** An org issuer and a client credential (seed + token files) in a temp dir. */
export function makeTrust(callerid = "choria=tester"): TestTrust {
  const dir = mkdtempSync(join(tmpdir(), "chorus-client-"));
  const orgKp = generateKeyPair();
  const org = orgIssuer(orgKp);
  const kp = generateKeyPair();
  const token = createClientToken(
    { callerid, publicKeyHex: kp.publicHex, validityS: 3600, permissions: { fleet_management: true } },
    org,
  );
  writeSeedFile(join(dir, "client.seed"), kp);
  writeFileSync(join(dir, "client.jwt"), token);
  const clientSecurity = new ChoriaSecurity({
    seedFile: join(dir, "client.seed"),
    tokenFile: join(dir, "client.jwt"),
    issuers: [orgKp.publicHex],
  });
  return {
    dir,
    org,
    issuers: [orgKp.publicHex],
    clientSecurity,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

export type Behaviour = "normal" | "bad_hash" | "forged_signature" | "wrong_identity_token" | "unsigned";

export interface ResponderOptions {
  identity: string;
  /** an existing connection (e.g. TLS + JWT to a secure broker); closed by stop() */
  nc?: NatsConnection;
  /** the server's own seed and token; default: a fresh key with a token from trust.org */
  credential?: { seedHex: string; token: string };
  facts?: Record<string, unknown>;
  classes?: string[];
  agents?: string[];
  behaviour?: Behaviour;
  /** ms before replying */
  delayMs?: number;
  /** reply to agent requests: returns the mcorpc reply body */
  handler?: (action: string, data: Record<string, unknown>) => Record<string, unknown>;
  /** like handler, but returns the reply body's JSON text as is (for bodies JSON.stringify cannot make) */
  rawHandler?: (action: string, data: Record<string, unknown>) => string;
}

export interface Responder {
  identity: string;
  /** raw request transports received, by subject */
  received: { subject: string; data: Uint8Array; request: Request; body: string }[];
  stop(): Promise<void>;
}

function defaultHandler(action: string, data: Record<string, unknown>): Record<string, unknown> {
  if (action === "fail") return { statuscode: 1, statusmsg: "failed on purpose", data: {} };
  return { statuscode: 0, statusmsg: "OK", data: { message: data.message } };
}

/**
 * A fake Choria server for one identity: verifies the caller token and request
 * signature, applies the filter, and answers discovery and testagent requests with
 * replies signed by its own server token (or broken ones, per `behaviour`).
 */
export async function startResponder(
  url: string,
  trust: Pick<TestTrust, "issuers"> & { org?: Issuer },
  o: ResponderOptions,
): Promise<Responder> {
  const nc = o.nc ?? (await connect({ servers: url }));
  let kp: Pick<KeyPair, "seedHex">;
  let token: string;
  if (o.credential) {
    kp = o.credential;
    token = o.credential.token;
  } else {
    const fresh = generateKeyPair();
    const tokenIdentity = o.behaviour === "wrong_identity_token" ? "someone.else" : o.identity;
    token = createServerToken(
      { identity: tokenIdentity, collectives: [COLLECTIVE], publicKeyHex: fresh.publicHex, validityS: 3600 },
      trust.org as Issuer,
    );
    kp = fresh;
  }
  const forger = generateKeyPair();
  const received: Responder["received"] = [];
  const agents = o.agents ?? ["discovery", "testagent", "rpcutil"];
  const node = { identity: o.identity, facts: o.facts ?? {}, classes: o.classes ?? [], agents };
  const handler = o.handler ?? defaultHandler;

  const onMessage = (subject: string, data: Uint8Array) => {
    const { inner, transport } = decodeTransport(data);
    const sr = decodeSecureRequest(inner);
    const claims = verifyToken(sr.secure.caller, trust.issuers) as { public_key: string };
    if (!verify(claims.public_key, sr.requestBytes, sr.signature)) return;
    const { request, message } = decodeRequest(sr.requestBytes);
    received.push({ subject, data, request, body: message.toString() });
    if (!matchFilter(request.filter, node)) return;
    let payload: string;
    if (request.agent === "discovery") {
      payload = "pong";
    } else {
      const body = JSON.parse(message.toString()) as { action: string; data: Record<string, unknown> };
      payload = o.rawHandler
        ? o.rawHandler(body.action, body.data)
        : JSON.stringify(handler(body.action, body.data));
    }
    const replyBytes = encodeReply({
      message: encodeMessage(payload),
      request: request.id,
      sender: o.identity,
      agent: request.agent,
      time: nowNanos(),
    });
    let secure: Buffer;
    switch (o.behaviour) {
      case "bad_hash": {
        const good = JSON.parse(
          encodeSecureReply(replyBytes, sign(kp.seedHex, replyBytes), token).toString(),
        );
        good.hash = Buffer.alloc(32).toString("base64");
        secure = Buffer.from(JSON.stringify(good));
        break;
      }
      case "forged_signature":
        secure = encodeSecureReply(replyBytes, sign(forger.seedHex, replyBytes), token);
        break;
      case "unsigned":
        secure = encodeSecureReply(replyBytes);
        break;
      default:
        secure = encodeSecureReply(replyBytes, sign(kp.seedHex, replyBytes), token);
    }
    const out = encodeTransport(secure, { sender: o.identity });
    const reply = transport.headers.reply as string;
    if (o.delayMs) setTimeout(() => nc.publish(reply, out), o.delayMs);
    else nc.publish(reply, out);
  };

  for (const subject of [
    directSubject(COLLECTIVE, o.identity),
    ...agents.map((a) => broadcastSubject(COLLECTIVE, a)),
  ]) {
    nc.subscribe(subject, {
      callback: (err, msg) => {
        if (!err) onMessage(subject, msg.data);
      },
    });
  }
  await nc.flush();
  return {
    identity: o.identity,
    received,
    async stop() {
      await nc.drain();
    },
  };
}

/**
 * A responder holding the credentials of a server config (a dev setup's): it connects
 * to the secure broker as that server (TLS, NATS JWT) and signs with its token, so its
 * replies pass --verify-replies.
 */
export async function startServerResponder(
  serverConfig: string,
  identity: string,
  o: Omit<ResponderOptions, "identity" | "nc" | "credential"> = {},
): Promise<Responder> {
  const s = serverSettings(loadConfig(serverConfig));
  const sec = new ChoriaSecurity({
    seedFile: s.seedFile,
    tokenFile: s.tokenFile,
    issuers: s.issuers,
    natsJwtFile: s.natsJwtFile,
    ...(s.caFile && { caFile: s.caFile }),
  });
  const nc = await connectNats({
    servers: s.middlewareHosts,
    name: identity,
    ...(s.caFile && { caFile: s.caFile }),
    ...(sec.natsJwt && { natsJwt: sec.natsJwt }),
    seedHex: sec.seedHex,
    reconnect: false,
  });
  return startResponder(
    "",
    { issuers: s.issuers },
    { ...o, identity, nc, credential: { seedHex: sec.seedHex, token: sec.token } },
  );
}

/** Records every message published under `<collective>.>` except replies. */
export async function startSniffer(
  url: string,
): Promise<{ subjects: string[]; nc: NatsConnection; stop(): Promise<void> }> {
  const nc = await connect({ servers: url });
  const subjects: string[] = [];
  nc.subscribe(`${COLLECTIVE}.>`, {
    callback: (err, msg) => {
      if (!err && !msg.subject.startsWith(`${COLLECTIVE}.reply.`)) subjects.push(msg.subject);
    },
  });
  await nc.flush();
  return { subjects, nc, stop: () => nc.drain() };
}
