import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import type { AgentDDL } from "../../src/core/ddl/index.js";
import {
  decodeReply,
  decodeSecureReply,
  decodeTransport,
  encodeMessage,
  encodeRequest,
  encodeSecureRequest,
  encodeTransport,
  newRequestId,
  nowNanos,
  replySubject,
  type Filter,
  type RpcReplyBody,
} from "../../src/core/protocol/index.js";
import {
  ChoriaSecurity,
  createClientToken,
  createServerToken,
  generateKeyPair,
  orgIssuer,
  sign,
  writeSeedFile,
  type ClientPermissions,
  type Issuer,
  type KeyPair,
} from "../../src/core/security/index.js";

export const COLLECTIVE = "mcollective";
export const quietLogger = pino({ level: "silent" });

/** A caller able to sign requests: its seed, token and callerid. */
export interface Caller {
  kp: KeyPair;
  token: string;
  callerid: string;
}

export interface Fixture {
  dir: string;
  orgKp: KeyPair;
  org: Issuer;
  issuers: string[];
  client: Caller;
  /** ChoriaSecurity for the client (verifies server tokens in replies). */
  clientSecurity: ChoriaSecurity;
  caller(opts?: { callerid?: string; permissions?: ClientPermissions; issuer?: Issuer }): Caller;
  /** Seed + server token files for `identity`, loaded as ChoriaSecurity. */
  serverSecurity(identity: string, collectives?: string[]): ChoriaSecurity;
  cleanup(): void;
}

