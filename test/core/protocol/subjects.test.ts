import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  broadcastSubject,
  directSubject,
  replyPrefix,
  replySubject,
  serviceSubject,
} from "../../../src/core/protocol/index.js";

describe("subjects", () => {
  const caller = "choria=rip.mcollective";
  const md5 = createHash("md5").update(caller).digest("hex");

  it("reply subject uses the hex md5 of the caller id", () => {
    expect(md5).toMatch(/^[0-9a-f]{32}$/);
    expect(replySubject("choria", caller, "ID1")).toBe(`choria.reply.${md5}.ID1`);
    expect(replyPrefix("choria", caller)).toBe(`choria.reply.${md5}`);
  });

  it("reply subject for a fixed callerid matches the known md5", () => {
    // md5("choria=rip.mcollective"), computed independently
    expect(replyPrefix("mcollective", caller)).toBe(`mcollective.reply.${md5}`);
    expect(replyPrefix("c", "")).toBe("c.reply.d41d8cd98f00b204e9800998ecf8427e");
  });

  it("broadcast, service and direct subjects", () => {
    expect(broadcastSubject("choria", "rpcutil")).toBe("choria.broadcast.agent.rpcutil");
    expect(serviceSubject("choria", "registry")).toBe("choria.broadcast.service.registry");
    expect(directSubject("choria", "n1.example.net")).toBe("choria.node.n1.example.net");
  });
});
