import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { Ajv } from "ajv";
import { describe, expect, it } from "vitest";
import {
  decodeReply,
  decodeSecureReply,
  decodeSecureRequest,
  decodeTransport,
  encodeReply,
  encodeSecureReply,
  encodeSecureRequest,
  encodeTransport,
} from "../../../src/core/protocol/index.js";

/**
 * Where Choria's published v2 schemas and go-choria's structs disagree we follow
 * go-choria, because that is what real peers put on the wire. One test per difference.
 */

function published(name: string): Record<string, unknown> {
  const raw = JSON.parse(
    readFileSync(new URL(`../../../schemas/choria/protocol/v2/${name}.json`, import.meta.url), "utf8"),
  ) as Record<string, unknown>;
  delete raw.$schema;
  return raw;
}

describe("go-choria vs schema differences", () => {
  it("secure_request.signature is base64 (Go []byte), though the schema text says hex", () => {
    const sig = Buffer.from([0xde, 0xad, 0xbe, 0xef]);
    const out = encodeSecureRequest(Buffer.from("{}"), sig, "c");
    expect(out.toString()).toContain('"signature":"3q2+7w=="');
    expect(out.toString()).not.toContain("deadbeef");
    expect(decodeSecureRequest(out).signature.equals(sig)).toBe(true);
  });

  it("secure_reply.hash is base64 sha256 (go-choria's base64.StdEncoding), though the schema text says hex", () => {
    const reply = Buffer.from('{"x":1}');
    const out = JSON.parse(encodeSecureReply(reply).toString()) as { hash: string };
    expect(out.hash).toBe(createHash("sha256").update(reply).digest("base64"));
    expect(out.hash).not.toBe(createHash("sha256").update(reply).digest("hex"));
  });

  it("secure_reply.signature is base64 (Go []byte), though the schema text says hex", () => {
    const out = encodeSecureReply(Buffer.from("{}"), Buffer.from([1, 2, 3]));
    expect(out.toString()).toContain('"signature":"AQID"');
    expect(decodeSecureReply(out).signature?.equals(Buffer.from([1, 2, 3]))).toBe(true);
  });

  it("transport hop list is sent as `trace` (Go json tag), not the schema's `seen-by`", () => {
    const out = encodeTransport(Buffer.from("{}"), { trace: [["", "me", "nats1"]] });
    expect(out.toString()).toContain('"trace":[["","me","nats1"]]');
    expect(out.toString()).not.toContain("seen-by");
    expect(decodeTransport(out).transport.headers.trace).toEqual([["", "me", "nats1"]]);
  });

  it("`trace` is validated as a list of string triplets since the schema does not cover it", () => {
    const bad =
      '{"protocol":"io.choria.protocol.v2.transport","data":"e30=","headers":{"trace":[["a","b"]]}}';
    expect(() => decodeTransport(Buffer.from(bad))).toThrow(/schema/);
  });

  it("federation.request may be absent (Go omitempty) although the schema requires it", () => {
    const out = encodeTransport(Buffer.from("{}"), { federation: { targets: ["choria.node.n1"] } });
    expect(out.toString()).toContain('"federation":{"targets":["choria.node.n1"]}');
    // the published schema would refuse this message
    const strict = new Ajv({ strict: false }).compile(published("transport"));
    expect(strict(JSON.parse(out.toString()))).toBe(false);
    // we accept it, as go-choria does
    expect(decodeTransport(out).transport.headers.federation?.targets).toEqual(["choria.node.n1"]);
  });

  it("federation.targets keeps the v2 Go tag `targets` (v1 used `target`)", () => {
    const out = encodeTransport(Buffer.from("{}"), { federation: { request: "id", targets: ["a"] } });
    expect(out.toString()).toContain('"targets":["a"]');
    expect(out.toString()).not.toMatch(/"target"[^s]/);
  });

  it("reply.protocol is io.choria.protocol.v2.reply although the published schema's const says ...request", () => {
    const bytes = encodeReply({ message: "e30=", request: "r", sender: "s", agent: "a", time: 1 });
    const strict = new Ajv({ strict: false }).compile(published("reply"));
    expect(strict(JSON.parse(bytes.toString()))).toBe(false);
    expect(decodeReply(bytes).reply.protocol).toBe("io.choria.protocol.v2.reply");
    // and a reply carrying the schema's (wrong) const is refused as another protocol
    const wrong = bytes.toString().replace("v2.reply", "v2.request");
    expect(() => decodeReply(Buffer.from(wrong))).toThrow(expect.objectContaining({ code: "protocol" }));
  });
});
