import { describe, expect, it } from "vitest";
import {
  PROTOCOL_V1,
  decodeAnyTransport,
  decodeReplyV1,
  decodeRequestV1,
  decodeSecureReplyV1,
  decodeSecureRequestV1,
  emptyFilter,
  encodeReplyV1,
  encodeRequestV1,
  encodeSecureReplyV1,
  encodeSecureRequestV1,
  encodeTransport,
  encodeTransportV1,
  newRequestIdV1,
  protocolVersion,
  ProtocolError,
} from "../../../src/core/protocol/index.js";

const id = newRequestIdV1();
const body = '{"agent":"rpcutil","action":"ping","data":{}}';

function request(over: Partial<Parameters<typeof encodeRequestV1>[0]> = {}) {
  return encodeRequestV1({
    message: body,
    requestid: id,
    senderid: "client.example",
    callerid: "choria=alice.mcollective",
    collective: "mcollective",
    agent: "rpcutil",
    ttl: 60,
    time: 1_700_000_000,
    filter: { ...emptyFilter(), identity: ["node1"] },
    ...over,
  });
}

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ProtocolError);
    return (err as ProtocolError).code;
  }
  return "no error";
}

describe("protocol v1 codec", () => {
  it("writes go-choria's field order with the payload as a raw string and time in seconds", () => {
    const r = request().toString();
    expect(r).toBe(
      `{"protocol":"choria:request:1","message":${JSON.stringify(body)},"envelope":{"requestid":"${id}",` +
        `"senderid":"client.example","callerid":"choria=alice.mcollective","collective":"mcollective",` +
        `"agent":"rpcutil","ttl":60,"time":1700000000,"filter":{"fact":[],"cf_class":[],"agent":[],` +
        `"identity":["node1"],"compound":[]}}}`,
    );
    expect(id).toMatch(/^[0-9a-f]{32}$/);
  });

  it("round-trips every layer and normalises v1 names to the shapes the server reads", () => {
    const req = request();
    const secure = encodeSecureRequestV1(req, Buffer.from("sig"), "PEM");
    const t = encodeTransportV1(secure, {
      reply: "mcollective.reply.abc.1",
      sender: "client.example",
      trace: [["a", "b", "c"]],
      federation: { request: id, reply: "x.reply", targets: ["mcollective.node.n1"] },
    });
    expect(protocolVersion(t)).toBe(PROTOCOL_V1.transport);
    expect(JSON.parse(t.toString()).headers).toEqual({
      "reply-to": "mcollective.reply.abc.1",
      mc_sender: "client.example",
      "seen-by": [["a", "b", "c"]],
      federation: { req: id, "reply-to": "x.reply", target: ["mcollective.node.n1"] },
    });
    const any = decodeAnyTransport(t);
    expect(any.version).toBe(1);
    expect(any.transport.headers).toEqual({
      reply: "mcollective.reply.abc.1",
      sender: "client.example",
      trace: [["a", "b", "c"]],
      federation: { request: id, reply: "x.reply", targets: ["mcollective.node.n1"] },
    });
    const s = decodeSecureRequestV1(any.inner);
    expect(s.secure.pubcert).toBe("PEM");
    expect(s.signature.toString()).toBe("sig");
    expect(s.requestBytes.equals(req)).toBe(true);
    const d = decodeRequestV1(s.requestBytes);
    expect(d.message.toString()).toBe(body);
    expect(d.request).toMatchObject({
      id,
      sender: "client.example",
      caller: "choria=alice.mcollective",
      time: 1_700_000_000e9,
      ttl: 60,
    });

    const reply = encodeReplyV1({
      message: '{"statuscode":0}',
      requestid: id,
      senderid: "n1",
      agent: "rpcutil",
      time: 5,
    });
    const sr = encodeSecureReplyV1(reply);
    const rt = decodeAnyTransport(encodeTransportV1(sr, { sender: "n1" }), { strict: false });
    const opened = decodeSecureReplyV1(rt.inner, { strict: false });
    expect(opened.hashOk).toBe(true);
    const r = decodeReplyV1(opened.replyBytes, { strict: false });
    expect(r.reply).toMatchObject({ request: id, sender: "n1", agent: "rpcutil", time: 5e9 });
    expect(r.message.toString()).toBe('{"statuscode":0}');
  });

  it("detects a tampered reply body by its hash", () => {
    const reply = encodeReplyV1({ message: "{}", requestid: id, senderid: "n1", agent: "a", time: 5 });
    const doc = JSON.parse(encodeSecureReplyV1(reply).toString());
    doc.message = doc.message.replace('"n1"', '"n2"');
    expect(decodeSecureReplyV1(Buffer.from(JSON.stringify(doc))).hashOk).toBe(false);
  });

  it("still reads v2 transports and refuses what is neither", () => {
    const v2 = encodeTransport(Buffer.from("{}"), { reply: "r" });
    expect(decodeAnyTransport(v2).version).toBe(2);
    expect(code(() => decodeAnyTransport(Buffer.from('{"protocol":"choria:secure:request:1"}')))).toBe(
      "protocol",
    );
    expect(code(() => decodeAnyTransport(Buffer.from("nope")))).toBe("malformed");
  });

  it("refuses invalid v1 documents with a reason", () => {
    expect(() => request({ requestid: "short" })).toThrow(/schema/);
    expect(() => request({ ttl: 10 })).toThrow(/ttl|minimum/);
    const secure = JSON.parse(encodeSecureRequestV1(request(), Buffer.from("s"), "PEM").toString());
    secure.signature = "insecure registration";
    expect(code(() => decodeSecureRequestV1(Buffer.from(JSON.stringify(secure))))).toBe("malformed");
    delete secure.pubcert;
    expect(code(() => decodeSecureRequestV1(Buffer.from(JSON.stringify(secure))))).toBe("schema");
    expect(code(() => decodeRequestV1(Buffer.from('{"protocol":"choria:request:1","message":"x"}')))).toBe(
      "schema",
    );
  });
});
