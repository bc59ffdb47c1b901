import { describe, expect, it } from "vitest";
import {
  MAX_JSON_DEPTH,
  MAX_MESSAGE_BYTES,
  PROTOCOL_UNKNOWN,
  PROTOCOL_V1,
  PROTOCOL_V2,
  ProtocolError,
  copyFederationData,
  decodeReply,
  decodeRequest,
  decodeSecureReply,
  decodeTransport,
  encodeMessage,
  encodeReply,
  encodeRequest,
  encodeSecureReply,
  encodeSecureRequest,
  encodeTransport,
  federationReplyTo,
  federationRequestId,
  federationTargets,
  isFederated,
  networkHops,
  protocolVersion,
  recordNetworkHop,
  seenBy,
  setFederationReplyTo,
  setFederationRequestId,
  setFederationTargets,
  setUnfederated,
  type Request,
  type Transport,
  type TransportHeaders,
} from "../../../src/core/protocol/index.js";
import { validators } from "../../../src/core/protocol/schemas.js";

function errorOf(fn: () => unknown): ProtocolError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ProtocolError);
    return err as ProtocolError;
  }
  throw new Error("expected a ProtocolError, nothing was thrown");
}

const b = (s: string) => Buffer.from(s, "utf8");
const json = (o: unknown) => b(JSON.stringify(o));

const req: Omit<Request, "protocol"> = {
  message: encodeMessage('{"agent":"rpcutil","action":"ping","data":{}}'),
  id: "2Bf6hV5oZzT8yYvFq0sD3kLmN1p",
  sender: "client.example.net",
  caller: "choria=rip.mcollective",
  collective: "choria",
  agent: "rpcutil",
  ttl: 60,
  time: 1700000000000000000,
};
const rep = { message: "e30=", request: "r1", sender: "n1.example.net", agent: "rpcutil", time: 5 };

describe("encoders check the schema before writing", () => {
  it("refuses a request with an empty agent, naming the field", () => {
    const e = errorOf(() => encodeRequest({ ...req, agent: "" }));
    expect(e.code).toBe("schema");
    expect(e.message).toMatch(/request schema: \/agent must NOT have fewer than 1 characters/);
  });

  it("refuses every other request field the schema rules out", () => {
    const cases: [Partial<Request>, RegExp][] = [
      [{ message: "" }, /\/message/],
      [{ id: "" }, /\/id/],
      [{ sender: "" }, /\/sender/],
      [{ caller: "" }, /\/caller/],
      [{ collective: "" }, /\/collective/],
      [{ ttl: 0 }, /\/ttl must be >= 1/],
      [{ time: 0 }, /\/time must be >= 1/],
      [
        {
          filter: {
            fact: [{ fact: "os", operator: "=", value: "x" }],
            cf_class: [],
            agent: [],
            identity: [],
            compound: [],
          },
        },
        /\/filter\/fact\/0\/operator/,
      ],
      [
        {
          filter: {
            fact: [{ fact: "os", operator: "==", value: "" }],
            cf_class: [],
            agent: [],
            identity: [],
            compound: [],
          },
        },
        /\/filter\/fact\/0\/value/,
      ],
    ];
    for (const [patch, re] of cases) {
      const e = errorOf(() => encodeRequest({ ...req, ...patch }));
      expect(e.code, JSON.stringify(patch)).toBe("schema");
      expect(e.message).toMatch(re);
    }
    // a field a JavaScript caller left out is reported as missing, not as a crash in the writer
    const missing = { ...req } as Partial<Request>;
    delete missing.collective;
    expect(errorOf(() => encodeRequest(missing as Request)).message).toMatch(
      /required property 'collective'/,
    );
  });

  it("refuses replies, secure layers and transports that fail their schemas", () => {
    expect(errorOf(() => encodeReply({ ...rep, agent: "" })).message).toMatch(/reply schema: \/agent/);
    expect(errorOf(() => encodeReply({ ...rep, request: "" })).message).toMatch(/\/request/);
    expect(errorOf(() => encodeReply({ ...rep, time: 0 })).message).toMatch(/\/time/);
    expect(errorOf(() => encodeSecureRequest(b("{}"), new Uint8Array(0), "jwt")).message).toMatch(
      /secure request schema: \/signature/,
    );
    expect(errorOf(() => encodeSecureRequest(b("{}"), b("sig"), "")).message).toMatch(/\/caller/);
    expect(errorOf(() => encodeSecureReply(new Uint8Array(0))).message).toMatch(
      /secure reply schema: \/reply/,
    );
    const badHop = { trace: [["in", "me"]] } as unknown as TransportHeaders;
    expect(errorOf(() => encodeTransport(b("{}"), badHop)).message).toMatch(
      /transport schema: \/headers\/trace\/0/,
    );
  });

  it("checks what is written, after omitempty: empty optional headers are left out, not refused", () => {
    const out = encodeTransport(b("{}"), { reply: "", sender: "", trace: [], federation: { request: "" } });
    expect(out.toString()).toContain('"headers":{"federation":{}}');
    expect(decodeTransport(out).transport.headers).toEqual({ federation: {} });
  });

  it("writes exactly what it checked: everything it encodes decodes under the strict schemas", () => {
    const r = encodeRequest({
      ...req,
      filter: { fact: [], cf_class: [], agent: [], identity: [], compound: [] },
    });
    const t = encodeTransport(encodeSecureRequest(r, b("sig"), "jwt", "signer"), {
      reply: "x.reply",
      sender: "c",
    });
    const { inner } = decodeTransport(t);
    expect(decodeRequest(r).request.agent).toBe("rpcutil");
    expect(inner.toString()).toContain('"signer":"signer"');
    const s = encodeSecureReply(encodeReply(rep), b("sig"), "jwt");
    expect(decodeSecureReply(s).hashOk).toBe(true);
  });

  it("compiled validators measure strings by .length instead of walking every character", () => {
    // Walking (ajv's default) costs ~5 ns a character of each base64 field on every encode.
    for (const v of Object.values(validators)) expect(v.toString()).not.toContain("ucs2length");
    const big = "A".repeat(MAX_MESSAGE_BYTES);
    const t0 = performance.now();
    for (let i = 0; i < 100; i++) validators.reply({ ...rep, protocol: PROTOCOL_V2.reply, message: big });
    // walking 4 MiB a hundred times takes seconds; a length check takes microseconds
    expect(performance.now() - t0).toBeLessThan(500);
  });
});

