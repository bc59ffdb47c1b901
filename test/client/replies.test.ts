import { describe, expect, it } from "vitest";
import { issuerTrust, openReply, parseRpcReplyBody } from "../../src/client/index.js";
import {
  encodeMessage,
  encodeReply,
  encodeSecureReply,
  encodeTransport,
  nowNanos,
} from "../../src/core/protocol/index.js";
import {
  createClientToken,
  createServerToken,
  generateKeyPair,
  orgIssuer,
  sign,
} from "../../src/core/security/index.js";

const org = orgIssuer(generateKeyPair());
const kp = generateKeyPair();
const token = createServerToken(
  { identity: "n1", collectives: ["mcollective"], publicKeyHex: kp.publicHex, validityS: 600 },
  org,
);

function reply(opts: { sender?: string; seed?: string; jwt?: string; body?: string } = {}): Buffer {
  const replyBytes = encodeReply({
    message: encodeMessage(opts.body ?? '{"statuscode":0,"statusmsg":"OK","data":{"x":1}}'),
    request: "2Bf6hV5oZzT8yYvFq0sD3kLmN1p",
    sender: opts.sender ?? "n1",
    agent: "rpcutil",
    time: 1_700_000_000_123_456_000,
  });
  const secure = encodeSecureReply(replyBytes, sign(opts.seed ?? kp.seedHex, replyBytes), opts.jwt ?? token);
  return encodeTransport(secure, { sender: opts.sender ?? "n1" });
}

describe("openReply (the per-reply boundary)", () => {
  it("unwraps a good reply with or without signature checks", () => {
    for (const trust of [undefined, issuerTrust([org.publicHex])]) {
      const o = openReply(reply(), trust);
      expect(o).toMatchObject({
        ok: true,
        sender: "n1",
        requestId: "2Bf6hV5oZzT8yYvFq0sD3kLmN1p",
        agent: "rpcutil",
      });
      if (o.ok) expect(JSON.parse(o.message.toString())).toMatchObject({ data: { x: 1 } });
    }
  });

  it("classifies bad replies", () => {
    expect(openReply(Buffer.from("nonsense"))).toMatchObject({ ok: false, reason: "malformed" });
    const doc = JSON.parse(Buffer.from(JSON.parse(reply().toString()).data, "base64").toString());
    doc.hash = Buffer.alloc(32, 1).toString("base64");
    const tampered = encodeTransport(Buffer.from(JSON.stringify(doc)), {});
    expect(openReply(tampered)).toMatchObject({ ok: false, reason: "hash" });

    const trust = issuerTrust([org.publicHex]);
    const forged = openReply(reply({ seed: generateKeyPair().seedHex }), trust);
    expect(forged).toMatchObject({ ok: false, reason: "signature", detail: "n1: bad reply signature" });
    const other = openReply(reply({ sender: "n2" }), trust);
    expect(other).toMatchObject({ ok: false, reason: "signature" });
    if (!other.ok) expect(other.detail).toMatch(/token is for n1, reply claims n2/);
    const untrusted = openReply(reply(), issuerTrust([generateKeyPair().publicHex]));
    expect(untrusted).toMatchObject({ ok: false, reason: "signature" });
    const clientJwt = createClientToken(
      { callerid: "choria=x", publicKeyHex: kp.publicHex, validityS: 600 },
      org,
    );
    const wrongPurpose = openReply(reply({ jwt: clientJwt }), trust);
    expect(wrongPurpose).toMatchObject({ ok: false, reason: "signature" });
    if (!wrongPurpose.ok) expect(wrongPurpose.detail).toMatch(/choria_server/);
  });

  it("parses reply bodies with Choria's defaults", () => {
    expect(parseRpcReplyBody(Buffer.from("{}"))).toEqual({ statuscode: 0, statusmsg: "OK", data: {} });
    expect(parseRpcReplyBody(Buffer.from('{"statuscode":2,"statusmsg":"nope"}'))).toEqual({
      statuscode: 2,
      statusmsg: "nope",
      data: {},
    });
    expect(parseRpcReplyBody(Buffer.from("pong"))).toMatchObject({ statuscode: 5 });
    expect(parseRpcReplyBody(Buffer.from("[1]"))).toMatchObject({ statuscode: 5 });
    expect(parseRpcReplyBody(Buffer.from('{"statuscode":"x"}'))).toMatchObject({ statuscode: 5 });
  });

  it("keeps the time", () => {
    const o = openReply(reply());
    expect(o.ok && o.timeNs).toBe(1_700_000_000_123_456_000);
    expect(nowNanos()).toBeGreaterThan(0);
  });
});
