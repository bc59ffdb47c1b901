import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  MAX_MESSAGE_BYTES,
  ProtocolError,
  ChorusError,
  decodeReply,
  decodeRequest,
  decodeSecureReply,
  decodeSecureRequest,
  decodeTransport,
  emptyFilter,
  encodeMessage,
  encodeReply,
  encodeRequest,
  encodeSecureReply,
  encodeSecureRequest,
  encodeTransport,
  type Request,
} from "../../../src/core/protocol/index.js";

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ProtocolError);
    expect(err).toBeInstanceOf(ChorusError);
    return (err as ProtocolError).code;
  }
  return undefined;
}

const b = (s: string) => Buffer.from(s, "utf8");

const req: Omit<Request, "protocol"> = {
  message: encodeMessage('{"agent":"rpcutil","action":"ping","data":{}}'),
  id: "2Bf6hV5oZzT8yYvFq0sD3kLmN1p",
  sender: "client",
  caller: "choria=rip",
  collective: "choria",
  agent: "rpcutil",
  ttl: 60,
  time: 1700000000000000000,
  filter: {
    fact: [{ fact: "country", operator: "==", value: "mt" }],
    cf_class: [],
    agent: ["rpcutil"],
    identity: [],
    compound: [],
  },
};

describe("round trips through all layers", () => {
  it("request path: transport -> secure request -> request -> body", () => {
    const reqBytes = encodeRequest(req);
    const sig = Buffer.from("a signature of 64 bytes would go here............................");
    const wire = encodeTransport(encodeSecureRequest(reqBytes, sig, "caller.jwt", "signer.jwt"), {
      reply: "choria.reply.x.y",
      sender: "client",
    });

    const t = decodeTransport(wire);
    expect(t.transport.headers).toEqual({ reply: "choria.reply.x.y", sender: "client" });
    const s = decodeSecureRequest(t.inner);
    expect(s.secure.caller).toBe("caller.jwt");
    expect(s.secure.signer).toBe("signer.jwt");
    expect(s.signature.equals(sig)).toBe(true);
    // the exact signed bytes survive, so signatures verify against them
    expect(s.requestBytes.equals(reqBytes)).toBe(true);

    const r = decodeRequest(s.requestBytes);
    expect(r.request).toEqual({ protocol: "io.choria.protocol.v2.request", ...req });
    expect(JSON.parse(r.message.toString())).toEqual({ agent: "rpcutil", action: "ping", data: {} });
  });

  it("reply path: transport -> secure reply (hash checked) -> reply -> body", () => {
    const replyBytes = encodeReply({
      message: encodeMessage('{"statuscode":0}'),
      request: req.id,
      sender: "n1",
      agent: "rpcutil",
      time: 1700000000000000000,
    });
    const wire = encodeTransport(encodeSecureReply(replyBytes, Buffer.from([9, 9]), "server.jwt"), {});
    const sr = decodeSecureReply(decodeTransport(wire).inner);
    expect(sr.hashOk).toBe(true);
    expect(sr.signature?.equals(Buffer.from([9, 9]))).toBe(true);
    expect(sr.secure.sender).toBe("server.jwt");
    expect(sr.replyBytes.equals(replyBytes)).toBe(true);
    const r = decodeReply(sr.replyBytes);
    expect(r.reply.sender).toBe("n1");
    expect(r.message.toString()).toBe('{"statuscode":0}');
  });

  it("accepts Uint8Array views that are not Buffers", () => {
    const bytes = encodeReply({ message: "e30=", request: "r", sender: "s", agent: "a", time: 5 });
    const u8 = new Uint8Array(bytes.length + 4);
    u8.set(bytes, 2);
    expect(decodeReply(u8.subarray(2, 2 + bytes.length)).reply.time).toBe(5);
  });
});