describe("lax reply decoding (go-choria's client without strict validation)", () => {
  const lax = { lax: true };

  it("accepts a reply with no protocol or core fields and gives Go's zero values", () => {
    const { reply, message } = decodeReply(b("{}"), lax);
    expect(reply).toEqual({
      protocol: PROTOCOL_V2.reply,
      message: "",
      request: "",
      sender: "",
      agent: "",
      time: 0,
    });
    expect(message.length).toBe(0);
    // both other modes refuse the same bytes
    expect(errorOf(() => decodeReply(b("{}"))).code).toBe("schema");
    expect(errorOf(() => decodeReply(b("{}"), { strict: false })).code).toBe("schema");
  });

  it("keeps the fields that are there", () => {
    const { reply, message } = decodeReply(json({ message: "e30=", sender: "n1", time: 7 }), lax);
    expect(reply).toMatchObject({
      protocol: PROTOCOL_V2.reply,
      sender: "n1",
      request: "",
      agent: "",
      time: 7,
    });
    expect(message.toString()).toBe("{}");
  });

  it("treats null as absent, a null protocol as unknown, and keeps a foreign protocol string", () => {
    const nulls = { protocol: null, message: null, request: null, sender: null, agent: null, time: null };
    expect(decodeReply(json(nulls), lax).reply).toEqual({
      protocol: PROTOCOL_UNKNOWN,
      message: "",
      request: "",
      sender: "",
      agent: "",
      time: 0,
    });
    // the published reply schema's own (wrong) protocol id is not an error here
    const foreign = { ...rep, protocol: PROTOCOL_V2.request };
    expect(decodeReply(json(foreign), lax).reply.protocol).toBe(PROTOCOL_V2.request);
    expect(errorOf(() => decodeReply(json(foreign), { strict: false })).code).toBe("protocol");
  });

  it("still refuses what Go's json.Unmarshal refuses", () => {
    const bad: [unknown, string][] = [
      [{ time: "1" }, "schema"],
      [{ time: 1.5 }, "schema"],
      [{ time: 2 ** 64 }, "schema"],
      [{ sender: 5 }, "schema"],
      [{ agent: ["a"] }, "schema"],
      [{ protocol: 2 }, "schema"],
      [{ message: "not base64!" }, "malformed"],
      [[], "malformed"],
    ];
    for (const [doc, code] of bad)
      expect(errorOf(() => decodeReply(json(doc), lax)).code, JSON.stringify(doc)).toBe(code);
    expect(errorOf(() => decodeReply(b("{"), lax)).code).toBe("malformed");
  });

  it("keeps the size and depth limits", () => {
    const deep = `{"x":${"[".repeat(MAX_JSON_DEPTH + 1)}${"]".repeat(MAX_JSON_DEPTH + 1)}}`;
    expect(errorOf(() => decodeReply(b(deep), lax)).code).toBe("too_deep");
    expect(errorOf(() => decodeReply(Buffer.alloc(MAX_MESSAGE_BYTES + 1, 32), lax)).code).toBe("too_large");
  });
});

