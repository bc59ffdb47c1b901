import { createHash } from "node:crypto";
import { decode, type Account, type Operator, type User } from "@nats-io/jwt";
import { describe, expect, it } from "vitest";
import {
  createChainIssuer,
  createClientToken,
  createNatsTrust,
  createServerToken,
  generateKeyPair,
  issueNatsUserJwt,
  natsPermissionsForClient,
  natsPermissionsForServer,
  nkeyPublicFromEd25519Public,
  orgIssuer,
  renderNatsTrustConfig,
  verifyToken,
  type ClientClaims,
  type ServerClaims,
} from "../../../src/core/security/index.js";

const md5 = (s: string) => createHash("md5").update(s).digest("hex");
const orgKp = generateKeyPair();
const org = orgIssuer(orgKp);

function client(permissions?: ClientClaims["permissions"], extra: Partial<ClientClaims> = {}): ClientClaims {
  return {
    purpose: "choria_client_id",
    iss: "I-x",
    public_key: orgKp.publicHex,
    callerid: "choria=u",
    permissions,
    ...extra,
  };
}

function server(permissions?: ServerClaims["permissions"], collectives = ["c1", "c2"]): ServerClaims {
  return {
    purpose: "choria_server",
    iss: "I-x",
    public_key: orgKp.publicHex,
    identity: "n1",
    collectives,
    permissions,
  };
}

describe("client ACLs", () => {
  it("always allows the own reply subjects and user info, nothing else", () => {
    expect(natsPermissionsForClient(client())).toEqual({
      pub: ["$SYS.REQ.USER.INFO"],
      sub: [`*.reply.${md5("choria=u")}.>`],
    });
  });

  it("adds request subjects for fleet management, signed or not", () => {
    const fleet = [
      "*.broadcast.agent.>",
      "*.broadcast.service.>",
      "*.node.>",
      "choria.federation.*.federation",
    ];
    expect(natsPermissionsForClient(client({ fleet_management: true })).pub).toEqual(
      expect.arrayContaining(fleet),
    );
    expect(natsPermissionsForClient(client({ signed_fleet_management: true })).pub).toEqual(
      expect.arrayContaining(fleet),
    );
  });

  it("maps the other permissions", () => {
    expect(natsPermissionsForClient(client({ org_admin: true }))).toEqual({ pub: [">"], sub: [">"] });
    const ev = natsPermissionsForClient(client({ events_viewer: true }));
    expect(ev.sub).toEqual(
      expect.arrayContaining([
        "choria.lifecycle.event.>",
        "choria.machine.watcher.>",
        "choria.machine.transition",
      ]),
    );
    const sa = natsPermissionsForClient(client({ streams_admin: true }));
    expect(sa.pub).toContain("$JS.>");
    expect(sa.sub).toContain("$JS.EVENT.>");
    const su = natsPermissionsForClient(client({ streams_user: true }));
    expect(su.pub).toEqual(
      expect.arrayContaining(["$JS.ACK.>", "$JS.FC.>", "$KV.>", "$O.>", "$JS.API.INFO"]),
    );
    expect(su.sub).toContain("choria.republish.>");
    expect(natsPermissionsForClient(client({ election_user: true })).pub).toContain(
      "$KV.CHORIA_LEADER_ELECTION.>",
    );
    expect(natsPermissionsForClient(client({ governor: true })).pub).toEqual(
      expect.arrayContaining(["*.governor.*", "choria.lifecycle.event.governor.>"]),
    );
    // only governor events: other lifecycle events stay with servers
    expect(natsPermissionsForClient(client({ governor: true })).pub).not.toContain("choria.lifecycle.>");
    const extra = natsPermissionsForClient(
      client(undefined, { pub_subjects: ["x.y"], sub_subjects: ["z.>"] }),
    );
    expect(extra.pub).toContain("x.y");
    expect(extra.sub).toContain("z.>");
  });
});

