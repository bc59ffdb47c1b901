import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Emulator } from "../../src/apps/emulator/index.js";
import { Client } from "../../src/client/index.js";
import { connectNats, closeNats, type NatsConnection } from "../../src/core/connector/index.js";
import {
  directSubject,
  emptyFilter,
  encodeRequestV1,
  encodeSecureRequestV1,
  encodeTransportV1,
  newRequestIdV1,
  replySubject,
} from "../../src/core/protocol/index.js";
import {
  ChoriaSecurity,
  FileSecurity,
  createCA,
  createServerToken,
  generateKeyPair,
  issueCert,
  sign,
  writeSeedFile,
  type CertPair,
} from "../../src/core/security/index.js";
import { Server } from "../../src/server/index.js";
import { RequestSigner, type AuditRecord } from "../../src/services/aaa/index.js";
import { startNats, type TestNats } from "../helpers/nats.js";
import { COLLECTIVE, makeFixture, quietLogger, type Fixture } from "./helpers.js";

// Protocol v1 end to end: an x509 broker (mTLS required), a v1 server from its config
// file, v1 emulated nodes, a v1 client, every forged case counted, and a mixed fleet.

const dir = mkdtempSync(join(tmpdir(), "chorus-v1-"));
const day = 86_400_000;
let nats: TestNats;
let ca: CertPair;
let other: CertPair;
const pki: Record<string, { certFile: string; keyFile: string; caFile: string; pem: string }> = {};
let server: Server;
let emulator: Emulator;
let v2emulator: Emulator;
let fixture: Fixture;
let raw: NatsConnection;

async function cert(
  name: string,
  cn: string,
  o: { issuer?: CertPair; expired?: boolean; usage?: "client" | "both" } = {},
) {
  const p = await issueCert(o.issuer ?? ca, cn, { localhost: true }, 30, o.usage ?? "both", {
    rsa: true,
    ...(o.expired && { notBefore: new Date(Date.now() - 10 * day), notAfter: new Date(Date.now() - day) }),
  });
  const certFile = join(dir, `${name}.pem`);
  const keyFile = join(dir, `${name}.key`);
  writeFileSync(certFile, p.certPem);
  writeFileSync(keyFile, p.keyPem, { mode: 0o600 });
  pki[name] = { certFile, keyFile, caFile: join(dir, "ca.pem"), pem: p.certPem };
}

const files = (n: string) => {
  const p = pki[n] as (typeof pki)[string];
  return { certFile: p.certFile, keyFile: p.keyFile, caFile: p.caFile };
};

function clientConfig(name: string, extra = ""): string {
  const p = pki[name] as (typeof pki)[string];
  const f = join(dir, `${name}-client.conf`);
  writeFileSync(
    f,
    [
      `collectives = ${COLLECTIVE}`,
      `identity = ${name}.client`,
      `plugin.choria.middleware_hosts = tls://127.0.0.1:${nats.port}`,
      "plugin.security.provider = file",
      `plugin.security.file.certificate = ${p.certFile}`,
      `plugin.security.file.key = ${p.keyFile}`,
      `plugin.security.file.ca = ${p.caFile}`,
      extra,
    ].join("\n"),
  );
  return f;
}

