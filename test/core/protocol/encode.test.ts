import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  decodeSecureReply,
  emptyFilter,
  encodeMessage,
  encodeReply,
  encodeRequest,
  encodeSecureReply,
  encodeSecureRequest,
  encodeTransport,
  type Filter,
} from "../../../src/core/protocol/index.js";
import { validators } from "../../../src/core/protocol/schemas.js";

const text = (b: Uint8Array) => Buffer.from(b).toString("utf8");
const json = (b: Uint8Array): unknown => JSON.parse(text(b));

const baseRequest = {
  message: "cGluZw==",
  id: "2Bf6hV5oZzT8yYvFq0sD3kLmN1p",
  sender: "client.example.net",
  caller: "choria=rip.mcollective",
  collective: "choria",
  agent: "discovery",
  ttl: 60,
  time: 1700000000123456800,
};

describe("encodeRequest", () => {
  it("writes go-choria's field order without a filter when none is given", () => {
    expect(text(encodeRequest(baseRequest))).toBe(
      '{"protocol":"io.choria.protocol.v2.request","message":"cGluZw==","id":"2Bf6hV5oZzT8yYvFq0sD3kLmN1p",' +
        '"sender":"client.example.net","caller":"choria=rip.mcollective","collective":"choria","agent":"discovery",' +
        '"ttl":60,"time":1700000000123456800}',
    );
  });

  it("writes an empty filter with all five lists", () => {
    expect(text(encodeRequest({ ...baseRequest, filter: emptyFilter() }))).toBe(
      '{"protocol":"io.choria.protocol.v2.request","message":"cGluZw==","id":"2Bf6hV5oZzT8yYvFq0sD3kLmN1p",' +
        '"sender":"client.example.net","caller":"choria=rip.mcollective","collective":"choria","agent":"discovery",' +
        '"ttl":60,"time":1700000000123456800,' +
        '"filter":{"fact":[],"cf_class":[],"agent":[],"identity":[],"compound":[]}}',
    );
  });

  it("writes a populated filter in struct order, compound maps with sorted keys", () => {
    const filter: Filter = {
      fact: [{ fact: "os.family", operator: "==", value: "Debian" }],
      cf_class: ["apache", "/^web/"],
      agent: ["rpcutil"],
      identity: ["n1.example.net"],
      compound: [[{ zeta: "1", expr: "with('x')" } as unknown as { expr: string }]],
    };
    const out = text(encodeRequest({ ...baseRequest, filter }));
    expect(out.slice(out.indexOf('"filter"'))).toBe(
      '"filter":{"fact":[{"fact":"os.family","operator":"==","value":"Debian"}],' +
        '"cf_class":["apache","/^web/"],"agent":["rpcutil"],"identity":["n1.example.net"],' +
        '"compound":[[{"expr":"with(\'x\')","zeta":"1"}]]}}',
    );
  });

  it("escapes strings the way Go's encoding/json does", () => {
    const out = text(encodeRequest({ ...baseRequest, sender: 'a<b>&c"d\\e\n\u0001\u2028\u2029é' }));
    expect(out).toContain('"sender":"a\\u003cb\\u003e\\u0026c\\"d\\\\e\\n\\u0001\\u2028\\u2029é"');
  });

  it("replaces lone surrogates with U+FFFD as a Go UTF-8 string would", () => {
    const out = text(encodeRequest({ ...baseRequest, sender: "x\ud800y" }));
    expect(out).toContain('"sender":"x\ufffdy"');
  });

  it("refuses non-integer ttl and time", () => {
    // the schema check runs first and names the field
    expect(() => encodeRequest({ ...baseRequest, ttl: 1.5 })).toThrow(/\/ttl must be integer/);
    expect(() => encodeRequest({ ...baseRequest, time: Number.NaN })).toThrow(/\/time must be integer/);
  });

  it("produces a document that passes the request schema", () => {
    const doc = json(encodeRequest({ ...baseRequest, filter: emptyFilter() }));
    expect(validators.request(doc), JSON.stringify(validators.request.errors)).toBe(true);
  });
});

