import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Client, ClientError, remoteSigner, type RequestSigner } from "../../src/client/index.js";
import {
  decodeRequest,
  decodeSecureRequest,
  decodeTransport,
  encodeMessage,
  encodeReply,
  encodeSecureReply,
  encodeSecureRequest,
  encodeTransport,
  nowNanos,
  serviceSubject,
} from "../../src/core/protocol/index.js";
import {
  ChoriaSecurity,
  createClientToken,
  createServerToken,
  generateKeyPair,
  orgIssuer,
  sign,
  verify,
  writeSeedFile,
  type Issuer,
} from "../../src/core/security/index.js";
import { RequestDecoder } from "../../src/server/index.js";
import { clientSettings, loadConfig } from "../../src/core/config/index.js";
import { startNats, type TestNats } from "../helpers/nats.js";
import { COLLECTIVE, TEST_DDL } from "./fleet.js";
import { startAaaTestServer, type AaaTestServer } from "./signer-server.js";

// A client configured for remote signing never signs fleet requests itself: it proves
// the request to the AAA signer with its seed and login token, and publishes exactly the
// secure request the signer returns. A real nats-server carries what it publishes.
let nats: TestNats;
let aaa: AaaTestServer;
let dir: string;
let org: Issuer;
let issuers: string[];
let userSecurity: ChoriaSecurity;
let delegator: { seedHex: string; token: string };
let sniffer: NatsConnection;
const published: { subject: string; data: Uint8Array }[] = [];
const tokenFile = () => join(dir, "user.jwt");
const seedFile = () => join(dir, "user.seed");

function userToken(publicHex: string, validityS: number): string {
  return createClientToken(
    {
      callerid: "up=alice",
      publicKeyHex: publicHex,
      validityS,
      permissions: { signed_fleet_management: true },
    },
    org,
  );
}

function clientWith(signer: RequestSigner): Client {
  return new Client({
    security: userSecurity,
    servers: [nats.url],
    collective: COLLECTIVE,
    identity: "client.test",
    requestSigner: signer,
  });
}

function httpSigner(over: Partial<Parameters<typeof remoteSigner>[0]> = {}): RequestSigner {
  return remoteSigner({
    url: `${aaa.url}/choria/v1/sign`,
    tokenFile: tokenFile(),
    seedFile: seedFile(),
    caFile: aaa.caFile,
    ...over,
  });
}

const ask = (c: Client, nodes: string[], extra: Record<string, unknown> = {}) =>
  c.request("testagent", "echo", { message: "hi" }, { nodes, ddl: TEST_DDL, timeoutMs: 200, ...extra });

beforeAll(async () => {
  nats = await startNats();
  dir = mkdtempSync(join(tmpdir(), "chorus-signer-"));
  const orgKp = generateKeyPair();
  org = orgIssuer(orgKp);
  issuers = [orgKp.publicHex];
  const userKp = generateKeyPair();
  writeSeedFile(seedFile(), userKp);
  writeFileSync(tokenFile(), userToken(userKp.publicHex, 3600));
  userSecurity = new ChoriaSecurity({ seedFile: seedFile(), tokenFile: tokenFile(), issuers });
  const dKp = generateKeyPair();
  delegator = {
    seedHex: dKp.seedHex,
    token: createClientToken(
      {
        callerid: "aaa=signer",
        publicKeyHex: dKp.publicHex,
        validityS: 3600,
        permissions: { authentication_delegator: true },
      },
      org,
    ),
  };
  aaa = await startAaaTestServer({ issuers, delegator });
  sniffer = await connect({ servers: nats.url });
  sniffer.subscribe(`${COLLECTIVE}.node.>`, {
    callback: (err, msg) => {
      if (!err) published.push({ subject: msg.subject, data: msg.data });
    },
  });
  await sniffer.flush();
}, 30_000);

afterAll(async () => {
  await sniffer?.drain();
  await aaa?.stop();
  await nats?.stop();
  rmSync(dir, { recursive: true, force: true });
});