export function makeFixture(): Fixture {
  const dir = mkdtempSync(join(tmpdir(), "chorus-server-test-"));
  const orgKp = generateKeyPair();
  const org = orgIssuer(orgKp);
  const caller: Fixture["caller"] = (o = {}) => {
    const kp = generateKeyPair();
    const callerid = o.callerid ?? "choria=tester";
    const token = createClientToken(
      {
        callerid,
        publicKeyHex: kp.publicHex,
        validityS: 3600,
        permissions: o.permissions ?? { fleet_management: true },
      },
      o.issuer ?? org,
    );
    return { kp, token, callerid };
  };
  const client = caller();
  writeSeedFile(join(dir, "client.seed"), client.kp);
  writeFileSync(join(dir, "client.jwt"), client.token);
  const clientSecurity = new ChoriaSecurity({
    seedFile: join(dir, "client.seed"),
    tokenFile: join(dir, "client.jwt"),
    issuers: [orgKp.publicHex],
  });
  return {
    dir,
    orgKp,
    org,
    issuers: [orgKp.publicHex],
    client,
    clientSecurity,
    caller,
    serverSecurity(identity, collectives = [COLLECTIVE]) {
      const kp = generateKeyPair();
      const token = createServerToken(
        { identity, collectives, publicKeyHex: kp.publicHex, validityS: 3600 },
        org,
      );
      writeSeedFile(join(dir, `${identity}.seed`), kp);
      writeFileSync(join(dir, `${identity}.jwt`), token);
      return new ChoriaSecurity({
        seedFile: join(dir, `${identity}.seed`),
        tokenFile: join(dir, `${identity}.jwt`),
        issuers: [orgKp.publicHex],
      });
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** A JWT with arbitrary claims signed by `seedHex` (for expired and odd tokens). */
export function rawToken(claims: Record<string, unknown>, seedHex: string): string {
  const b64url = (s: string | Uint8Array) => Buffer.from(s).toString("base64url");
  const input = `${b64url(JSON.stringify({ alg: "EdDSA", typ: "JWT" }))}.${b64url(JSON.stringify(claims))}`;
  return `${input}.${b64url(sign(seedHex, Buffer.from(input)))}`;
}

export interface RequestSpec {
  caller: Caller;
  agent: string;
  /** mcorpc body, or a raw payload string */
  body: { action: string; data?: Record<string, unknown> } | string;
  collective?: string;
  filter?: Filter;
  ttl?: number;
  time?: number;
  id?: string;
  /** request.caller; default the caller's callerid */
  callerField?: string;
  /** sign with this seed instead of the caller's */
  signWith?: string;
  replyTo?: string;
}

export interface BuiltRequest {
  bytes: Buffer;
  id: string;
  replyTo: string;
}

/** A signed v2 request transport, as a Choria client would publish it. */
export function buildRequest(s: RequestSpec): BuiltRequest {
  const collective = s.collective ?? COLLECTIVE;
  const id = s.id ?? newRequestId();
  const callerField = s.callerField ?? s.caller.callerid;
  const payload =
    typeof s.body === "string"
      ? s.body
      : JSON.stringify({ agent: s.agent, ...s.body, data: s.body.data ?? {} });
  const requestBytes = encodeRequest({
    message: encodeMessage(payload),
    id,
    sender: "tester.example",
    caller: callerField,
    collective,
    agent: s.agent,
    ttl: s.ttl ?? 60,
    time: s.time ?? nowNanos(),
    ...(s.filter && { filter: s.filter }),
  });
  const signature = sign(s.signWith ?? s.caller.kp.seedHex, requestBytes);
  const secure = encodeSecureRequest(requestBytes, signature, s.caller.token);
  const replyTo = s.replyTo ?? replySubject(collective, callerField, id);
  return { bytes: encodeTransport(secure, { reply: replyTo, sender: "tester.example" }), id, replyTo };
}

export interface ParsedReply {
  sender: string;
  requestId: string;
  agent: string;
  hashOk: boolean;
  signature?: Buffer;
  senderJwt?: string;
  replyBytes: Buffer;
  transportSender?: string;
  message: Buffer;
  body?: RpcReplyBody;
}

/** Unwraps a reply transport down to the mcorpc body (when the payload is JSON). */
export function parseReply(bytes: Uint8Array): ParsedReply {
  const { transport, inner } = decodeTransport(bytes);
  const sr = decodeSecureReply(inner);
  const { reply, message } = decodeReply(sr.replyBytes);
  let body: RpcReplyBody | undefined;
  try {
    body = JSON.parse(message.toString()) as RpcReplyBody;
  } catch {
    body = undefined;
  }
  return {
    sender: reply.sender,
    requestId: reply.request,
    agent: reply.agent,
    hashOk: sr.hashOk,
    ...(sr.signature && { signature: sr.signature }),
    ...(sr.secure.sender && { senderJwt: sr.secure.sender }),
    replyBytes: sr.replyBytes,
    ...(transport.headers.sender && { transportSender: transport.headers.sender }),
    message,
    ...(body && { body }),
  };
}

/** A small agent: echo, a thrower and a slow action (timeout 1 s). */
export const TEST_DDL: AgentDDL = {
  metadata: {
    name: "testagent",
    description: "test agent",
    author: "tests",
    license: "Apache-2.0",
    version: "1.0.0",
    url: "https://example.invalid",
    timeout: 1,
  },
  actions: [
    {
      action: "echo",
      description: "echo",
      input: {
        message: {
          prompt: "Message",
          description: "what to echo",
          type: "string",
          optional: false,
          validation: "^[a-z ]+$",
          maxlength: 64,
        },
        count: { prompt: "Count", description: "a number", type: "integer", optional: true, default: 1 },
      },
      output: {
        message: { description: "the message", display_as: "Message" },
        extra: { description: "defaulted", display_as: "Extra", default: "dflt" },
      },
    },
    { action: "boom", description: "throws", input: {}, output: {} },
    { action: "slow", description: "takes too long", input: {}, output: {} },
    { action: "undeclared_handler", description: "in the DDL, no handler", input: {}, output: {} },
  ],
};

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A server config in `cfgDir` for `identity` (credentials from fx.serverSecurity), with
 * rpcaudit to `auditLog` (relative to cfgDir) and a `policies/rpcutil.policy` that
 * lets only choria=tester in. `extra` lines are appended. Returns the config path.
 */
export function auditedServerConfig(
  fx: Fixture,
  cfgDir: string,
  identity: string,
  natsUrl: string,
  auditLog: string,
  extra: string[] = [],
): string {
  mkdirSync(join(cfgDir, "policies"), { recursive: true });
  writeFileSync(
    join(cfgDir, "policies", "rpcutil.policy"),
    ["policy default deny", "allow\tchoria=tester\t*\t*\t*", ""].join("\n"),
  );
  const conf = join(cfgDir, "server.conf");
  writeFileSync(
    conf,
    [
      `identity = ${identity}`,
      `collectives = ${COLLECTIVE}`,
      `plugin.choria.middleware_hosts = ${natsUrl}`,
      `plugin.security.choria.seed_file = ${join(fx.dir, `${identity}.seed`)}`,
      `plugin.security.choria.token_file = ${join(fx.dir, `${identity}.jwt`)}`,
      "plugin.security.issuer.names = dev",
      `plugin.security.issuer.dev.public = ${fx.orgKp.publicHex}`,
      "rpcaudit = 1",
      `plugin.rpcaudit.logfile = ${auditLog}`,
      ...extra,
    ].join("\n"),
  );
  return conf;
}