beforeAll(async () => {
  ca = await createCA("v1 test ca", 30);
  other = await createCA("someone else's ca", 30);
  writeFileSync(join(dir, "ca.pem"), ca.certPem);
  const broker = await issueCert(ca, "broker", { localhost: true }, 30, "both");
  writeFileSync(join(dir, "broker.pem"), broker.certPem);
  writeFileSync(join(dir, "broker.key"), broker.keyPem);
  await Promise.all([
    cert("node1", "node1.mcollective"),
    cert("alice", "alice.mcollective", { usage: "client" }),
    cert("emulator", "emulator.mcollective"),
    cert("aaa", "aaa.privileged.mcollective", { usage: "client" }),
    cert("foreign", "alice.mcollective", { issuer: other, usage: "client" }),
    cert("expired", "alice.mcollective", { expired: true, usage: "client" }),
    cert("bob", "bob.example.com", { usage: "client" }),
  ]);
  // mTLS required, as a Choria x509 broker: the client certificate is the authentication
  nats = await startNats(
    `tls { cert_file: "${join(dir, "broker.pem")}", key_file: "${join(dir, "broker.key")}", ca_file: "${join(dir, "ca.pem")}", verify: true }`,
  );
  const serverConf = join(dir, "node1.conf");
  writeFileSync(
    serverConf,
    [
      `identity = node1.mcollective`,
      `collectives = ${COLLECTIVE}`,
      `plugin.choria.middleware_hosts = tls://127.0.0.1:${nats.port}`,
      "plugin.security.provider = file",
      `plugin.security.file.certificate = ${pki.node1?.certFile}`,
      `plugin.security.file.key = ${pki.node1?.keyFile}`,
      `plugin.security.file.ca = ${join(dir, "ca.pem")}`,
      "rpcauthorization = false",
    ].join("\n"),
  );
  server = await Server.fromConfigFile(serverConf, { logger: quietLogger });
  await server.start();
  emulator = new Emulator({
    nodes: 20,
    collective: COLLECTIVE,
    servers: [`tls://127.0.0.1:${nats.port}`],
    caFile: join(dir, "ca.pem"),
    x509: files("emulator"),
    workers: 0,
    logger: quietLogger,
  });
  await emulator.start();
  raw = await connectNats({ servers: [nats.url], name: "forger", ...files("alice") });
}, 120_000);

