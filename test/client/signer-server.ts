import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodeSecureRequest } from "../../src/core/protocol/index.js";
import {
  createCA,
  createClientToken,
  issueCert,
  sign,
  verify,
  verifyToken,
  type ClientClaims,
  type Issuer,
} from "../../src/core/security/index.js";

/** One body the test server received, with what it made of it. */
export interface SeenCall {
  path: string;
  body: Record<string, unknown>;
  /** the proof's signature verified with the key the token (sign) or the body (login) names */
  proofOk: boolean;
  /** sign: the secure request returned (bytes), when one was */
  returned?: Buffer;
}

export interface AaaTestServer {
  url: string;
  /** CA that issued the server's certificate */
  caFile: string;
  /** a CA that did not */
  otherCaFile: string;
  calls: SeenCall[];
  /** what /choria/v1/sign does next */
  mode: "allow" | "deny";
  /** login: status 500 (a failing replica) */
  failLogin: boolean;
  stop(): Promise<void>;
}

export interface AaaTestServerOptions {
  issuers: string[];
  /** the delegator that signs requests */
  delegator: { seedHex: string; token: string };
  /** issues login tokens */
  loginIssuer?: Issuer;
  users?: Record<string, string>;
  loginValidityS?: number;
}

function readBody(req: import("node:http").IncomingMessage): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<string, unknown>);
      } catch (err) {
        reject(err as Error);
      }
    });
    req.on("error", reject);
  });
}

/**
 * An HTTPS server playing the AAA service's HTTP contract (Choria's /choria/v1/sign
 * and /choria/v1/login), checking every proof the way the service must.
 */
export async function startAaaTestServer(o: AaaTestServerOptions): Promise<AaaTestServer> {
  const dir = mkdtempSync(join(tmpdir(), "chorus-aaa-test-"));
  const ca = await createCA("test AAA CA", 1);
  const other = await createCA("some other CA", 1);
  const cert = await issueCert(ca, "aaa.test", { localhost: true }, 1, "server");
  const caFile = join(dir, "ca.pem");
  const otherCaFile = join(dir, "other-ca.pem");
  writeFileSync(caFile, ca.certPem);
  writeFileSync(otherCaFile, other.certPem);

  const state: AaaTestServer = {
    url: "",
    caFile,
    otherCaFile,
    calls: [],
    mode: "allow",
    failLogin: false,
    stop: async () => {},
  };

  const server: Server = createServer({ cert: cert.certPem, key: cert.keyPem }, (req, res) => {
    const reply = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    void readBody(req).then(
      (body) => {
        const call: SeenCall = { path: req.url ?? "", body, proofOk: false };
        state.calls.push(call);
        if (req.method !== "POST") return reply(405, { error: "POST only" });
        if (req.url === "/choria/v1/sign") {
          let claims: ClientClaims;
          try {
            claims = verifyToken(String(body.token), o.issuers) as ClientClaims;
          } catch {
            return reply(401, { error: "invalid token" });
          }
          const request = Buffer.from(String(body.request), "base64");
          call.proofOk = verify(claims.public_key, request, Buffer.from(String(body.signature), "hex"));
          if (!call.proofOk) return reply(400, { error: "invalid signature" });
          if (state.mode === "deny") return reply(403, { error: "Request denied" });
          const secure = encodeSecureRequest(
            request,
            sign(o.delegator.seedHex, request),
            String(body.token),
            o.delegator.token,
          );
          call.returned = secure;
          return reply(200, { secure_request: secure.toString("base64") });
        }
        if (req.url === "/choria/v1/login") {
          if (state.failLogin) return reply(500, { error: "backend down" });
          const { username, password, signature, public_key, timestamp } = body as Record<string, string>;
          call.proofOk = verify(
            String(public_key),
            Buffer.from(`${timestamp}:${username}:${password}`),
            Buffer.from(String(signature), "hex"),
          );
          if (!call.proofOk) return reply(400, { error: "invalid signature" });
          if (o.users?.[String(username)] !== password) return reply(401, { error: "Login failed" });
          const token = createClientToken(
            {
              callerid: `up=${username}`,
              publicKeyHex: String(public_key),
              validityS: o.loginValidityS ?? 3600,
              permissions: { signed_fleet_management: true },
            },
            o.loginIssuer as Issuer,
          );
          return reply(200, { token });
        }
        return reply(404, { error: "not found" });
      },
      () => reply(400, { error: "bad JSON" }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  state.url = `https://localhost:${port}`;
  state.stop = async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  };
  return state;
}
