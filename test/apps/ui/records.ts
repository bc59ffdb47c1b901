// Test data for the console's audit view: records as the AAA signer writes them.
import { encodeMessage } from "../../../src/core/protocol/index.js";

/** One io.choria.signer.v1.signature_audit record, encoded as the JetStream auditor stores it. */
export function auditRecord(
  caller: string,
  agent: string,
  action: string,
  decision: "allow" | "deny",
  extra: Record<string, unknown> = {},
): Uint8Array {
  const r = {
    protocol: "io.choria.signer.v1.signature_audit",
    callerid: caller,
    action: decision,
    site: "lab",
    time: 1_700_000_000,
    request: {
      protocol: "io.choria.protocol.v2.request",
      message: encodeMessage(JSON.stringify({ agent, action, data: {} })),
      id: `req-${caller}-${agent}-${action}`,
      sender: "console.example",
      caller,
      collective: "mcollective",
      agent,
      ttl: 60,
      time: 1_700_000_000_000_000_000,
      filter: { fact: [{ fact: "role", operator: "==", value: "db" }], identity: ["web1"], agent: [agent] },
    },
    reason: decision === "allow" ? "allowed by acl rpcutil.*" : "no acl allows it",
    ...extra,
  };
  return new TextEncoder().encode(JSON.stringify(r));
}