describe("server ACLs", () => {
  it("grants per collective node, broadcast and reply subjects", () => {
    const p = natsPermissionsForServer(server());
    for (const c of ["c1", "c2"]) {
      expect(p.sub).toEqual(
        expect.arrayContaining([`${c}.broadcast.agent.>`, `${c}.node.n1`, `${c}.reply.${md5("n1")}.>`]),
      );
      expect(p.pub).toEqual(
        expect.arrayContaining([
          `${c}.reply.>`,
          `${c}.broadcast.agent.registration`,
          `choria.federation.${c}.collective`,
        ]),
      );
      expect(p.sub).not.toContain(`${c}.broadcast.service.>`);
      expect(p.pub).not.toContain(`${c}.submission.in.>`);
    }
    expect(p.pub).toEqual(
      expect.arrayContaining(["choria.lifecycle.>", "choria.machine.transition", "choria.machine.watcher.>"]),
    );
  });

  it("adds service_host and submission", () => {
    const p = natsPermissionsForServer(server({ service_host: true, submission: true }, ["c"]));
    expect(p.sub).toContain("c.broadcast.service.>");
    expect(p.pub).toContain("c.submission.in.>");
  });
});

describe("NATS trust", () => {
  it("makes an operator, SYSTEM and a JetStream-enabled CHORIA account signed by the org key", async () => {
    const trust = await createNatsTrust(org);
    const op = decode<Operator>(trust.operatorJwt);
    expect(op.sub).toBe(trust.operatorPublic);
    expect(op.nats.system_account).toBe(trust.systemAccountPublic);
    const acct = decode<Account>(trust.accounts[trust.choriaAccountPublic] as string);
    expect(acct.iss).toBe(trust.operatorPublic);
    expect(acct.nats.signing_keys).toEqual([nkeyPublicFromEd25519Public(orgKp.publicHex, "account")]);
    expect(trust.choriaSigningKeyPublic).toBe(nkeyPublicFromEd25519Public(orgKp.publicHex, "account"));
    expect(acct.nats.limits?.disk_storage).toBe(-1);
    expect(decode<Account>(trust.accounts[trust.systemAccountPublic] as string).name).toBe("SYSTEM");

    const conf = renderNatsTrustConfig(trust);
    expect(conf).toContain(`operator: "${trust.operatorJwt}"`);
    expect(conf).toContain(`system_account: "${trust.systemAccountPublic}"`);
    expect(conf).toContain("resolver: MEMORY");
    expect(conf).toContain(`${trust.choriaAccountPublic}: "`);
  });

  it("issues user JWTs for the token's own key with the token's expiry", async () => {
    const trust = await createNatsTrust(org);
    const kp = generateKeyPair();
    const jwt = createServerToken(
      { identity: "n1", collectives: ["c"], publicKeyHex: kp.publicHex, validityS: 300 },
      org,
    );
    const claims = verifyToken(jwt, [orgKp.publicHex]) as ServerClaims;
    const u = decode<User>(await issueNatsUserJwt(org, trust, claims));
    expect(u.sub).toBe(nkeyPublicFromEd25519Public(kp.publicHex, "user"));
    expect(u.iss).toBe(trust.choriaSigningKeyPublic);
    expect(u.nats.issuer_account).toBe(trust.choriaAccountPublic);
    expect(u.name).toBe("n1");
    expect(u.exp).toBe(claims.exp);
    expect(u.nats.pub?.allow).toEqual(natsPermissionsForServer(claims).pub);
    expect(u.nats.sub?.allow).toEqual(natsPermissionsForServer(claims).sub);

    const none = decode<User>(await issueNatsUserJwt(org, trust, { ...claims, collectives: [] }));
    expect(none.nats.sub).toEqual({ deny: [">"] });

    const withExtra = decode<User>(
      await issueNatsUserJwt(org, trust, claims, kp.publicHex, claims.exp! - 100, { sub: ["c.node.>"] }),
    );
    expect(withExtra.exp).toBe(claims.exp! - 100);
    expect(withExtra.nats.sub?.allow).toContain("c.node.>");
  });

  it("only lets the org issuer sign NATS users", async () => {
    const trust = await createNatsTrust(org);
    const chain = createChainIssuer(org, generateKeyPair(), 60);
    const c = verifyToken(
      createClientToken({ callerid: "x", publicKeyHex: orgKp.publicHex, validityS: 60 }, org),
      [orgKp.publicHex],
    );
    await expect(issueNatsUserJwt(chain, trust, c)).rejects.toMatchObject({ code: "bad_chain" });
  });
});