describe("decodeSecureReply hash", () => {
  it("reports hashOk=false when the reply bytes do not match the hash", () => {
    const good = JSON.parse(encodeSecureReply(b('{"a":1}')).toString()) as Record<string, string>;
    good.hash = createHash("sha256").update('{"a":2}').digest("base64");
    const out = decodeSecureReply(b(JSON.stringify(good)));
    expect(out.hashOk).toBe(false);
    expect(out.replyBytes.toString()).toBe('{"a":1}');
  });

  it("compares against the base64 text, not hex", () => {
    const hex = createHash("sha256").update('{"a":1}').digest("hex");
    const doc = `{"protocol":"io.choria.protocol.v2.secure_reply","reply":"eyJhIjoxfQ==","hash":"${hex}"}`;
    expect(decodeSecureReply(b(doc)).hashOk).toBe(false);
  });

  it("has no signature field when none was sent", () => {
    expect(decodeSecureReply(encodeSecureReply(b("{}"))).signature).toBeUndefined();
  });
});

describe("decodeRequest message", () => {
  it("keeps raw bytes when message is not base64", () => {
    const doc = JSON.parse(encodeRequest(req).toString()) as Record<string, unknown>;
    doc.message = "not base64!";
    expect(decodeRequest(b(JSON.stringify(doc))).message.toString()).toBe("not base64!");
  });

  it("decodes a second base64 layer like go-choria's server (discovery sends base64('ping'))", () => {
    const bytes = encodeRequest({ ...req, message: encodeMessage(encodeMessage("ping")) });
    expect(decodeRequest(bytes).message.toString()).toBe("ping");
  });

  it("leaves JSON bodies alone after the first layer", () => {
    const bytes = encodeRequest({ ...req, message: encodeMessage('{"a":"b"}') });
    expect(decodeRequest(bytes).message.toString()).toBe('{"a":"b"}');
  });

  it("fills filter lists the schema lets a sender omit", () => {
    const doc = JSON.parse(encodeRequest({ ...req, filter: emptyFilter() }).toString()) as {
      filter: Record<string, unknown>;
    };
    delete doc.filter.agent;
    expect(decodeRequest(b(JSON.stringify(doc))).request.filter?.agent).toEqual([]);
  });
});

