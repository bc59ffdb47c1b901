import type { AgentDDL } from "../../core/ddl/index.js";
import { StatusCode } from "../../core/protocol/index.js";
import type { AgentRegistry } from "../registry.js";
import type { RawAgentHandler } from "../types.js";
import { CHORUS_VERSION } from "../../core/util/index.js";

/** Choria ships no DDL for discovery (it is compiled in); this one describes what it does. */
export const DISCOVERY_DDL: AgentDDL = {
  metadata: {
    name: "discovery",
    description: "Answers broadcast discovery pings",
    author: "Chorus",
    license: "Apache-2.0",
    version: CHORUS_VERSION,
    url: "https://choria.io/",
    timeout: 2,
  },
  actions: [
    {
      action: "ping",
      description: "Replies pong so the caller learns this node matched its filter",
      display: "always",
      input: {},
      output: { message: { description: "Always pong", display_as: "Message", type: "string" } },
    },
  ],
};

/**
 * Choria's discovery agent is raw: the payload is the word "ping" (the client sends
 * base64("ping"), which the protocol layer unwraps) and the answer is "pong"; the
 * client only reads the reply's sender. An mcorpc style `{"action":"ping"}` body
 * gets an mcorpc reply too, for clients that treat discovery as a normal agent.
 */
export const discoveryHandler: RawAgentHandler = (message) => {
  const text = message.toString("utf8").trim();
  if (text === "ping") return "pong";
  if (text.startsWith("{")) {
    try {
      const body = JSON.parse(text) as { action?: unknown };
      if (body.action === "ping") {
        return JSON.stringify({
          action: "ping",
          statuscode: StatusCode.OK,
          statusmsg: "OK",
          data: { message: "pong" },
        });
      }
    } catch {
      // not JSON after all: no answer, like Choria
    }
  }
  return undefined;
};

export function registerDiscovery(registry: AgentRegistry): void {
  // Never authorized in Choria: discovery reveals only that the node exists.
  registry.registerRaw(DISCOVERY_DDL, discoveryHandler, { authorize: false, replace: true });
}
