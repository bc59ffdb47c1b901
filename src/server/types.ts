import type { AgentDDL } from "../core/ddl/index.js";
import { StatusCode, type Filter } from "../core/protocol/index.js";
import type { ClientClaims } from "../core/security/index.js";
import type { NodeRuntime } from "./node.js";

/** What an action handler learns about the request it serves. */
export interface ActionRequest {
  agent: string;
  action: string;
  /** Request inputs after DDL validation, with DDL defaults filled in. */
  data: Record<string, unknown>;
  /** The caller id from the request, e.g. `choria=alice`. */
  caller: string;
  /** Verified claims of the caller's JWT. */
  callerClaims: ClientClaims;
  requestId: string;
  /** The sender field of the request (usually the client's identity). */
  sender: string;
  collective: string;
  ttl: number;
  /** Request creation time, unix nanoseconds. */
  time: number;
  /** The node answering; read its identity, facts, stats... */
  node: NodeRuntime;
  /** Aborted when the DDL timeout passes: no reply will be sent after that. */
  signal: AbortSignal;
}

/** The reply an action builds; starts as `OK` with empty data, as in Choria. */
export class ActionReply {
  statuscode: StatusCode = StatusCode.OK;
  statusmsg = "OK";
  data: Record<string, unknown> = {};

  /** Marks the reply failed; the default code is Aborted, Choria's choice for agent failures. */
  fail(message: string, code: StatusCode = StatusCode.Aborted): void {
    this.statuscode = code;
    this.statusmsg = message;
  }
}

/**
 * Handles one action. It may fill `reply.data` or return an object that is merged
 * into it; throwing gives the caller status 5 (UnknownError) with the message.
 */
export type AgentHandler = (
  req: ActionRequest,
  reply: ActionReply,
) => Promise<void | Record<string, unknown>> | void | Record<string, unknown>;

/**
 * A raw agent sees the payload bytes instead of an mcorpc body and answers with raw
 * bytes (Choria's discovery agent: "ping" in, "pong" out). Undefined sends nothing.
 */
export type RawAgentHandler = (
  message: Buffer,
  req: Omit<ActionRequest, "action" | "data">,
) => Promise<Uint8Array | string | undefined> | Uint8Array | string | undefined;

/** An agent as a node hosts it. */
export interface AgentDefinition {
  ddl: AgentDDL;
  actions: Record<string, AgentHandler>;
  raw?: RawAgentHandler;
  /** false skips the authorization hook (Choria's discovery agent is never authorized). */
  authorize: boolean;
}

/** An authorizer's answer with why, for the audit line. */
export interface AuthzDecision {
  allowed: boolean;
  reason: string;
}

/** Decides whether a validated request may run (a bare boolean is audited with a generic reason). */
export interface Authorizer {
  authorize(req: {
    agent: string;
    action: string;
    caller: string;
    callerClaims: ClientClaims;
    collective: string;
    data: Record<string, unknown>;
    node: NodeRuntime;
    /** The request's sender, ttl, time (unix nanoseconds) and filter, for claim policies. */
    sender?: string;
    ttl?: number;
    time?: number;
    filter?: Filter | undefined;
  }): boolean | AuthzDecision | Promise<boolean | AuthzDecision>;
  /** Drops cached policy so the next request re-reads it (Server.reloadAgents, SIGHUP). */
  reload?(): void;
}

/**
 * Every verified caller may call every action: the authorizer when none is given, and
 * with `rpcauthorization = false` (a config otherwise gets action_policy).
 */
export const allowAll: Authorizer = { authorize: () => true };

/**
 * Facts about the hosting process, shared by every node in it, for rpcutil and
 * choria_util. Functions so values like the connected broker are read live.
 */
export interface HostInfo {
  version: string;
  /** Process (or server) start, unix ms. */
  startTime: number;
  configFile?: string;
  securityProvider: string;
  middlewareServers: string[];
  connectorTls: boolean;
  connectedServer(): string;
  connectionStats(): Record<string, number>;
  /** A configuration value by its Choria key, for rpcutil#get_config_item. */
  configItem(key: string): string | undefined;
}

/** The key material a node answers with: its server JWT and a signer for reply bytes. */
export interface NodeCredential {
  token: string;
  sign(data: Uint8Array): Uint8Array;
}

/** A reply ready to publish. */
export interface NodeReply {
  subject: string;
  data: Uint8Array;
}