beforeEach(async () => {
  aaa.mode = "allow";
  aaa.calls.length = 0;
  await sniffer.flush();
  published.length = 0;
  writeFileSync(tokenFile(), userToken(userSecurity.publicHex, 3600));
});

/** Everything published so far has reached the sniffer. */
async function settle(): Promise<void> {
  const probe = await connect({ servers: nats.url });
  await probe.flush();
  await probe.close();
  await sniffer.flush();
}

describe("remote HTTP signer", () => {
  it("proves the request to the signer and publishes the secure request it returns", async () => {
    const c = clientWith(httpSigner());
    try {
      const r = await ask(c, ["n1.test"]);
      await settle();
      expect(aaa.calls).toHaveLength(1);
      const call = aaa.calls[0]!;
      expect(call.path).toBe("/choria/v1/sign");
      // the signature over the raw request bytes verified with the token's key (server side)
      expect(call.proofOk).toBe(true);
      expect(call.body.token).toBe(readFileSync(tokenFile(), "utf8").trim());
      const requestBytes = Buffer.from(String(call.body.request), "base64");
      const { request } = decodeRequest(requestBytes);
      expect(request.caller).toBe("up=alice");
      expect(request.id).toBe(r.stats.requestid);
      expect(request.agent).toBe("testagent");
      expect(
        verify(userSecurity.publicHex, requestBytes, Buffer.from(String(call.body.signature), "hex")),
      ).toBe(true);

      expect(published).toHaveLength(1);
      expect(published[0]!.subject).toBe(`${COLLECTIVE}.node.n1.test`);
      const { inner } = decodeTransport(published[0]!.data);
      expect(Buffer.from(inner).equals(call.returned!)).toBe(true);
      expect(decodeSecureRequest(inner).secure.signer).toBe(delegator.token);
      // what a node makes of it: caller alice, signed by the delegator
      const decoded = new RequestDecoder({ security: userSecurity }).decode(published[0]!.data);
      expect(decoded.ok).toBe(true);
      if (decoded.ok) {
        expect(decoded.callerClaims.callerid).toBe("up=alice");
        expect(decoded.signerClaims?.callerid).toBe("aaa=signer");
      }
    } finally {
      await c.close();
    }
  });

  it("signs each batch's request with its own call", async () => {
    const c = clientWith(httpSigner());
    try {
      await ask(c, ["a.test", "b.test", "c.test"], { batchSize: 1, batchSleepMs: 0 });
      await settle();
      expect(aaa.calls).toHaveLength(3);
      const ids = aaa.calls.map(
        (k) => decodeRequest(Buffer.from(String(k.body.request), "base64")).request.id,
      );
      expect(new Set(ids).size).toBe(3);
      expect(published.map((p) => p.subject).sort()).toEqual(
        ["a.test", "b.test", "c.test"].map((n) => `${COLLECTIVE}.node.${n}`),
      );
      const sent = published.map(
        (p) => decodeRequest(decodeSecureRequest(decodeTransport(p.data).inner).requestBytes).request.id,
      );
      expect(sent.sort()).toEqual([...ids].sort());
    } finally {
      await c.close();
    }
  });

  it("a denial is a signer_denied error and nothing is published", async () => {
    aaa.mode = "deny";
    const c = clientWith(httpSigner());
    try {
      const err = await ask(c, ["n1.test"]).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ClientError);
      expect((err as ClientError).code).toBe("signer_denied");
      expect((err as ClientError).message).toContain("Request denied");
      await settle();
      expect(aaa.calls).toHaveLength(1);
      expect(published).toHaveLength(0);
    } finally {
      await c.close();
    }
  });

  it("refuses a signer whose certificate the configured CA did not issue", async () => {
    const c = clientWith(httpSigner({ caFile: aaa.otherCaFile }));
    try {
      const err = await ask(c, ["n1.test"]).catch((e: unknown) => e);
      expect((err as ClientError).code).toBe("signer_failed");
      expect((err as ClientError).message).toMatch(/certificate/i);
      await settle();
      // the TLS handshake failed: the token never left the client
      expect(aaa.calls).toHaveLength(0);
      expect(published).toHaveLength(0);
    } finally {
      await c.close();
    }
  });

  it("refuses a secure request for some other request", async () => {
    // a signer answering with an earlier signed request must not get it re-published
    let first: Buffer | undefined;
    const replaying: RequestSigner = {
      kind: "replaying",
      async sign(request, ctx) {
        const signed = await httpSigner().sign(request, ctx);
        first ??= signed;
        return first;
      },
    };
    const c = clientWith(replaying);
    try {
      await ask(c, ["n1.test"]);
      const err = await ask(c, ["n1.test"]).catch((e: unknown) => e);
      expect((err as ClientError).code).toBe("signer_failed");
      await settle();
      expect(published).toHaveLength(1);
    } finally {
      await c.close();
    }
  });

  it("warns once when the token expires within 5 minutes and fails once it has expired", async () => {
    writeFileSync(tokenFile(), userToken(userSecurity.publicHex, 120));
    const warnings: Date[] = [];
    const c = clientWith(httpSigner({ onTokenExpiring: (at) => warnings.push(at) }));
    try {
      await ask(c, ["n1.test"]);
      await ask(c, ["n1.test"]);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]!.getTime() - Date.now()).toBeLessThanOrEqual(120_000);
    } finally {
      await c.close();
    }
    aaa.calls.length = 0;
    const later = clientWith(httpSigner({ now: () => Date.now() + 3_600_000 }));
    try {
      const err = await ask(later, ["n1.test"]).catch((e: unknown) => e);
      expect((err as ClientError).code).toBe("token_expired");
      expect((err as ClientError).message).toMatch(/^token expired at \d{4}-/);
      expect(aaa.calls).toHaveLength(0);
    } finally {
      await later.close();
    }
  });
});

