import { readFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { request as httpRequest } from "node:http";
import { join } from "node:path";
import { writeFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeRequest, decodeSecureRequest } from "../../../src/core/protocol/index.js";
import {
  createCA,
  generateKeyPair,
  issueCert,
  sign,
  verify,
  verifyToken,
  type CertPair,
  type ClientClaims,
} from "../../../src/core/security/index.js";
import { AaaService, loadAaaConfig } from "../../../src/services/aaa/index.js";
import { ALICE, aaaFixture, loginBody, rpcRequest, type AaaFixture } from "./fixture.js";

interface Res {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Record<string, unknown>;
  text: string;
}

interface Tls {
  ca: string;
  cert?: string;
  key?: string;
}

/** POSTs raw bytes over real HTTP(S). */
function post(
  port: number,
  path: string,
  body: string | Buffer,
  tls?: Tls,
  contentType = "application/json",
): Promise<Res> {
  return new Promise((resolve, reject) => {
    const opts = {
      host: "127.0.0.1",
      port,
      path,
      method: "POST",
      headers: { "content-type": contentType, "content-length": Buffer.byteLength(body) },
      ...(tls && { ca: tls.ca, servername: "localhost", ...(tls.cert && { cert: tls.cert, key: tls.key }) }),
    };
    const req = (tls ? httpsRequest : httpRequest)(opts, (res) => {
      let text = "";
      res.on("data", (d: Buffer) => (text += d.toString()));
      res.on("end", () => {
        let parsed: Record<string, unknown> = {};
        try {
          parsed = JSON.parse(text) as Record<string, unknown>;
        } catch {
          // not JSON
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: parsed, text });
      });
    });
    req.on("error", reject);
    req.end(body);
  });
}

async function scrape(port: number): Promise<string> {
  const r = await fetch(`http://127.0.0.1:${port}/metrics`);
  return r.text();
}

function metricValue(text: string, name: string, labelPart = ""): number {
  return text
    .split("\n")
    .filter((l) => l.startsWith(name) && l.includes(labelPart))
    .reduce((s, l) => s + Number(l.split(" ").pop()), 0);
}

let fx: AaaFixture;
let ca: CertPair;
let client: CertPair;
let svc: AaaService;
let tls: Tls;
const userKp = generateKeyPair();

beforeAll(async () => {
  fx = aaaFixture();
  ca = await createCA("aaa test CA", 1);
  const server = await issueCert(ca, "localhost", { localhost: true }, 1, "server");
  client = await issueCert(ca, "alice", {}, 1, "client");
  writeFileSync(join(fx.dir, "ca.pem"), ca.certPem);
  writeFileSync(join(fx.dir, "server.pem"), server.certPem);
  writeFileSync(join(fx.dir, "server.key"), server.keyPem);
  const file = fx.writeConfig({
    ...fx.config,
    tls_certificate: "server.pem",
    tls_key: "server.key",
    tls_ca: "ca.pem",
    userlist_authenticator: {
      ...(fx.config.userlist_authenticator as Record<string, unknown>),
      max_failures_per_user: 3,
    },
  });
  svc = new AaaService(loadAaaConfig(file));
  await svc.start();
  tls = { ca: ca.certPem, cert: client.certPem, key: client.keyPem };
});
afterAll(async () => {
  await svc?.stop();
  fx?.cleanup();
});

async function login(): Promise<string> {
  const r = await post(
    svc.port as number,
    "/choria/v1/login",
    JSON.stringify(loginBody(userKp, ALICE.username, ALICE.password)),
    tls,
  );
  expect(r.status).toBe(200);
  return r.body.token as string;
}