describe("protocolVersion", () => {
  const reply = encodeReply(rep);
  const secureReply = encodeSecureReply(reply);
  const request = encodeRequest(req);
  const secureRequest = encodeSecureRequest(request, b("sig"), "jwt");
  const transport = encodeTransport(secureReply, { sender: "n1", federation: { request: "x" } });

  it("reads each layer's id from bytes or a string", () => {
    expect(protocolVersion(transport)).toBe(PROTOCOL_V2.transport);
    expect(protocolVersion(transport.toString())).toBe(PROTOCOL_V2.transport);
    expect(protocolVersion(secureReply)).toBe(PROTOCOL_V2.secureReply);
    expect(protocolVersion(reply)).toBe(PROTOCOL_V2.reply);
    expect(protocolVersion(secureRequest)).toBe(PROTOCOL_V2.secureRequest);
    expect(protocolVersion(request)).toBe(PROTOCOL_V2.request);
    // a view into a larger buffer reads only its own bytes
    const framed = Buffer.concat([b("xx"), reply, b("yy")]);
    expect(protocolVersion(framed.subarray(2, 2 + reply.length))).toBe(PROTOCOL_V2.reply);
  });

  it("knows the v1 ids and reports any other string as unknown", () => {
    for (const id of Object.values(PROTOCOL_V1)) expect(protocolVersion(json({ protocol: id }))).toBe(id);
    expect(protocolVersion(json({ protocol: "io.choria.protocol.v3.transport" }))).toBe(PROTOCOL_UNKNOWN);
  });

  it("follows go-choria's VersionFromJSON on odd documents", () => {
    const cases: [string, string][] = [
      ['{"data":"x"}', ""], // no protocol field: Go's zero value
      ["null", ""], // json.Unmarshal leaves the struct alone
      [' \n{"protocol" : "io.choria.protocol.v2.reply"}\t', PROTOCOL_V2.reply],
      ['{"PROTOCOL":"io.choria.protocol.v2.reply"}', PROTOCOL_V2.reply], // Go matches fields case-insensitively
      ['{"\\u0070rotocol":"io.choria.protocol.v2.\\u0072eply"}', PROTOCOL_V2.reply],
      ['{"protocol":"io.choria.protocol.v2.reply","protocol":"choria:reply:1"}', PROTOCOL_V1.reply], // last wins
      ['{"headers":{"protocol":"io.choria.protocol.v2.reply"}}', ""], // only the top level counts
      ['{"protocol":null}', PROTOCOL_UNKNOWN],
      ['{"protocol":1}', PROTOCOL_UNKNOWN],
      ['{"protocol":{}}', PROTOCOL_UNKNOWN],
      ['{"protocol":["io.choria.protocol.v2.reply"]}', PROTOCOL_UNKNOWN],
      ['{"protocol":1,"protocol":"io.choria.protocol.v2.reply"}', PROTOCOL_UNKNOWN], // Go stops at the error
      ['{"protocol":"io.choria.protocol.v2.reply"} x', PROTOCOL_UNKNOWN], // trailing garbage
      ['{"protocol":"io.choria.protocol.v2.reply",}', PROTOCOL_UNKNOWN],
      ['{"protocol":"io.choria.protocol.v2.reply","x":01}', PROTOCOL_UNKNOWN], // invalid later on
      ['{"protocol":"io.choria.protocol.v2.reply","x":"\\q"}', PROTOCOL_UNKNOWN],
      ['{"protocol":"io.choria.protocol.v2.reply","x":"a\u0001"}', PROTOCOL_UNKNOWN], // raw control character
      ['["io.choria.protocol.v2.reply"]', PROTOCOL_UNKNOWN],
      ['"io.choria.protocol.v2.reply"', PROTOCOL_UNKNOWN],
      ["", PROTOCOL_UNKNOWN],
      ["\ufeff{}", PROTOCOL_UNKNOWN], // Go refuses a byte order mark
    ];
    for (const [text, want] of cases) expect(protocolVersion(text), text).toBe(want);
  });

  it("reads documents beyond the decoders' size and depth limits without failing", () => {
    const big = encodeTransport(Buffer.alloc(MAX_MESSAGE_BYTES, 97), {});
    expect(protocolVersion(big)).toBe(PROTOCOL_V2.transport);
    const deep = 100_000;
    const nested = `{"x":${"[".repeat(deep)}${"]".repeat(deep)},"protocol":"io.choria.protocol.v2.reply"}`;
    expect(protocolVersion(nested)).toBe(PROTOCOL_V2.reply);
  });

  // A reference built on JSON.parse (same validity rules as Go for these inputs) and
  // Go's field rules; random edits of a real transport must get the same answer.
  function reference(text: string): string {
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch {
      return PROTOCOL_UNKNOWN;
    }
    if (doc === null) return "";
    if (typeof doc !== "object" || Array.isArray(doc)) return PROTOCOL_UNKNOWN;
    let found = "";
    for (const [k, v] of Object.entries(doc)) {
      if (k.toLowerCase() !== "protocol") continue;
      if (typeof v === "string") found = protocolVersion(JSON.stringify({ protocol: v }));
      else if (v === null) found = PROTOCOL_UNKNOWN;
      else return PROTOCOL_UNKNOWN;
    }
    return found;
  }

  it("agrees with a JSON.parse reference on 3000 random edits of a transport", () => {
    const base = encodeTransport(secureReply, {
      reply: "r",
      sender: "n1",
      trace: [["", "n1", "nats"]],
      federation: { request: "x", targets: ["a"] },
    }).toString();
    const alphabet = [
      '"',
      "\\",
      "{",
      "}",
      "[",
      "]",
      ",",
      ":",
      " ",
      "n",
      "0",
      "-",
      "e",
      ".",
      "1",
      "u",
      "x",
      "\u0001",
      "P",
    ];
    let seed = 12345;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    let agreedValid = 0;
    for (let k = 0; k < 3000; k++) {
      let s = base;
      for (let edits = 1 + rnd(3); edits > 0; edits--) {
        // edits cluster near the protocol field and the headers, where the structure is
        const at = rnd(4) === 0 ? rnd(45) : s.length - 1 - rnd(110);
        const c = alphabet[rnd(alphabet.length)]!;
        const op = rnd(3);
        s =
          op === 0
            ? s.slice(0, at) + c + s.slice(at + 1)
            : op === 1
              ? s.slice(0, at) + s.slice(at + 1)
              : s.slice(0, at) + c + s.slice(at);
      }
      const want = reference(s);
      expect(protocolVersion(s), s).toBe(want);
      if (want !== PROTOCOL_UNKNOWN) agreedValid++;
    }
    // the edits must leave a fair share of documents valid, or this tests only the error path
    expect(agreedValid).toBeGreaterThan(300);
  });
});

