import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import bcrypt from "bcrypt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cryptLines } from "../../../src/apps/cli/aaa.js";
import { Client } from "../../../src/client/index.js";
import { builtinDDL } from "../../../src/core/ddl/index.js";
import { decodeRequest, decodeSecureRequest } from "../../../src/core/protocol/index.js";
import {
  ChoriaSecurity,
  createClientToken,
  createServerToken,
  generateKeyPair,
  sign,
  verify,
  writeSeedFile,
} from "../../../src/core/security/index.js";
import { AaaService, loadAaaConfig } from "../../../src/services/aaa/index.js";
import { startNats, type TestNats } from "../../helpers/nats.js";
import { ALICE, aaaFixture, hashPw, loginBody, rpcRequest, type AaaFixture } from "./fixture.js";

let nats: TestNats;
let fx: AaaFixture;
let svc: AaaService;
let client: Client;
const userKp = generateKeyPair();
const SIGNER_ID = "aaa.example";

beforeAll(async () => {
  nats = await startNats();
  fx = aaaFixture();
  // the embedded node's own credentials, and a plain Choria server config for it
  const nodeKp = generateKeyPair();
  writeSeedFile(join(fx.dir, "node.seed"), nodeKp);
  writeFileSync(
    join(fx.dir, "node.jwt"),
    createServerToken(
      { identity: SIGNER_ID, collectives: ["mcollective"], publicKeyHex: nodeKp.publicHex, validityS: 3600 },
      fx.org,
    ),
  );
  writeFileSync(
    join(fx.dir, "node.conf"),
    [
      `identity = ${SIGNER_ID}`,
      "collectives = mcollective",
      `plugin.choria.middleware_hosts = ${nats.url}`,
      "plugin.security.provider = choria",
      "plugin.security.choria.seed_file = node.seed",
      "plugin.security.choria.token_file = node.jwt",
      "plugin.security.issuer.names = dev",
      `plugin.security.issuer.dev.public = ${fx.orgKp.publicHex}`,
      "loglevel = error",
    ].join("\n"),
  );
  const file = fx.writeConfig({
    ...fx.config,
    choria_config: "node.conf",
    loglevel: process.env.AAA_DEBUG ? "debug" : "error",
    basicjwt_signer: { ...(fx.config.basicjwt_signer as Record<string, unknown>), choria_service: true },
  });
  svc = new AaaService(loadAaaConfig(file));
  await svc.start();

  // who asks aaa_signer over RPC: a user as the login issues them, signed_fleet_management
  // only; the embedded node lets such callers reach aaa_signer (and nothing else) unsigned
  const askerKp = generateKeyPair();
  writeSeedFile(join(fx.dir, "asker.seed"), askerKp);
  writeFileSync(
    join(fx.dir, "asker.jwt"),
    createClientToken(
      {
        callerid: "choria=asker",
        publicKeyHex: askerKp.publicHex,
        validityS: 3600,
        permissions: { signed_fleet_management: true },
      },
      fx.org,
    ),
  );
  client = new Client({
    security: new ChoriaSecurity({
      seedFile: join(fx.dir, "asker.seed"),
      tokenFile: join(fx.dir, "asker.jwt"),
      issuers: [fx.orgKp.publicHex],
    }),
    servers: [nats.url],
    collective: "mcollective",
  });
  client.registerDDL(builtinDDL("aaa_signer"));
});

afterAll(async () => {
  await client?.close();
  await svc?.stop();
  await nats?.stop();
  fx?.cleanup();
});

