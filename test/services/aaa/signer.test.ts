import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  decodeRequest,
  decodeSecureRequest,
  encodeMessage,
  encodeRequest,
  encodeTransport,
  newRequestId,
  nowNanos,
  replySubject,
  type Filter,
} from "../../../src/core/protocol/index.js";
import {
  createChainIssuer,
  createClientToken,
  createServerToken,
  generateKeyPair,
  sign,
  verify,
  type ChoriaSecurity,
  type ClientPermissions,
  type Issuer,
  type KeyPair,
} from "../../../src/core/security/index.js";
import {
  AgentRegistry,
  NodeRuntime,
  RequestDecoder,
  actionListAuthorizer,
  cedarAuthorizer,
  registerBuiltinAgents,
} from "../../../src/server/index.js";
import { FileAuditor, type AuditRecord, type Auditor } from "../../../src/services/aaa/auditors.js";
import { AaaMetrics } from "../../../src/services/aaa/metrics.js";
import {
  RequestSigner,
  UNVERIFIED_CALLER,
  type SignerAuthorizer,
  type SignerAuthzInput,
  type SignerOptions,
} from "../../../src/services/aaa/signer.js";
import { COLLECTIVE, makeFixture, parseReply, rawToken, type Fixture } from "../../server/helpers.js";

let fx: Fixture;
let nodeSec: ChoriaSecurity;
let dir: string;
let chain: Issuer;
let delegator: { kp: KeyPair; token: string };

const MAX_VALIDITY = 7200;

interface User {
  kp: KeyPair;
  token: string;
  callerid: string;
}

/** A user as the AAA login would issue it: chain-issued, signed_fleet_management only. */
function user(
  callerid = "up=alice",
  o: { validityS?: number; permissions?: ClientPermissions; agents?: string[]; cedar_policy?: string } = {},
): User {
  const kp = generateKeyPair();
  const token = createClientToken(
    {
      callerid,
      publicKeyHex: kp.publicHex,
      validityS: o.validityS ?? 3600,
      ...(o.cedar_policy === undefined && { agents: o.agents ?? ["rpcutil.*"] }),
      ...(o.cedar_policy !== undefined && { cedar_policy: o.cedar_policy }),
      permissions: o.permissions ?? { signed_fleet_management: true },
    },
    chain,
  );
  return { kp, token, callerid };
}

interface Req {
  bytes: Buffer;
  id: string;
  signature: string;
}

function request(
  u: User,
  agent = "rpcutil",
  body: { action: string; data?: Record<string, unknown> } | string = { action: "ping" },
  filter?: Filter,
): Req {
  const id = newRequestId();
  const payload = typeof body === "string" ? body : JSON.stringify({ agent, ...body, data: body.data ?? {} });
  const bytes = encodeRequest({
    message: encodeMessage(payload),
    id,
    sender: "laptop.example",
    caller: u.callerid,
    collective: COLLECTIVE,
    agent,
    ttl: 60,
    time: nowNanos(),
    ...(filter && { filter }),
  });
  return { bytes, id, signature: sign(u.kp.seedHex, bytes).toString("hex") };
}

const allowAll: SignerAuthorizer = { name: "test-allow", authorize: () => ({ allowed: true, reason: "ok" }) };