describe("AAA HTTP API over mutual TLS", () => {
  it("refuses a client without a certificate from the CA", async () => {
    const body = JSON.stringify(loginBody(userKp, ALICE.username, ALICE.password));
    await expect(post(svc.port as number, "/choria/v1/login", body, { ca: ca.certPem })).rejects.toThrow();
    const other = await createCA("other CA", 1);
    const stranger = await issueCert(other, "mallory", {}, 1, "client");
    await expect(
      post(svc.port as number, "/choria/v1/login", body, {
        ca: ca.certPem,
        cert: stranger.certPem,
        key: stranger.keyPem,
      }),
    ).rejects.toThrow();
  });

  it("logs in: 200 with a token chained to the org issuer", async () => {
    const token = await login();
    const claims = verifyToken(token, [fx.orgKp.publicHex]) as ClientClaims;
    expect(claims.callerid).toBe("up=alice");
    expect(claims.iss.startsWith("C-")).toBe(true);
  });

  it("a bad password is 401 with Choria's body", async () => {
    const r = await post(
      svc.port as number,
      "/choria/v1/login",
      JSON.stringify(loginBody(userKp, "alice", "nope")),
      tls,
    );
    expect(r.status).toBe(401);
    expect(r.body).toEqual({ error: "Login failed" });
  });

  it("locks out after max_failures_per_user with 429 and Retry-After", async () => {
    const body = JSON.stringify(loginBody(userKp, "locky", "nope"));
    for (let i = 0; i < 3; i++)
      expect((await post(svc.port as number, "/choria/v1/login", body, tls)).status).toBe(401);
    const r = await post(svc.port as number, "/choria/v1/login", body, tls);
    expect(r.status).toBe(429);
    expect(Number(r.headers["retry-after"])).toBeGreaterThan(250);
    expect(r.body.error).toMatch(/^Login failed/);
  });

  it("signs a request end to end: a v2 secure request with the caller rewritten, audited", async () => {
    const token = await login();
    const req = rpcRequest("rpcutil", "ping", {}, { caller: "up=alice" });
    const r = await post(
      svc.port as number,
      "/choria/v1/sign",
      JSON.stringify({
        token,
        signature: sign(userKp.seedHex, req).toString("hex"),
        request: req.toString("base64"),
      }),
      tls,
    );
    expect(r.status, r.text).toBe(200);
    const secure = Buffer.from(r.body.secure_request as string, "base64");
    const { secure: s, requestBytes, signature } = decodeSecureRequest(secure);
    expect(s.protocol).toBe("io.choria.protocol.v2.secure_request");
    expect(s.caller).toBe(token);
    expect(verify(fx.delegatorKp.publicHex, requestBytes, signature)).toBe(true);
    const { request } = decodeRequest(requestBytes);
    expect(request.caller).toBe("up=alice");
    expect(request.agent).toBe("rpcutil");
    const audit = readFileSync(fx.auditFile, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(audit.at(-1)).toMatchObject({
      protocol: "io.choria.signer.v1.signature_audit",
      callerid: "up=alice",
      action: "allow",
      site: "testsite",
    });
  });

  it("a request the user's acls do not allow is 403 Request denied", async () => {
    const token = await login();
    const req = rpcRequest("service", "restart", { service: "httpd" });
    const r = await post(
      svc.port as number,
      "/choria/v1/sign",
      JSON.stringify({
        token,
        signature: sign(userKp.seedHex, req).toString("hex"),
        request: req.toString("base64"),
      }),
      tls,
    );
    expect(r.status).toBe(403);
    expect(r.body).toEqual({ error: "Request denied" });
  });

  it("a request signed by another key is 401", async () => {
    const token = await login();
    const req = rpcRequest("rpcutil", "ping");
    const r = await post(
      svc.port as number,
      "/choria/v1/sign",
      JSON.stringify({
        token,
        signature: sign(generateKeyPair().seedHex, req).toString("hex"),
        request: req.toString("base64"),
      }),
      tls,
    );
    expect(r.status).toBe(401);
  });

  it("bad input is 400 (413 when too large) and counted, and the service keeps answering", async () => {
    const port = svc.port as number;
    const before = metricValue(await scrape(svc.monitorPort as number), "chorus_aaa_bad_requests_total");
    const cases: [string, string | Buffer, number][] = [
      ["/choria/v1/login", "{not json", 400],
      ["/choria/v1/login", JSON.stringify({ username: "alice" }), 400],
      ["/choria/v1/login", JSON.stringify({ ...loginBody(userKp, "a", "b"), timestamp: { x: 1 } }), 400],
      ["/choria/v1/login", "[]", 400],
      ["/choria/v1/sign", JSON.stringify({ token: "x" }), 400],
      ["/choria/v1/sign", JSON.stringify({ token: "x", request: "not base64 !!" }), 400],
      ["/choria/v1/sign", JSON.stringify({ token: "x", request: Buffer.from("{}").toString("base64") }), 400],
      ["/choria/v1/sign", JSON.stringify({ token: "x".repeat(10), request: "A".repeat(200 * 1024) }), 413],
    ];
    for (const [path, body, status] of cases) {
      const r = await post(port, path, body, tls);
      expect(r.status, `${path} ${String(body).slice(0, 40)}`).toBe(status);
      expect(typeof r.body.error).toBe("string");
    }
    const after = metricValue(await scrape(svc.monitorPort as number), "chorus_aaa_bad_requests_total");
    expect(after - before).toBe(cases.length);
    // still serving
    await login();
  });

  it("serves Choria's metric names and build info on monitor_port", async () => {
    const text = await scrape(svc.monitorPort as number);
    expect(text).toMatch(/choria_aaa_build_info\{site="testsite",version="[^"]+"\} 1/);
    expect(metricValue(text, "choria_aaa_signer_allowed", 'site="testsite"')).toBeGreaterThanOrEqual(1);
    expect(metricValue(text, "choria_aaa_signer_denied")).toBeGreaterThanOrEqual(1);
    expect(metricValue(text, "choria_aaa_authorizer_denied", 'action="service.restart"')).toBe(1);
    expect(
      metricValue(text, "choria_aaa_authenticator_errors", 'authenticator="userlist"'),
    ).toBeGreaterThanOrEqual(4);
    expect(text).toMatch(/choria_aaa_authenticator_time_count\{site="testsite",authenticator="userlist"\}/);
    expect(metricValue(text, "chorus_aaa_login_lockouts_total")).toBe(1);
  });
});