describe("decode errors", () => {
  const decoders = {
    transport: decodeTransport,
    secureRequest: decodeSecureRequest,
    request: decodeRequest,
    secureReply: decodeSecureReply,
    reply: decodeReply,
  };

  for (const [name, decode] of Object.entries(decoders)) {
    it(`${name}: malformed JSON`, () => {
      expect(codeOf(() => decode(b('{"protocol":')))).toBe("malformed");
      expect(codeOf(() => decode(b("")))).toBe("malformed");
    });

    it(`${name}: JSON that is not an object`, () => {
      expect(codeOf(() => decode(b("[1,2]")))).toBe("malformed");
      expect(codeOf(() => decode(b("null")))).toBe("malformed");
    });

    it(`${name}: wrong protocol id`, () => {
      expect(codeOf(() => decode(b('{"protocol":"choria:transport:1"}')))).toBe("protocol");
    });

    it(`${name}: oversize input is refused before parsing`, () => {
      // Not JSON at all: proves the size check runs before JSON.parse.
      const big = Buffer.alloc(MAX_MESSAGE_BYTES + 1, 0x20);
      expect(codeOf(() => decode(big))).toBe("too_large");
    });
  }

  it("exactly MAX_MESSAGE_BYTES is not too large", () => {
    const bytes = encodeTransport(Buffer.from("{}"), {});
    const padded = Buffer.alloc(MAX_MESSAGE_BYTES, 0x20);
    bytes.copy(padded);
    expect(decodeTransport(padded).inner.toString()).toBe("{}");
  });

  it("missing fields fail schema validation", () => {
    expect(
      codeOf(() => decodeTransport(b('{"protocol":"io.choria.protocol.v2.transport","data":"e30="}'))),
    ).toBe("schema");
    expect(
      codeOf(() =>
        decodeSecureRequest(
          b('{"protocol":"io.choria.protocol.v2.secure_request","request":"e30=","caller":"c"}'),
        ),
      ),
    ).toBe("schema");
    const r = JSON.parse(encodeRequest(req).toString()) as Record<string, unknown>;
    delete r.collective;
    expect(codeOf(() => decodeRequest(b(JSON.stringify(r))))).toBe("schema");
    expect(
      codeOf(() => decodeSecureReply(b('{"protocol":"io.choria.protocol.v2.secure_reply","reply":"e30="}'))),
    ).toBe("schema");
    expect(
      codeOf(() =>
        decodeReply(b('{"protocol":"io.choria.protocol.v2.reply","message":"e30=","request":"r"}')),
      ),
    ).toBe("schema");
  });

  it("a missing protocol field is a schema error", () => {
    expect(codeOf(() => decodeTransport(b('{"data":"e30=","headers":{}}')))).toBe("schema");
  });

  it("wrong types fail schema validation", () => {
    const r = JSON.parse(encodeRequest(req).toString()) as Record<string, unknown>;
    r.ttl = "60";
    expect(codeOf(() => decodeRequest(b(JSON.stringify(r))))).toBe("schema");
    r.ttl = 0;
    expect(codeOf(() => decodeRequest(b(JSON.stringify(r))))).toBe("schema");
  });

  it("unknown fact operators in a request filter fail schema validation", () => {
    const r = JSON.parse(encodeRequest(req).toString()) as { filter: { fact: { operator: string }[] } };
    r.filter.fact[0]!.operator = "~~";
    expect(codeOf(() => decodeRequest(b(JSON.stringify(r))))).toBe("schema");
  });

  it("invalid base64 in byte fields is malformed", () => {
    expect(
      codeOf(() =>
        decodeTransport(b('{"protocol":"io.choria.protocol.v2.transport","data":"e30","headers":{}}')),
      ),
    ).toBe("malformed");
    expect(
      codeOf(() =>
        decodeSecureRequest(
          b(
            '{"protocol":"io.choria.protocol.v2.secure_request","request":"e30=","signature":"**==","caller":"c"}',
          ),
        ),
      ),
    ).toBe("malformed");
    expect(
      codeOf(() =>
        decodeSecureReply(b('{"protocol":"io.choria.protocol.v2.secure_reply","reply":"e3-=","hash":"x"}')),
      ),
    ).toBe("malformed");
    expect(
      codeOf(() =>
        decodeReply(
          b(
            '{"protocol":"io.choria.protocol.v2.reply","message":"e 0=","request":"r","sender":"s","agent":"a","time":1}',
          ),
        ),
      ),
    ).toBe("malformed");
  });

  it("error messages name the layer", () => {
    expect(() => decodeSecureReply(b("{}"))).toThrow(/secure reply/);
    expect(() => decodeTransport(b('{"protocol":"io.choria.protocol.v2.reply"}'))).toThrow(
      /transport has protocol "io.choria.protocol.v2.reply"/,
    );
  });
});

describe("input from other producers", () => {
  it("accepts any field order and whitespace", () => {
    const doc = `{
      "time": 1700000000123456789, "ttl": 60, "agent": "rpcutil", "collective": "choria",
      "caller": "choria=rip", "sender": "go.client", "id": "2Bf6hV5oZzT8yYvFq0sD3kLmN1p",
      "message": "e30=", "protocol": "io.choria.protocol.v2.request"
    }`;
    const { request, message } = decodeRequest(b(doc));
    expect(request.sender).toBe("go.client");
    expect(request.filter).toBeUndefined();
    expect(message.toString()).toBe("{}");
    // int64 nanoseconds lose sub-microsecond precision in a JS number; seconds stay exact
    expect(Math.floor(request.time / 1e9)).toBe(1700000000);
  });
});