describe("remote signer through the aaa_signer service agent", () => {
  it("asks the service with the client's own RPC and publishes what it returns", async () => {
    const server = generateKeyPair();
    const serverToken = createServerToken(
      { identity: "aaa.test", collectives: [COLLECTIVE], publicKeyHex: server.publicHex, validityS: 3600 },
      org,
    );
    const svc = await connect({ servers: nats.url });
    let deny = false;
    const seen: { localOk: boolean; data: Record<string, string> }[] = [];
    svc.subscribe(serviceSubject(COLLECTIVE, "aaa_signer"), {
      callback: (err, msg) => {
        if (err) return;
        const { inner, transport } = decodeTransport(msg.data);
        const sr = decodeSecureRequest(inner);
        // the request to the signer itself is signed by the client, with its own token
        const localOk =
          sr.secure.caller === userSecurity.token &&
          verify(userSecurity.publicHex, sr.requestBytes, sr.signature);
        const { request, message } = decodeRequest(sr.requestBytes);
        const body = JSON.parse(message.toString()) as { data: Record<string, string> };
        seen.push({ localOk, data: body.data });
        const toSign = Buffer.from(body.data.request!, "utf8");
        const proofOk = verify(userSecurity.publicHex, toSign, Buffer.from(body.data.signature!, "hex"));
        const out =
          proofOk && !deny
            ? {
                statuscode: 0,
                statusmsg: "OK",
                data: {
                  secure_request: encodeSecureRequest(
                    toSign,
                    sign(delegator.seedHex, toSign),
                    userSecurity.token,
                    delegator.token,
                  ).toString("utf8"),
                },
              }
            : { statuscode: 1, statusmsg: "Request denied", data: {} };
        const replyBytes = encodeReply({
          message: encodeMessage(JSON.stringify(out)),
          request: request.id,
          sender: "aaa.test",
          agent: "aaa_signer",
          time: nowNanos(),
        });
        svc.publish(
          transport.headers.reply as string,
          encodeTransport(encodeSecureReply(replyBytes, sign(server.seedHex, replyBytes), serverToken), {
            sender: "aaa.test",
          }),
        );
      },
    });
    await svc.flush();
    const c = clientWith(remoteSigner({ service: true, tokenFile: tokenFile(), seedFile: seedFile() }));
    try {
      const r = await ask(c, ["n1.test"]);
      await settle();
      expect(seen).toHaveLength(1);
      expect(seen[0]!.localOk).toBe(true);
      expect(seen[0]!.data.token).toBe(readFileSync(tokenFile(), "utf8").trim());
      expect(decodeRequest(Buffer.from(seen[0]!.data.request!, "utf8")).request.id).toBe(r.stats.requestid);
      expect(published).toHaveLength(1);
      const decoded = new RequestDecoder({ security: userSecurity }).decode(published[0]!.data);
      expect(decoded.ok && decoded.signerClaims?.callerid).toBe("aaa=signer");

      // the service's refusal (an aborted reply) stops the request too
      deny = true;
      const err = await ask(c, ["n1.test"]).catch((e: unknown) => e);
      expect((err as ClientError).code).toBe("signer_denied");
      await settle();
      expect(seen).toHaveLength(2);
      expect(published).toHaveLength(1);
    } finally {
      await c.close();
      await svc.drain();
    }
  });
});