class MemoryAuditor implements Auditor {
  readonly name = "memory";
  records: AuditRecord[] = [];
  fail = false;
  audit(r: AuditRecord): Promise<void> {
    if (this.fail) return Promise.reject(new Error("disk on fire"));
    this.records.push(r);
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

function signer(o: Partial<SignerOptions> = {}): { s: RequestSigner; audit: MemoryAuditor } {
  const audit = new MemoryAuditor();
  const s = new RequestSigner({
    site: "testsite",
    issuers: fx.issuers,
    signerToken: delegator.token,
    signerSeedHex: delegator.kp.seedHex,
    maxValiditySeconds: MAX_VALIDITY,
    authorizer: allowAll,
    auditors: [audit],
    ...o,
  });
  return { s, audit };
}

/** What a node does with a published request: decode + verify with its own ChoriaSecurity. */
function nodeDecode(secureRequest: Buffer, caller: string, id: string) {
  const transport = encodeTransport(secureRequest, {
    reply: replySubject(COLLECTIVE, caller, id),
    sender: "laptop.example",
  });
  return new RequestDecoder({ security: nodeSec }).decode(transport);
}

beforeAll(() => {
  fx = makeFixture();
  nodeSec = fx.serverSecurity("node1.example");
  dir = mkdtempSync(join(tmpdir(), "chorus-aaa-signer-"));
  chain = createChainIssuer(fx.org, generateKeyPair(), 86400, { callerid: "aaa-login" });
  const kp = generateKeyPair();
  delegator = {
    kp,
    token: createClientToken(
      {
        callerid: "aaa=signer",
        publicKeyHex: kp.publicHex,
        validityS: 86400,
        permissions: { authentication_delegator: true },
      },
      fx.org,
    ),
  };
});
afterAll(() => {
  fx.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

describe("RequestSigner", () => {
  it("signs an allowed request that a node accepts as delegated, and audits it to a 0600 file", async () => {
    const path = join(dir, "ok-audit.log");
    const file = new FileAuditor({ path });
    const { s } = signer({ auditors: [file] });
    const u = user();
    const r = request(u);
    const out = await s.sign({ token: u.token, signature: r.signature, request: r.bytes });
    expect(out.ok).toBe(true);
    if (!out.ok) return;
    expect(out.callerid).toBe("up=alice");

    const { secure, requestBytes, signature } = decodeSecureRequest(out.secureRequest);
    expect(secure.caller).toBe(u.token);
    expect(secure.signer).toBe(delegator.token);
    expect(verify(delegator.kp.publicHex, requestBytes, signature)).toBe(true);

    const d = nodeDecode(out.secureRequest, u.callerid, r.id);
    expect(d.ok, d.ok ? "" : d.detail).toBe(true);
    if (!d.ok) return;
    expect(d.callerClaims.callerid).toBe("up=alice");
    expect(d.signerClaims?.callerid).toBe("aaa=signer");

    // and the node runs it: a signed rpcutil ping reply comes back
    const reg = new AgentRegistry();
    registerBuiltinAgents(reg);
    const node = new NodeRuntime({
      identity: "node1.example",
      collectives: [COLLECTIVE],
      registry: reg,
      credential: { token: nodeSec.token, sign: (b) => nodeSec.sign(b) },
      facts: {},
      classes: [],
    });
    const reply = await node.handle(d);
    expect(reply).toBeDefined();
    const pr = parseReply(reply!.data);
    expect(pr.requestId).toBe(r.id);
    expect(pr.body?.statuscode).toBe(0);
    expect(pr.body?.data.pong).toEqual(expect.any(Number));

    // the user alone (signed_fleet_management) cannot bypass the signer
    const unsigned = Buffer.from(
      JSON.stringify({
        protocol: "io.choria.protocol.v2.secure_request",
        request: r.bytes.toString("base64"),
        signature: Buffer.from(r.signature, "hex").toString("base64"),
        caller: u.token,
      }),
    );
    const bad = nodeDecode(unsigned, u.callerid, r.id);
    expect(bad.ok).toBe(false);

    await file.close();
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const lines = readFileSync(path, "utf8").trim().split("\n");
    expect(lines).toHaveLength(1);
    const rec = JSON.parse(lines[0]!) as AuditRecord;
    expect(rec).toMatchObject({
      protocol: "io.choria.signer.v1.signature_audit",
      callerid: "up=alice",
      action: "allow",
      site: "testsite",
      request: { id: r.id, agent: "rpcutil", caller: "up=alice" },
    });
  });

  it("rewrites @ and . in the caller id into the request it signs", async () => {
    const { s, audit } = signer();
    const u = user("up=bob@example.com");
    const r = request(u);
    const out = await s.sign({ token: u.token, signature: r.signature, request: r.bytes });
    expect(out.ok).toBe(true);
    if (!out.ok) return;
    expect(out.callerid).toBe("up=bob_example_com");
    const { requestBytes, signature } = decodeSecureRequest(out.secureRequest);
    expect(decodeRequest(requestBytes).request.caller).toBe("up=bob_example_com");
    expect(decodeRequest(requestBytes).request.id).toBe(r.id);
    expect(verify(delegator.kp.publicHex, requestBytes, signature)).toBe(true);
    expect(audit.records[0]?.callerid).toBe("up=bob_example_com");
  });

  it("refuses a tampered token and audits the claimed caller as unverified", async () => {
    const { s, audit } = signer();
    const u = user();
    const r = request(u);
    const [h, p, sig] = u.token.split(".") as [string, string, string];
    const claims = JSON.parse(Buffer.from(p, "base64url").toString()) as Record<string, unknown>;
    claims.agents = ["*"];
    const forged = `${h}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.${sig}`;
    const out = await s.sign({ token: forged, signature: r.signature, request: r.bytes });
    expect(out).toMatchObject({ ok: false, status: 401, error: "Request denied" });
    if (out.ok) return;
    expect(out.reason).toMatch(/invalid token/);
    expect(audit.records).toHaveLength(1);
    expect(audit.records[0]).toMatchObject({
      callerid: UNVERIFIED_CALLER,
      claimed_callerid: "up=alice",
      action: "deny",
    });
  });

  it("refuses an expired token", async () => {
    const u = user("up=alice", { validityS: 60 });
    const r = request(u);
    const { s, audit } = signer({ now: () => Date.now() + 120_000 });
    const out = await s.sign({ token: u.token, signature: r.signature, request: r.bytes });
    expect(out).toMatchObject({ ok: false, status: 401 });
    if (!out.ok) expect(out.reason).toMatch(/expired/);
    expect(audit.records[0]?.action).toBe("deny");
  });

  it("refuses a token that is not a client token", async () => {
    const kp = generateKeyPair();
    const token = createServerToken(
      { identity: "node9.example", collectives: [COLLECTIVE], publicKeyHex: kp.publicHex, validityS: 600 },
      fx.org,
    );
    const u = { kp, token, callerid: "choria=node9.example" };
    const r = request(u);
    const { s } = signer();
    const out = await s.sign({ token, signature: r.signature, request: r.bytes });
    expect(out).toMatchObject({ ok: false, status: 401 });
    if (!out.ok) expect(out.reason).toMatch(/purpose/);
  });

  it("refuses tokens valid for longer than max_validity or without expiry, unless they are service tokens", async () => {
    const { s } = signer();
    const long = user("up=alice", { validityS: MAX_VALIDITY + 600 });
    let r = request(long);
    let out = await s.sign({ token: long.token, signature: r.signature, request: r.bytes });
    expect(out).toMatchObject({ ok: false, status: 401 });
    if (!out.ok) expect(out.reason).toMatch(/more than the allowed 7200s/);

    const kp = generateKeyPair();
    const noExp = rawToken(
      {
        purpose: "choria_client_id",
        iss: `I-${fx.orgKp.publicHex}`,
        callerid: "up=forever",
        public_key: kp.publicHex,
        permissions: { signed_fleet_management: true },
      },
      fx.orgKp.seedHex,
    );
    r = request({ kp, token: noExp, callerid: "up=forever" });
    out = await s.sign({ token: noExp, signature: r.signature, request: r.bytes });
    expect(out).toMatchObject({ ok: false, status: 401 });
    if (!out.ok) expect(out.reason).toMatch(/no expiry/);

    const svc = user("up=svc", {
      validityS: 30 * 86400,
      permissions: { signed_fleet_management: true, service: true },
    });
    r = request(svc);
    out = await s.sign({ token: svc.token, signature: r.signature, request: r.bytes });
    expect(out.ok).toBe(true);
  });

  it("refuses a request signed by another key, or unsigned unless bearer tokens are allowed", async () => {
    const { s, audit } = signer();
    const u = user();
    const r = request(u);
    const other = sign(generateKeyPair().seedHex, r.bytes).toString("hex");
    let out = await s.sign({ token: u.token, signature: other, request: r.bytes });
    expect(out).toMatchObject({ ok: false, status: 401 });
    if (!out.ok) expect(out.reason).toMatch(/invalid signature/);
    expect(audit.records[0]).toMatchObject({ callerid: UNVERIFIED_CALLER, claimed_callerid: "up=alice" });

    // a good signature over different bytes
    const tampered = Buffer.from(r.bytes.toString().replace('"ttl":60', '"ttl":61'));
    out = await s.sign({ token: u.token, signature: r.signature, request: tampered });
    expect(out).toMatchObject({ ok: false, status: 401 });

    out = await s.sign({ token: u.token, signature: "", request: r.bytes });
    expect(out).toMatchObject({ ok: false, status: 401 });
    const bearer = signer({ allowBearerTokens: true }).s;
    out = await bearer.sign({ token: u.token, signature: "", request: r.bytes });
    expect(out.ok).toBe(true);
  });

  it("gives the authorizer the real request and audits its denial with the verified caller", async () => {
    const seen: SignerAuthzInput[] = [];
    const deny: SignerAuthorizer = {
      name: "test-deny",
      authorize: (i) => {
        seen.push(i);
        return { allowed: false, reason: "no puppet for you" };
      },
    };
    const denied: string[] = [];
    const { s, audit } = signer({ authorizer: deny, metrics: { denied: (a) => denied.push(a) } });
    const u = user();
    const filter: Filter = {
      fact: [{ fact: "country", operator: "==", value: "mt" }],
      cf_class: ["web"],
      agent: ["puppet"],
      identity: [],
      compound: [],
    };
    const r = request(u, "puppet", { action: "disable", data: { message: "maint" } }, filter);
    const out = await s.sign({ token: u.token, signature: r.signature, request: r.bytes });
    expect(out).toMatchObject({ ok: false, status: 403, error: "Request denied" });
    if (!out.ok) expect(out.reason).toMatch(/no puppet for you/);
    expect(denied).toEqual(["puppet.disable"]);
    expect(seen[0]).toMatchObject({
      agent: "puppet",
      action: "disable",
      data: { message: "maint" },
      callerid: "up=alice",
      sender: "laptop.example",
      collective: COLLECTIVE,
      ttl: 60,
      site: "testsite",
      filter: { fact: [{ fact: "country", operator: "==", value: "mt" }], cf_class: ["web"] },
    });
    // unix seconds, as the node-side authorizer gives policies (requests carry nanoseconds)
    expect(Math.abs(seen[0]!.time - Date.now() / 1000)).toBeLessThan(60);
    expect(seen[0]!.claims.agents).toEqual(["rpcutil.*"]);
    expect(audit.records).toEqual([
      expect.objectContaining({ callerid: "up=alice", action: "deny", reason: "no puppet for you" }),
    ]);
  });

  it("works with the server tier's actionlist and cedar authorizers", async () => {
    const al = signer({ authorizer: actionListAuthorizer() });
    const u = user();
    let r = request(u);
    expect((await al.s.sign({ token: u.token, signature: r.signature, request: r.bytes })).ok).toBe(true);
    r = request(u, "puppet", { action: "disable" });
    expect(await al.s.sign({ token: u.token, signature: r.signature, request: r.bytes })).toMatchObject({
      ok: false,
      status: 403,
    });

    // the policy sees the request's collective and filter, which Choria's signer never filled in
    const policy = `permit (principal, action in Chorus::Action::"puppet", resource == Chorus::Collective::"${COLLECTIVE}")
      when { context.filter.facts.contains("country==mt") };`;
    const cu = user("up=carol", { cedar_policy: policy });
    const ced = signer({ authorizer: cedarAuthorizer() });
    const mt: Filter = {
      fact: [{ fact: "country", operator: "==", value: "mt" }],
      cf_class: [],
      agent: [],
      identity: [],
      compound: [],
    };
    r = request(cu, "puppet", { action: "disable" }, mt);
    const ok = await ced.s.sign({ token: cu.token, signature: r.signature, request: r.bytes });
    expect(ok.ok, ok.ok ? "" : ok.reason).toBe(true);
    r = request(cu, "puppet", { action: "disable" });
    expect(await ced.s.sign({ token: cu.token, signature: r.signature, request: r.bytes })).toMatchObject({
      ok: false,
      status: 403,
    });
    expect(ced.audit.records.map((x) => x.action)).toEqual(["allow", "deny"]);

    // context.time is unix seconds, so a policy can bound it (nanoseconds are no Cedar Long)
    const nowS = Math.floor(Date.now() / 1000);
    const timed = user("up=dave", {
      cedar_policy: `permit (principal, action in Chorus::Action::"rpcutil", resource)
        when { context.time > ${nowS - 600} && context.time < ${nowS + 600} };`,
    });
    r = request(timed);
    const inWindow = await ced.s.sign({ token: timed.token, signature: r.signature, request: r.bytes });
    expect(inWindow.ok, inWindow.ok ? "" : inWindow.reason).toBe(true);
  });

  it("counts an authorizer that fails or a policy that cannot be evaluated as an authorizer error", async () => {
    const errors: string[] = [];
    const metrics = { authorizerError: () => errors.push("x") };
    const broken = user("up=erin", { cedar_policy: "permit(principal, action, resource) when {" });
    const ced = signer({ authorizer: cedarAuthorizer(), metrics });
    let r = request(broken);
    expect(await ced.s.sign({ token: broken.token, signature: r.signature, request: r.bytes })).toMatchObject(
      {
        ok: false,
        status: 403,
      },
    );
    expect(errors).toHaveLength(1);
    // a policy that simply does not permit is a denial, not an error
    const strict = user("up=fred", {
      cedar_policy: 'permit(principal, action in Chorus::Action::"puppet", resource);',
    });
    r = request(strict);
    expect((await ced.s.sign({ token: strict.token, signature: r.signature, request: r.bytes })).ok).toBe(
      false,
    );
    expect(errors).toHaveLength(1);
    const throws: SignerAuthorizer = {
      name: "throws",
      authorize: () => {
        throw new Error("engine down");
      },
    };
    const t = signer({ authorizer: throws, metrics });
    const u = user();
    r = request(u);
    const out = await t.s.sign({ token: u.token, signature: r.signature, request: r.bytes });
    expect(out).toMatchObject({ ok: false, status: 403 });
    expect(t.audit.records[0]).toMatchObject({
      action: "deny",
      reason: expect.stringMatching(/engine down/),
    });
    expect(errors).toHaveLength(2);
    // the service's sink counts it under Choria's name
    const m = new AaaMetrics("testsite");
    m.signerSink("cedar").authorizerError();
    const v = (await m.registry.getSingleMetric("choria_aaa_authorizer_errors")?.get())?.values ?? [];
    expect(v).toEqual([
      expect.objectContaining({ value: 1, labels: { site: "testsite", authorizer: "cedar" } }),
    ]);
  });

  it("always allows discovery, as Choria's authorizers do", async () => {
    const deny: SignerAuthorizer = { name: "none", authorize: () => ({ allowed: false, reason: "never" }) };
    const { s, audit } = signer({ authorizer: deny });
    const u = user();
    const r = request(u, "discovery", "ping");
    const out = await s.sign({ token: u.token, signature: r.signature, request: r.bytes });
    expect(out.ok).toBe(true);
    expect(audit.records[0]?.action).toBe("allow");
  });

  it("does not sign a request an auditor could not record", async () => {
    const { s, audit } = signer();
    audit.fail = true;
    const errors: number[] = [];
    const s2 = signer({ auditors: [audit], metrics: { error: () => errors.push(1) } }).s;
    const u = user();
    const r = request(u);
    for (const x of [s, s2]) {
      const out = await x.sign({ token: u.token, signature: r.signature, request: r.bytes });
      expect(out).toMatchObject({ ok: false, status: 500, error: "Request denied" });
      if (!out.ok) expect(out.reason).toMatch(/audit failed: memory: .*disk on fire/);
    }
    expect(errors).toHaveLength(1);
  });

  it("refuses v1 and malformed requests as invalid", async () => {
    const { s, audit } = signer();
    const u = user();
    const v1 = Buffer.from(
      JSON.stringify({ protocol: "choria:request:1", message: "e30=", envelope: { requestid: "x" } }),
    );
    let out = await s.sign({
      token: u.token,
      signature: sign(u.kp.seedHex, v1).toString("hex"),
      request: v1,
    });
    expect(out).toMatchObject({ ok: false, status: 400, error: "invalid request" });
    if (!out.ok) expect(out.reason).toMatch(/v1 requests/);
    out = await s.sign({ token: u.token, signature: "", request: Buffer.from("{nope") });
    expect(out).toMatchObject({ ok: false, status: 400 });
    expect(audit.records).toHaveLength(0);
  });

  it("refuses to start with a signer token that cannot delegate or does not match its seed", () => {
    const u = user();
    expect(() => signer({ signerToken: u.token, signerSeedHex: u.kp.seedHex })).toThrow(
      /authentication_delegator/,
    );
    expect(() => signer({ signerSeedHex: generateKeyPair().seedHex })).toThrow(/seed is for/);
  });
});