describe("federation and hop accessors", () => {
  const fresh = (headers: TransportHeaders = {}): Transport => ({
    protocol: PROTOCOL_V2.transport,
    data: "",
    headers,
  });

  it("reports an unfederated message as such", () => {
    const t = fresh({ sender: "n1" });
    expect(isFederated(t)).toBe(false);
    expect(federationRequestId(t)).toBeUndefined();
    expect(federationReplyTo(t)).toBeUndefined();
    expect(federationTargets(t)).toBeUndefined();
    expect(networkHops(t)).toEqual([]);
  });

  it("each setter federates the message; getters give Go's zero values for unset parts", () => {
    const a = fresh();
    setFederationRequestId(a, "req1");
    expect(isFederated(a)).toBe(true);
    expect(federationRequestId(a)).toBe("req1");
    expect(federationReplyTo(a)).toBe("");
    expect(federationTargets(a)).toEqual([]);

    const c = fresh();
    setFederationReplyTo(c, "choria.reply.x");
    expect(isFederated(c)).toBe(true);
    expect(federationReplyTo(c)).toBe("choria.reply.x");
    expect(federationRequestId(c)).toBe("");

    const d = fresh();
    const targets = ["choria.node.n1", "choria.node.n2"];
    setFederationTargets(d, targets);
    targets.push("changed later");
    expect(federationTargets(d)).toEqual(["choria.node.n1", "choria.node.n2"]);
  });

  it("setUnfederated drops every federation header, on the wire too", () => {
    const t = fresh({ sender: "n1", federation: { request: "r", reply: "x", targets: ["a"] } });
    setUnfederated(t);
    expect(isFederated(t)).toBe(false);
    const wire = encodeTransport(b("{}"), t.headers).toString();
    expect(wire).not.toContain("federation");
  });

  it("records hops in order under the `trace` wire name; seenBy is the same list", () => {
    const t = fresh();
    recordNetworkHop(t, "", "client.example", "nats1");
    recordNetworkHop(t, "nats1", "fedbroker", "nats2");
    expect(networkHops(t)).toEqual([
      ["", "client.example", "nats1"],
      ["nats1", "fedbroker", "nats2"],
    ]);
    expect(seenBy(t)).toBe(networkHops(t));
    const wire = encodeTransport(b("{}"), t.headers).toString();
    expect(wire).toContain('"trace":[["","client.example","nats1"],["nats1","fedbroker","nats2"]]');
  });

  it("survives an encode/decode round trip", () => {
    const t = fresh({ reply: "choria.reply.x", sender: "broker" });
    setFederationRequestId(t, "req9");
    setFederationReplyTo(t, "choria.reply.orig");
    setFederationTargets(t, ["n1"]);
    recordNetworkHop(t, "a", "b", "c");
    const back = decodeTransport(encodeTransport(b("{}"), t.headers)).transport;
    expect(isFederated(back)).toBe(true);
    expect(federationRequestId(back)).toBe("req9");
    expect(federationReplyTo(back)).toBe("choria.reply.orig");
    expect(federationTargets(back)).toEqual(["n1"]);
    expect(networkHops(back)).toEqual([["a", "b", "c"]]);
    // and setters work on a decoded message
    recordNetworkHop(back, "c", "d", "");
    expect(networkHops(back)).toHaveLength(2);
  });

  it("a federation header with nothing in it still counts as federated, as go-choria's non-nil pointer", () => {
    const back = decodeTransport(encodeTransport(b("{}"), { federation: {} })).transport;
    expect(isFederated(back)).toBe(true);
    expect(federationRequestId(back)).toBe("");
  });

  it("work on a non-strict decode of a transport without headers", () => {
    const t = decodeTransport(json({ protocol: PROTOCOL_V2.transport, data: "e30=" }), {
      strict: false,
    }).transport;
    expect(isFederated(t)).toBe(false);
    recordNetworkHop(t, "", "n1", "");
    expect(networkHops(t)).toHaveLength(1);
    const notObject = json({ protocol: PROTOCOL_V2.transport, data: "e30=", headers: "x" });
    expect(errorOf(() => decodeTransport(notObject, { strict: false })).code).toBe("schema");
  });

  describe("copyFederationData", () => {
    it("copies request id, reply, targets and appends hops from a federated message", () => {
      const from = fresh({
        federation: { request: "r", reply: "x", targets: ["a", "b"] },
        trace: [["1", "2", "3"]],
      });
      const to = fresh({ sender: "n1", trace: [["0", "0", "0"]] });
      copyFederationData(from, to);
      expect(to.headers).toEqual({
        sender: "n1",
        federation: { request: "r", reply: "x", targets: ["a", "b"] },
        trace: [
          ["0", "0", "0"],
          ["1", "2", "3"],
        ],
      });
      // copies, not shared lists
      federationTargets(from)!.push("c");
      expect(federationTargets(to)).toEqual(["a", "b"]);
    });

    it("makes the target unfederated, without copying hops, when the source is not federated", () => {
      const from = fresh({ trace: [["1", "2", "3"]] });
      const to = fresh({ federation: { request: "old" } });
      copyFederationData(from, to);
      expect(isFederated(to)).toBe(false);
      expect(networkHops(to)).toEqual([]);
    });

    it("copying a message onto itself terminates and doubles its hops", () => {
      const t = fresh({ federation: { request: "r" }, trace: [["1", "2", "3"]] });
      copyFederationData(t, t);
      expect(networkHops(t)).toHaveLength(2);
    });
  });
});