describe("request signer from a client config", () => {
  function config(lines: string[]): string {
    const path = join(dir, `client-${Math.random().toString(36).slice(2)}.conf`);
    writeFileSync(
      path,
      [
        `plugin.choria.middleware_hosts = ${nats.url}`,
        `plugin.security.issuer.names = dev`,
        `plugin.security.issuer.dev.public = ${issuers[0]}`,
        `plugin.security.choria.ca = ${aaa.caFile}`,
        "plugin.security.choria.seed_file = user.seed",
        "plugin.security.choria.token_file = user.jwt",
        ...lines,
        "",
      ].join("\n"),
    );
    return path;
  }

  it("Choria's request_signer keys make fromConfigFile sign remotely, warning through the logger", async () => {
    writeFileSync(tokenFile(), userToken(userSecurity.publicHex, 120));
    const path = config([`plugin.choria.security.request_signer.url = ${aaa.url}/choria/v1/sign`]);
    const warnings: string[] = [];
    const c = await Client.fromConfigFile(path, {
      security: userSecurity,
      logger: { debug() {}, info() {}, warn: (m: string) => warnings.push(m), error() {} } as never,
    });
    try {
      await ask(c, ["n1.test"]);
      await settle();
      expect(aaa.calls).toHaveLength(1);
      expect(published).toHaveLength(1);
      expect(decodeSecureRequest(decodeTransport(published[0]!.data).inner).secure.signer).toBe(
        delegator.token,
      );
      expect(warnings.filter((w) => w.startsWith("login token expires at"))).toHaveLength(1);
    } finally {
      await c.close();
    }
  });

  it("before the first login, fromConfigFile says there is no login token", async () => {
    const path = config([
      `plugin.choria.security.request_signer.url = ${aaa.url}/choria/v1/sign`,
      "plugin.security.choria.token_file = missing.jwt",
    ]);
    const err = await Client.fromConfigFile(path).catch((e: unknown) => e);
    expect((err as ClientError).code).toBe("no_token");
    expect((err as ClientError).message).toBe(`no login token at ${join(dir, "missing.jwt")}`);
  });

  it("settings: token and seed default to the client's own; url and service exclude each other", () => {
    const s = clientSettings(
      loadConfig(
        config([
          "plugin.choria.security.request_signer.service = true",
          "plugin.login.aaasvc.login.url = https://a/l, https://b/l",
        ]),
      ),
    );
    expect(s.requestSigner).toEqual({ service: true, tokenFile: tokenFile(), seedFile: seedFile() });
    expect(s.loginUrls).toEqual(["https://a/l", "https://b/l"]);
    expect(clientSettings(loadConfig(config([]))).requestSigner).toBeUndefined();
    expect(() =>
      clientSettings(
        loadConfig(
          config([
            "plugin.choria.security.request_signer.service = true",
            "plugin.choria.security.request_signer.url = https://a/sign",
          ]),
        ),
      ),
    ).toThrow(/request_signer.url and plugin.choria.security.request_signer.service cannot both be set/);
    expect(() =>
      clientSettings(loadConfig(config(["plugin.choria.security.request_signer.url = nats://a:4222"]))),
    ).toThrow(/must use https:\/\/ or http:\/\//);
  });
});