afterAll(async () => {
  await closeNats(raw);
  await v2emulator?.stop();
  await emulator?.stop();
  await server?.stop();
  await nats?.stop();
  fixture?.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

describe("protocol v1 (x509)", () => {
  it("a v1 client pings a v1 server and v1 emulated nodes through an mTLS broker", async () => {
    const client = await Client.fromConfigFile(clientConfig("alice"));
    try {
      expect(client.callerId).toBe("choria=alice.mcollective");
      const r = await client.ping({ windowed: true, windowMs: 500, timeoutMs: 5000 });
      const senders = r.replies.map((x) => x.sender).sort();
      expect(senders).toHaveLength(21);
      expect(senders).toContain("node1.mcollective");
      expect(r.dropped.hash + r.dropped.malformed).toBe(0);
      const rpc = await client.request("rpcutil", "ping", {}, { nodes: ["node1.mcollective"] });
      expect(rpc.replies).toHaveLength(1);
      expect(rpc.replies[0]?.statuscode).toBe(0);
    } finally {
      await client.close();
    }
    expect(server.decoder.stats.verifications).toBeGreaterThan(0);
  });

  it("a privileged certificate may send as another caller; a plain one may not", async () => {
    const before = { ...server.decoder.stats.rejected };
    const ok = await sendForged("aaa", { callerid: "choria=carol.mcollective" });
    const bad = await sendForged("alice", { callerid: "choria=carol.mcollective" });
    expect(ok).toBe(true);
    expect(bad).toBe(false);
    expect(server.decoder.stats.rejected.caller_mismatch - before.caller_mismatch).toBe(1);
  });

  it("refuses and counts every forged case", async () => {
    const r = () => ({ ...server.decoder.stats.rejected });
    const ttlBefore = server.stats.ttlexpired;
    const cases: [string, () => Promise<boolean>, string][] = [
      ["certificate from another CA", () => sendForged("foreign"), "untrusted_certificate"],
      ["expired certificate", () => sendForged("expired"), "expired_certificate"],
      [
        "caller not matching its certificate",
        () => sendForged("alice", { callerid: "choria=bob.mcollective" }),
        "caller_mismatch",
      ],
      [
        "name not on the allow-list",
        () => sendForged("bob", { callerid: "choria=bob.example.com" }),
        "not_allow_listed",
      ],
      ["tampered message", () => sendForged("alice", { tamper: true }), "bad_signature"],
    ];
    for (const [what, send, reason] of cases) {
      const before = r();
      expect(await send(), what).toBe(false);
      expect(
        server.decoder.stats.rejected[reason as keyof typeof before] - before[reason as keyof typeof before],
        what,
      ).toBe(1);
    }
    // valid signature, but sent 2 minutes ago with a 60 s TTL: outside the window
    expect(await sendForged("alice", { timeS: Math.floor(Date.now() / 1000) - 120 })).toBe(false);
    expect(server.stats.ttlexpired - ttlBefore).toBe(1);
    // and the same bytes twice, inside the TTL: run once, the copy dropped as a replay
    const replayedBefore = server.stats.dropped.replayed;
    const bytes = forge("alice", {});
    expect(await publishAndWait(bytes.bytes, bytes.id)).toBe(true);
    expect(await publishAndWait(bytes.bytes, bytes.id)).toBe(false);
    expect(server.stats.dropped.replayed - replayedBefore).toBe(1);
  });

  it("the AAA signer signs v1 requests with its privileged certificate, as the logged-in user", async () => {
    const fx = makeFixture();
    try {
      const user = fx.caller({ callerid: "up=alice", permissions: { signed_fleet_management: true } });
      const delegator = fx.caller({
        callerid: "aaa=signer",
        permissions: { authentication_delegator: true },
      });
      writeSeedFile(join(dir, "up-alice.seed"), user.kp);
      writeFileSync(join(dir, "up-alice.jwt"), user.token);
      const records: AuditRecord[] = [];
      const signer = new RequestSigner({
        site: "test",
        issuers: fx.issuers,
        signerToken: delegator.token,
        signerSeedHex: delegator.kp.seedHex,
        maxValiditySeconds: 3600 * 24,
        authorizer: {
          name: "test",
          authorize: (i) =>
            i.agent === "rpcutil" && i.action === "ping"
              ? { allowed: true, reason: "ping is fine" }
              : { allowed: false, reason: "only ping" },
        },
        auditors: [{ name: "mem", audit: async (r) => void records.push(r), close: async () => {} }],
        x509: new FileSecurity(files("aaa")),
      });
      const login = new ChoriaSecurity({
        seedFile: join(dir, "up-alice.seed"),
        tokenFile: join(dir, "up-alice.jwt"),
        issuers: fx.issuers,
      });
      const client = new Client({
        security: login,
        // the certificate is only the broker connection's (mTLS); the signer's signs
        x509: new FileSecurity(files("alice")),
        protocols: [1],
        requestSigner: {
          kind: "test AAA",
          async sign(request) {
            const out = await signer.sign({
              token: user.token,
              request,
              signature: sign(user.kp.seedHex, request).toString("hex"),
            });
            if (!out.ok) throw new Error(`${out.error}: ${out.reason}`);
            return out.secureRequest;
          },
        },
        servers: [`tls://127.0.0.1:${nats.port}`],
        collective: COLLECTIVE,
      });
      try {
        expect(client.callerId).toBe("up=alice");
        const verifiedBefore = server.decoder.stats.verifications;
        const r = await client.request("rpcutil", "ping", {}, { nodes: ["node1.mcollective"] });
        expect(r.replies.map((x) => [x.sender, x.statuscode])).toEqual([["node1.mcollective", 0]]);
        expect(server.decoder.stats.verifications).toBeGreaterThan(verifiedBefore);
        const allowed = records.find(
          (x) => x.action === "allow" && (x.request as { agent?: string }).agent === "rpcutil",
        );
        expect(allowed).toMatchObject({
          callerid: "up=alice",
          request: { caller: "up=alice", protocol: "choria:request:1" },
        });
        await expect(
          client.request("rpcutil", "inventory", {}, { nodes: ["node1.mcollective"] }),
        ).rejects.toThrow(/Request denied|only inventory|denied/i);
        expect(records.some((x) => x.action === "deny")).toBe(true);
      } finally {
        await client.close();
      }
    } finally {
      fx.cleanup();
    }
  });

  it("a mixed fleet (v1 and v2 nodes) answers one client", async () => {
    fixture = makeFixture();
    const caller = fixture.caller({ callerid: "choria=alice.mcollective" });
    writeSeedFile(join(dir, "alice.seed"), caller.kp);
    writeFileSync(join(dir, "alice.jwt"), caller.token);
    const v2 = new ChoriaSecurity({
      seedFile: join(dir, "alice.seed"),
      tokenFile: join(dir, "alice.jwt"),
      issuers: fixture.issuers,
    });
    // the v2 nodes' emulator credential
    const ekp = generateKeyPair();
    writeSeedFile(join(dir, "emu2.seed"), ekp);
    writeFileSync(
      join(dir, "emu2.jwt"),
      createServerToken(
        { identity: "emu2", collectives: [COLLECTIVE], publicKeyHex: ekp.publicHex, validityS: 3600 },
        fixture.org,
      ),
    );
    v2emulator = new Emulator({
      nodes: 15,
      firstIndex: 1001,
      collective: COLLECTIVE,
      servers: [`tls://127.0.0.1:${nats.port}`],
      caFile: join(dir, "ca.pem"),
      security: new ChoriaSecurity({
        seedFile: join(dir, "emu2.seed"),
        tokenFile: join(dir, "emu2.jwt"),
        issuers: fixture.issuers,
        ...files("emulator"),
      }),
      issuer: fixture.org,
      workers: 0,
      logger: quietLogger,
    });
    await v2emulator.start();
    const mixed = new Client({
      security: v2,
      x509: new FileSecurity(files("alice")),
      protocols: [1, 2],
      servers: [`tls://127.0.0.1:${nats.port}`],
      collective: COLLECTIVE,
    });
    const v1only = new Client({
      x509: new FileSecurity(files("alice")),
      servers: [`tls://127.0.0.1:${nats.port}`],
      collective: COLLECTIVE,
    });
    try {
      const all = await mixed.ping({ windowed: true, windowMs: 500, timeoutMs: 5000 });
      expect(all.replies).toHaveLength(21 + 15);
      expect(new Set(all.replies.map((x) => x.sender)).size).toBe(36);
      const rpc = await mixed.request("rpcutil", "ping", {}, { nodes: all.replies.map((x) => x.sender) });
      expect(rpc.replies.filter((x) => x.statuscode === 0)).toHaveLength(36);
      // a v1-only client reaches only the v1 nodes; v2 nodes count its request as wrong_protocol
      const only = await v1only.ping({ windowed: true, windowMs: 500, timeoutMs: 5000 });
      expect(only.replies).toHaveLength(21);
      const [shard] = await v2emulator.shardStats();
      expect(shard?.decoder.rejected.wrong_protocol).toBeGreaterThan(0);
    } finally {
      await mixed.close();
      await v1only.close();
    }
  });
});

function forge(
  who: string,
  o: { callerid?: string; tamper?: boolean; timeS?: number },
): { bytes: Uint8Array; id: string; callerid: string } {
  const p = pki[who] as (typeof pki)[string];
  const key = new FileSecurity({ ...files(who), allowList: [".*"] }) as FileSecurity | undefined;
  const callerid = o.callerid ?? "choria=alice.mcollective";
  const id = newRequestIdV1();
  const req = encodeRequestV1({
    message: '{"agent":"rpcutil","action":"ping","data":{}}',
    requestid: id,
    senderid: "forger",
    callerid,
    collective: COLLECTIVE,
    agent: "rpcutil",
    ttl: 60,
    time: o.timeS ?? Math.floor(Date.now() / 1000),
    filter: emptyFilter(),
  });
  const sig = (key as FileSecurity).sign(req);
  const signed = o.tamper ? Buffer.from(req.toString().replace('"forger"', '"forgeR"')) : req;
  const bytes = encodeTransportV1(encodeSecureRequestV1(signed, sig, p.pem), {
    reply: replySubject(COLLECTIVE, callerid, id),
  });
  return { bytes, id, callerid };
}

async function sendForged(
  who: string,
  o: { callerid?: string; tamper?: boolean; timeS?: number } = {},
): Promise<boolean> {
  const f = forge(who, o);
  return publishAndWait(f.bytes, f.id, f.callerid);
}

/** How many messages node1 has refused or dropped so far, whatever the reason. */
function refusals(): number {
  const st = server.stats;
  return st.unvalidated + st.ttlexpired + Object.values(st.dropped).reduce((a, b) => a + b, 0);
}

/**
 * Publishes to node1 and says whether it answered: true on a reply, false as soon as
 * node1 counts the message as refused or dropped (or after 3 s), so refusals cost no wait.
 */
async function publishAndWait(
  bytes: Uint8Array,
  id: string,
  callerid = "choria=alice.mcollective",
): Promise<boolean> {
  const before = refusals();
  const sub = raw.subscribe(replySubject(COLLECTIVE, callerid, id), { max: 1 });
  let answered = false;
  void (async () => {
    for await (const _ of sub) answered = true;
  })();
  await raw.flush();
  raw.publish(directSubject(COLLECTIVE, "node1.mcollective"), bytes);
  const deadline = Date.now() + 3000;
  while (!answered && refusals() === before && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 10));
  sub.unsubscribe();
  return answered;
}
