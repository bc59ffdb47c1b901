import { describe, expect, it } from "vitest";
import { decodeTransport, encodeTransport, MAX_MESSAGE_BYTES } from "../../../src/core/protocol/index.js";
import { BadMessage, transformReply, transformRequest } from "../../../src/services/federation/index.js";

const HOP = { incoming: "nats://f:1", processor: "fed-1 (…)", outgoing: "nats://c:2" };
const INBOX = `mcollective.reply.${"ab".repeat(16)}.1234`;
const inner = Buffer.from(JSON.stringify({ signed: "bytes", pad: "x".repeat(500) }));
const enc = new TextEncoder();

function request(headers: Record<string, unknown>): Uint8Array {
  const base = encodeTransport(inner, { reply: INBOX, sender: "client.example" });
  const doc = JSON.parse(Buffer.from(base).toString()) as { headers: Record<string, unknown> };
  doc.headers = { ...doc.headers, ...headers };
  return enc.encode(JSON.stringify(doc));
}

function reasonOf(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(BadMessage);
    return `${(err as BadMessage).reason}: ${(err as Error).message}`;
  }
  return "accepted";
}

describe("federation transforms", () => {
  it("request then reply: same inner bytes, schema-valid transports, headers and hops as go-choria", () => {
    const fed = {
      request: "r1",
      targets: ["mcollective.node.n1.example.net", "east.broadcast.agent.rpcutil"],
    };
    const trace = [["nats://f:1", "client.example", "nats://f:1"]];
    const f = transformRequest(request({ federation: fed, trace }), "east", HOP);
    expect(f.subjects).toEqual(fed.targets);
    expect(f.requestId).toBe("r1");
    const out = decodeTransport(f.data); // strict: the schema
    expect(out.inner.equals(inner)).toBe(true);
    expect(out.transport.headers).toEqual({
      reply: "choria.federation.east.collective",
      sender: "client.example",
      trace: [...trace, [HOP.incoming, HOP.processor, HOP.outgoing]],
      federation: { request: "r1", reply: INBOX },
    });
    // the node copies the federation headers into its reply
    const reply = encodeTransport(inner, { sender: "n1.example.net", ...out.transport.headers });
    const r = transformReply(reply, HOP);
    expect(r.subjects).toEqual([INBOX]);
    const back = decodeTransport(r.data);
    expect(back.inner.equals(inner)).toBe(true);
    expect(back.transport.headers.federation).toBeUndefined();
    expect(back.transport.headers.trace).toHaveLength(3);
  });

  it("bad fields are dropped with a reason, never forwarded", () => {
    const ok = { request: "r1", targets: ["c.node.n1"] };
    const cases: [Uint8Array, RegExp][] = [
      [enc.encode("nope"), /^malformed: not a Choria transport/],
      [enc.encode("[]"), /^malformed: .*not a JSON object/],
      [enc.encode('{"protocol":"x","data":""}'), /^malformed: .*protocol is not io\.choria/],
      [
        enc.encode('{"protocol":"io.choria.protocol.v2.transport","data":"@@@@"}'),
        /^malformed: transport data is not base64/,
      ],
      [
        enc.encode('{"protocol":"io.choria.protocol.v2.transport","data":"","headers":[]}'),
        /^malformed: transport headers/,
      ],
      [new Uint8Array(MAX_MESSAGE_BYTES + 1), /^malformed: transport of \d+ bytes exceeds/],
      [request({}), /^not_federated: /],
      [request({ federation: "x" }), /^malformed: transport header federation is/],
      [request({ federation: { ...ok, targets: [["c.node.n1"]] } }), /^malformed: .*federation\.targets/],
      [request({ federation: { ...ok, request: 5 } }), /^malformed: .*federation\.request/],
      [request({ federation: { request: "r1" } }), /^no_targets: /],
      [request({ federation: { ...ok, targets: ["c.node.>"] } }), /^bad_target: /],
      [request({ federation: { ...ok, targets: ["$SYS.REQ.x"] } }), /^bad_target: /],
      [request({ federation: ok, reply: "" }), /^no_reply: /],
      [request({ federation: ok, reply: "c.node.x" }), /^bad_reply: /],
      [request({ federation: ok, reply: ["x"] }), /^bad_reply: /],
      [request({ federation: ok, trace: "x" }), /^malformed: /],
      [request({ federation: ok, trace: [["a", "b"]] }), /^malformed: transport header trace/],
      [request({ federation: ok, sender: 7 }), /^malformed: transport header sender/],
    ];
    for (const [data, want] of cases)
      expect(
        reasonOf(() => transformRequest(data, "east", HOP)),
        want.source,
      ).toMatch(want);
    const replyCases: [Uint8Array, RegExp][] = [
      [request({ reply: "choria.federation.east.collective" }), /^not_federated: /],
      [request({ federation: { request: "r1" } }), /^no_reply: /],
      [request({ federation: { request: "r1", reply: "c.node.x" } }), /^bad_reply: /],
      [request({ federation: { request: "r1", reply: 3 } }), /^malformed: .*federation\.reply/],
    ];
    for (const [data, want] of replyCases)
      expect(
        reasonOf(() => transformReply(data, HOP)),
        want.source,
      ).toMatch(want);
  });
});