describe("encodeSecureRequest", () => {
  const req = Buffer.from('{"x":1}');
  const sig = Uint8Array.from([1, 2, 3]);

  it("writes protocol, request, signature, caller and omits an absent signer", () => {
    expect(text(encodeSecureRequest(req, sig, "caller.jwt"))).toBe(
      '{"protocol":"io.choria.protocol.v2.secure_request","request":"eyJ4IjoxfQ==","signature":"AQID","caller":"caller.jwt"}',
    );
  });

  it("adds signer last when delegated", () => {
    expect(text(encodeSecureRequest(req, sig, "caller.jwt", "signer.jwt"))).toBe(
      '{"protocol":"io.choria.protocol.v2.secure_request","request":"eyJ4IjoxfQ==","signature":"AQID","caller":"caller.jwt","signer":"signer.jwt"}',
    );
  });

  it("omits an empty signer like Go's omitempty", () => {
    expect(text(encodeSecureRequest(req, sig, "c", ""))).not.toContain("signer");
  });

  it("encodes only the viewed bytes of a subarray", () => {
    const big = Buffer.from('xx{"x":1}yy');
    expect(text(encodeSecureRequest(big.subarray(2, 9), sig, "c"))).toContain('"request":"eyJ4IjoxfQ=="');
  });

  it("passes the secure_request schema", () => {
    const doc = json(encodeSecureRequest(req, sig, "caller.jwt", "signer.jwt"));
    expect(validators.secureRequest(doc)).toBe(true);
  });
});

describe("encodeReply", () => {
  it("writes protocol, message, request, sender, agent, time", () => {
    const out = encodeReply({
      message: "e30=",
      request: "2Bf6hV5oZzT8yYvFq0sD3kLmN1p",
      sender: "n1.example.net",
      agent: "rpcutil",
      time: 1700000000000000000,
    });
    expect(text(out)).toBe(
      '{"protocol":"io.choria.protocol.v2.reply","message":"e30=","request":"2Bf6hV5oZzT8yYvFq0sD3kLmN1p",' +
        '"sender":"n1.example.net","agent":"rpcutil","time":1700000000000000000}',
    );
    expect(validators.reply(json(out))).toBe(true);
  });
});

describe("encodeSecureReply", () => {
  const reply = Buffer.from('{"r":true}');
  const hash = createHash("sha256").update('{"r":true}').digest("base64");

  it("writes protocol, reply, hash and omits empty signature and sender", () => {
    expect(text(encodeSecureReply(reply))).toBe(
      `{"protocol":"io.choria.protocol.v2.secure_reply","reply":"eyJyIjp0cnVlfQ==","hash":"${hash}"}`,
    );
    expect(text(encodeSecureReply(reply, new Uint8Array(0), ""))).toBe(
      `{"protocol":"io.choria.protocol.v2.secure_reply","reply":"eyJyIjp0cnVlfQ==","hash":"${hash}"}`,
    );
  });

  it("adds signature then sender when signing replies", () => {
    const out = encodeSecureReply(reply, Uint8Array.from([255, 254]), "server.jwt");
    expect(text(out)).toBe(
      `{"protocol":"io.choria.protocol.v2.secure_reply","reply":"eyJyIjp0cnVlfQ==","hash":"${hash}","signature":"//4=","sender":"server.jwt"}`,
    );
    expect(validators.secureReply(json(out))).toBe(true);
  });

  it("computes a hash the decoder accepts", () => {
    expect(decodeSecureReply(encodeSecureReply(reply)).hashOk).toBe(true);
  });
});

describe("encodeTransport", () => {
  const inner = Buffer.from("{}");

  it("always writes headers, even when empty", () => {
    expect(text(encodeTransport(inner, {}))).toBe(
      '{"protocol":"io.choria.protocol.v2.transport","data":"e30=","headers":{}}',
    );
  });

  it("writes headers in struct order: reply, sender, trace, federation", () => {
    const out = encodeTransport(inner, {
      federation: { targets: ["choria.node.n1"], reply: "r.orig", request: "ID1" },
      trace: [
        ["", "client", "nats1"],
        ["nats1", "fed", "nats2"],
      ],
      sender: "client",
      reply: "choria.reply.abc.ID1",
    });
    expect(text(out)).toBe(
      '{"protocol":"io.choria.protocol.v2.transport","data":"e30=","headers":{"reply":"choria.reply.abc.ID1",' +
        '"sender":"client","trace":[["","client","nats1"],["nats1","fed","nats2"]],' +
        '"federation":{"request":"ID1","reply":"r.orig","targets":["choria.node.n1"]}}}',
    );
    expect(validators.transport(json(out))).toBe(true);
  });

  it("omits empty header values and keeps an empty federation object", () => {
    expect(
      text(encodeTransport(inner, { reply: "", sender: "", trace: [], federation: { targets: [] } })),
    ).toBe('{"protocol":"io.choria.protocol.v2.transport","data":"e30=","headers":{"federation":{}}}');
  });
});

describe("encodeMessage", () => {
  it("base64s strings as UTF-8 and bytes as is", () => {
    expect(encodeMessage("ping")).toBe("cGluZw==");
    expect(encodeMessage("é")).toBe("w6k=");
    expect(encodeMessage(Uint8Array.from([0, 255]))).toBe("AP8=");
  });
});