async function login(): Promise<string> {
  const out = await fetch(`http://127.0.0.1:${String(svc.port)}/choria/v1/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(loginBody(userKp, ALICE.username, ALICE.password)),
  });
  expect(out.status).toBe(200);
  return ((await out.json()) as { token: string }).token;
}

async function rpcSign(token: string, req: Buffer, signer = userKp.seedHex) {
  const r = await client.request(
    "aaa_signer",
    "sign",
    { request: req.toString("utf8"), token, signature: sign(signer, req).toString("hex") },
    { mode: "service", timeoutMs: 10_000 },
  );
  expect(r.replies).toHaveLength(1);
  return r.replies[0] as {
    sender: string;
    statuscode: number;
    statusmsg: string;
    data: Record<string, unknown>;
  };
}

describe("AaaService with the aaa_signer service agent", () => {
  it("signs over RPC: the reply holds the secure request JSON", async () => {
    const token = await login();
    const req = rpcRequest("rpcutil", "inventory");
    const reply = await rpcSign(token, req);
    expect(reply.sender).toBe(SIGNER_ID);
    expect(reply.statuscode).toBe(0);
    const { secure, requestBytes, signature } = decodeSecureRequest(
      Buffer.from(reply.data.secure_request as string),
    );
    expect(secure.caller).toBe(token);
    expect(verify(fx.delegatorKp.publicHex, requestBytes, signature)).toBe(true);
    expect(decodeRequest(requestBytes).request.caller).toBe("up=alice");
  });

  it("a denied request is Choria's Aborted with Request Denied, and audited as a deny", async () => {
    const token = await login();
    const reply = await rpcSign(token, rpcRequest("service", "stop", { service: "sshd" }));
    expect(reply.statuscode).toBe(1);
    expect(reply.statusmsg).toBe("Request Denied");
    expect(reply.data.secure_request).toBe("");
    const last = JSON.parse(readFileSync(fx.auditFile, "utf8").trim().split("\n").at(-1) as string) as Record<
      string,
      unknown
    >;
    expect(last).toMatchObject({ action: "deny", callerid: "up=alice" });
  });

  it("a bad signature over RPC is refused the same way", async () => {
    const token = await login();
    const reply = await rpcSign(token, rpcRequest("rpcutil", "ping"), generateKeyPair().seedHex);
    expect(reply.statuscode).toBe(1);
    expect(reply.statusmsg).toBe("Request Denied");
  });

  it("exposes its ports and stops cleanly", () => {
    expect(svc.port).toBeGreaterThan(0);
    expect(svc.monitorPort).toBeGreaterThan(0);
    expect(svc.agent?.identity).toBe(SIGNER_ID);
  });
});

describe("AaaService with the cedar authorizer", () => {
  it("allows what the user's cedar_policy permits and denies the rest", async () => {
    const cfx = aaaFixture();
    try {
      cfx.writeUsers([
        {
          username: "pat",
          password: hashPw("pw"),
          cedar_policy: 'permit(principal, action in Chorus::Action::"rpcutil", resource);',
        },
      ]);
      const s = new AaaService(loadAaaConfig(cfx.writeConfig({ ...cfx.config, authorizer: "cedar" })));
      await s.start();
      try {
        const base = `http://127.0.0.1:${String(s.port)}/choria/v1`;
        const lr = await fetch(`${base}/login`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(loginBody(userKp, "pat", "pw")),
        });
        const { token } = (await lr.json()) as { token: string };
        const ask = async (agent: string, action: string): Promise<number> => {
          const req = rpcRequest(agent, action, {}, { caller: "up=pat" });
          const r = await fetch(`${base}/sign`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({
              token,
              signature: sign(userKp.seedHex, req).toString("hex"),
              request: req.toString("base64"),
            }),
          });
          return r.status;
        };
        expect(await ask("rpcutil", "ping")).toBe(200);
        expect(await ask("puppet", "disable")).toBe(403);
      } finally {
        await s.stop();
      }
    } finally {
      cfx.cleanup();
    }
  });
});

describe("AaaService start-up failures", () => {
  it("a broken signer seed fails start() with the reason and leaves nothing listening", async () => {
    const bfx = aaaFixture();
    try {
      writeFileSync(join(bfx.dir, "signer.seed"), "not a seed");
      const s = new AaaService(loadAaaConfig(bfx.writeConfig(bfx.config)));
      await expect(s.start()).rejects.toThrow(/signer\.seed/);
      expect(s.port).toBeUndefined();
      expect(s.monitorPort).toBeUndefined();
    } finally {
      bfx.cleanup();
    }
  });
});

describe("chorus aaa crypt", () => {
  it("hashes one password per line at the given cost", async () => {
    const input = new PassThrough();
    const output = new PassThrough();
    let out = "";
    output.on("data", (d: Buffer) => (out += d.toString()));
    input.end("first\n\nsecond\n");
    expect(await cryptLines(input, output, 4)).toBe(2);
    const [a, b] = out.trim().split("\n") as [string, string];
    expect(a).toMatch(/^\$2b\$04\$/);
    expect(await bcrypt.compare("first", a)).toBe(true);
    expect(await bcrypt.compare("second", b)).toBe(true);
  });
});
