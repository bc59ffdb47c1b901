import { describe, expect, it } from "vitest";
import {
  ProtocolError,
  decodeReply,
  decodeSecureReply,
  decodeTransport,
  encodeReply,
  encodeSecureReply,
  encodeTransport,
} from "../../../src/core/protocol/index.js";

const reply = encodeReply({ message: "e30=", request: "r1", sender: "n1", agent: "rpcutil", time: 1 });
const secure = encodeSecureReply(reply);
const transport = encodeTransport(secure, { sender: "n1" });

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as ProtocolError).code;
  }
  return undefined;
}

// go-choria validates reply layers only with ClientStrictValidation; the light path
// must still refuse what the client would misread.
describe("non-strict reply decoding", () => {
  it("decodes the same layers as strict mode", () => {
    const light = { strict: false };
    const t = decodeTransport(transport, light);
    const s = decodeSecureReply(t.inner, light);
    expect(s.hashOk).toBe(true);
    expect(decodeReply(s.replyBytes, light).reply).toEqual(decodeReply(s.replyBytes).reply);
  });

  it("still refuses wrong protocol ids, missing fields and bad base64", () => {
    const light = { strict: false };
    const bad = (o: object) => Buffer.from(JSON.stringify(o));
    expect(
      codeOf(() => decodeTransport(bad({ protocol: "io.choria.protocol.v2.reply", data: "" }), light)),
    ).toBe("protocol");
    expect(codeOf(() => decodeTransport(bad({ data: "" }), light))).toBe("schema");
    expect(
      codeOf(() =>
        decodeSecureReply(bad({ protocol: "io.choria.protocol.v2.secure_reply", reply: "x" }), light),
      ),
    ).toBe("schema");
    expect(
      codeOf(() =>
        decodeReply(
          bad({
            protocol: "io.choria.protocol.v2.reply",
            message: "e30=",
            request: "r",
            sender: "s",
            agent: "a",
            time: "1",
          }),
          light,
        ),
      ),
    ).toBe("schema");
    expect(
      codeOf(() =>
        decodeTransport(bad({ protocol: "io.choria.protocol.v2.transport", data: "!!", headers: {} }), light),
      ),
    ).toBe("malformed");
  });
});
