import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import {
  encodeMessage,
  encodeReply,
  encodeSecureReply,
  encodeTransport,
  nowNanos,
} from "../../../src/core/protocol/index.js";
import {
  ChoriaSecurity,
  createClientToken,
  createServerToken,
  generateKeyPair,
  orgIssuer,
  sign,
} from "../../../src/core/security/index.js";

// The client's worker-thread verifier only runs from the built JS (worker threads cannot
// load the TypeScript sources), so this exercises dist/ — present after `npm run build`.
const built = fileURLToPath(new URL("../../../dist/client/replies.js", import.meta.url));

describe.skipIf(!existsSync(built))("client reply verification in worker threads", () => {
  const dir = mkdtempSync(join(tmpdir(), "chorus-pool-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const issuerKp = generateKeyPair();
  const issuer = orgIssuer(issuerKp);
  const clientKp = generateKeyPair();
  writeFileSync(join(dir, "seed"), clientKp.seedHex);
  writeFileSync(
    join(dir, "token"),
    createClientToken({ callerid: "choria=pool", publicKeyHex: clientKp.publicHex, validityS: 3600 }, issuer),
  );

  function reply(identity: string, tokenFor: string, signWith: string, publicHex: string): Uint8Array {
    const token = createServerToken(
      { identity: tokenFor, collectives: ["c"], publicKeyHex: publicHex, validityS: 600 },
      issuer,
    );
    const body = encodeReply({
      message: encodeMessage("pong"),
      request: "r1",
      sender: identity,
      agent: "discovery",
      time: nowNanos(),
    });
    return encodeTransport(encodeSecureReply(body, sign(signWith, body), token), { sender: identity });
  }

  async function builtOpener() {
    const mod = (await import(built)) as typeof import("../../../src/client/replies.js");
    const { ChoriaSecurity: BuiltSecurity } = (await import(
      fileURLToPath(new URL("../../../dist/core/security/index.js", import.meta.url))
    )) as { ChoriaSecurity: typeof ChoriaSecurity };
    const sec = new BuiltSecurity({
      seedFile: join(dir, "seed"),
      tokenFile: join(dir, "token"),
      issuers: [issuerKp.publicHex],
    });
    return { mod, sec };
  }

  it("opens every reply exactly once when the worker threads are given up mid-batch", async () => {
    const { mod, sec } = await builtOpener();
    // a stall limit no thread can meet: threads holding replies are dropped as they work
    const opener = mod.replyOpener(sec, { threads: 2, stallMs: 1 });
    expect(opener).toBeDefined();
    const nodes = Array.from({ length: 40 }, (_, i) => ({ id: `n${i}.example`, kp: generateKeyPair() }));
    const msgs: Uint8Array[] = [];
    for (let r = 0; r < 25; r++)
      for (const n of nodes) msgs.push(reply(n.id, n.id, n.kp.seedHex, n.kp.publicHex));
    const before = mod.replyPoolFailures();
    const got = new Map<number, number>();
    let bad = 0;
    // 1 000 replies: full batches go to the threads at once, and the threads fail under them
    msgs.forEach((m, i) =>
      opener?.open(m, (o) => {
        if (!o.ok) bad++;
        got.set(i, (got.get(i) ?? 0) + 1);
      }),
    );
    await opener?.drain();
    expect(mod.replyPoolFailures()).toBeGreaterThan(before);
    expect(bad).toBe(0);
    expect(got.size).toBe(msgs.length);
    expect([...got.values()].every((n) => n === 1)).toBe(true);
    // a new opener after the failure builds a fresh pool that works
    const again = mod.replyOpener(sec);
    const ok = await new Promise<boolean>((resolve) => {
      const first = nodes[0] as { id: string; kp: { seedHex: string; publicHex: string } };
      again?.open(reply(first.id, first.id, first.kp.seedHex, first.kp.publicHex), (o) => resolve(o.ok));
      void again?.drain();
    });
    expect(ok).toBe(true);
  });

  it("accepts good replies and rejects forged or foreign ones, like the inline check", async () => {
    const { replyOpener } = (await import(built)) as typeof import("../../../src/client/replies.js");
    const { ChoriaSecurity: BuiltSecurity } = (await import(
      fileURLToPath(new URL("../../../dist/core/security/index.js", import.meta.url))
    )) as { ChoriaSecurity: typeof ChoriaSecurity };
    const sec = new BuiltSecurity({
      seedFile: join(dir, "seed"),
      tokenFile: join(dir, "token"),
      issuers: [issuerKp.publicHex],
    });
    const opener = replyOpener(sec);
    expect(opener).toBeDefined();
    const a = generateKeyPair();
    const b = generateKeyPair();
    const msgs = [
      reply("a.example", "a.example", a.seedHex, a.publicHex), // good
      reply("a.example", "a.example", b.seedHex, a.publicHex), // signed with someone else's key
      reply("a.example", "b.example", b.seedHex, b.publicHex), // b's token claiming to be a
    ];
    const out = await new Promise<{ ok: boolean; reason?: string }[]>((resolve) => {
      const got: { ok: boolean; reason?: string }[] = [];
      for (const m of msgs)
        opener?.open(m, (o) => got.push(o.ok ? { ok: true } : { ok: false, reason: o.reason }));
      void opener?.drain().then(() => resolve(got));
    });
    expect(out).toEqual([
      { ok: true },
      { ok: false, reason: "signature" },
      { ok: false, reason: "signature" },
    ]);
  });
});
