import { createHash } from "node:crypto";
import { decode, type Account, type Operator, type User } from "@nats-io/jwt";
import { describe, expect, it } from "vitest";
import {
  addChoriaSigningKeys,
  addProvisioningAccount,
  choriaSigningKeys,
  createChainIssuer,
  createClientToken,
  createNatsTrust,
  createServerToken,
  nkeySeedToEd25519Seed,
  generateKeyPair,
  issueNatsUserJwt,
  issueProvisionerUser,
  issueProvisioningNodeUser,
  issueProvisioningUsers,
  natsPermissionsForClient,
  natsPermissionsForServer,
  nkeyPublicFromEd25519Public,
  orgIssuer,
  PROVISIONER_PERMISSIONS,
  publicHexFromSeed,
  renderNatsTrustConfig,
  verifyToken,
  type ClientClaims,
  type Issuer,
  type NatsTrustWithoutProvisioning,
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
      "choria.federation.*.stats",
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
      expect(p.pub).toEqual(expect.arrayContaining([`${c}.reply.>`, `${c}.broadcast.agent.registration`]));
      expect(p.sub).not.toContain(`${c}.broadcast.service.>`);
      expect(p.pub).not.toContain(`${c}.submission.in.>`);
    }
    expect(p.pub).toEqual(
      expect.arrayContaining(["choria.lifecycle.>", "choria.machine.transition", "choria.machine.watcher.>"]),
    );
    // replies to federated requests go to the federation cluster's subject, whatever its name
    expect(p.pub).toContain("choria.federation.*.collective");
    expect(p.pub.filter((s) => s.startsWith("choria.federation."))).toEqual([
      "choria.federation.*.collective",
    ]);
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

  it("lets a chain issuer in the CHORIA signing keys sign NATS users, capped at its own expiry", async () => {
    const chainKp = generateKeyPair();
    const chain = createChainIssuer(org, chainKp, 120, { callerid: "provisioner=t" });
    const trust = await createNatsTrust(org, { chainIssuerKeys: [chainKp.publicHex] });
    expect(choriaSigningKeys(trust)).toEqual([
      nkeyPublicFromEd25519Public(orgKp.publicHex, "account"),
      nkeyPublicFromEd25519Public(chainKp.publicHex, "account"),
    ]);
    const kp = generateKeyPair();
    const server = createServerToken(
      { identity: "n1", collectives: ["c"], publicKeyHex: kp.publicHex, validityS: 60 },
      chain,
    );
    const claims = verifyToken(server, [orgKp.publicHex]) as ServerClaims;
    const u = decode<User>(await issueNatsUserJwt(chain, trust, claims, kp.publicHex, claims.exp! + 10_000));
    expect(u.iss).toBe(nkeyPublicFromEd25519Public(chainKp.publicHex, "account"));
    expect(u.nats.issuer_account).toBe(trust.choriaAccountPublic);
    expect(u.exp).toBe(chain.issexp);
  });

  it("refuses issuers that are neither the org nor a chain issuer the CHORIA account lists", async () => {
    const trust = await createNatsTrust(org);
    const c = verifyToken(
      createClientToken({ callerid: "x", publicKeyHex: orgKp.publicHex, validityS: 60 }, org),
      [orgKp.publicHex],
    );
    const chain = createChainIssuer(org, generateKeyPair(), 60);
    // with the account JWT at hand the unlisted key is refused before the broker would
    await expect(issueNatsUserJwt(chain, trust, c)).rejects.toMatchObject({ code: "untrusted" });
    // only the account's public key known: issued, and nats-server enforces the list
    const u = decode<User>(
      await issueNatsUserJwt(chain, { choriaAccountPublic: trust.choriaAccountPublic }, c),
    );
    expect(u.iss).toBe(nkeyPublicFromEd25519Public(chain.publicHex, "account"));
    const { tcs: _tcs, ...unlinked } = chain;
    await expect(issueNatsUserJwt(unlinked, trust, c)).rejects.toMatchObject({ code: "bad_chain" });
    const odd = { ...org, kind: "user" } as unknown as Issuer;
    await expect(issueNatsUserJwt(odd, trust, c)).rejects.toMatchObject({ code: "bad_chain" });
    await expect(createNatsTrust(chain)).rejects.toMatchObject({ code: "bad_chain" });
    await expect(createNatsTrust(org, { chainIssuerKeys: ["nothex"] })).rejects.toMatchObject({
      code: "bad_key",
    });
  });

  it("adds signing keys to an existing CHORIA account without changing the account", async () => {
    const trust = await createNatsTrust(org);
    const k = generateKeyPair().publicHex;
    const more = await addChoriaSigningKeys(trust, [k]);
    expect(more.choriaAccountPublic).toBe(trust.choriaAccountPublic);
    const acct = decode<Account>(more.accounts[more.choriaAccountPublic] as string);
    expect(acct.iss).toBe(trust.operatorPublic);
    expect(acct.nats.limits?.disk_storage).toBe(-1);
    expect(acct.nats.signing_keys).toEqual([
      trust.choriaSigningKeyPublic,
      nkeyPublicFromEd25519Public(k, "account"),
    ]);
    // nothing new: the same object back, no re-signing
    expect(await addChoriaSigningKeys(more, [k])).toBe(more);
    expect(trust.accounts[trust.choriaAccountPublic]).not.toBe(more.accounts[more.choriaAccountPublic]);
  });
});

describe("PROVISIONING account", () => {
  it("is preloaded with the others, signed by the operator, without JetStream", async () => {
    const trust = await createNatsTrust(org);
    expect(Object.keys(trust.accounts)).toHaveLength(3);
    const acct = decode<Account>(trust.accounts[trust.provisioningAccountPublic] as string);
    expect(acct.name).toBe("PROVISIONING");
    expect(acct.sub).toBe(trust.provisioningAccountPublic);
    expect(acct.iss).toBe(trust.operatorPublic);
    expect(acct.nats.limits?.disk_storage).toBeUndefined();
    expect(acct.nats.limits?.mem_storage).toBeUndefined();
    expect(acct.nats.signing_keys ?? []).toEqual([]);
    expect(trust.provisioningAccountSeed.startsWith("SA")).toBe(true);
    expect(renderNatsTrustConfig(trust)).toContain(`${trust.provisioningAccountPublic}: "`);
  });

  it("issues the shared node user and the provisioner user with exactly their subjects", async () => {
    const trust = await createNatsTrust(org);
    const prov = generateKeyPair();
    const exp = Math.floor(Date.now() / 1000) + 600;
    const users = await issueProvisioningUsers(trust, prov.publicHex, exp);

    const node = decode<User>(users.node.jwt);
    expect(node.iss).toBe(trust.provisioningAccountPublic);
    expect(node.nats.issuer_account).toBeUndefined();
    expect(node.exp).toBe(exp);
    expect(node.nats.bearer_token).toBe(false);
    expect(node.nats.pub?.allow).toEqual([
      "choria.lifecycle.>",
      "provisioning.reply.>",
      "provisioning.registration.>",
      "$SYS.REQ.USER.INFO",
    ]);
    expect(node.nats.sub?.allow).toEqual([
      "provisioning.node.>",
      "provisioning.broadcast.agent.discovery",
      "provisioning.broadcast.agent.rpcutil",
      "provisioning.broadcast.agent.choria_util",
      "provisioning.broadcast.agent.choria_provision",
    ]);
    // the seed text is the user's own key
    const seedHex = nkeySeedToEd25519Seed(users.node.seed);
    expect(nkeyPublicFromEd25519Public(publicHexFromSeed(seedHex), "user")).toBe(node.sub);

    const p = decode<User>(users.provisioner.jwt);
    expect(p.sub).toBe(nkeyPublicFromEd25519Public(prov.publicHex, "user"));
    expect(p.iss).toBe(trust.provisioningAccountPublic);
    expect(p.nats.pub?.allow).toEqual(PROVISIONER_PERMISSIONS.pub);
    expect(p.nats.sub?.allow).toEqual([
      "provisioning.reply.>",
      "choria.lifecycle.event.>",
      "provisioning.registration.>",
    ]);
    expect(p.exp).toBe(exp);

    // every node user is a fresh key
    const again = await issueProvisioningNodeUser(trust);
    expect(decode<User>(again.jwt).sub).not.toBe(node.sub);
    expect(decode<User>(again.jwt).exp).toBeUndefined();
    expect(decode<User>(await issueProvisionerUser(trust, prov.publicHex)).sub).toBe(p.sub);
    await expect(issueProvisionerUser(trust, "nothex")).rejects.toMatchObject({ code: "bad_key" });
  });

  it("old trust without the account: a clear error, and the account can be added", async () => {
    const full = await createNatsTrust(org);
    const { provisioningAccountPublic: pub, provisioningAccountSeed: _seed, ...old } = full;
    const { [pub]: _dropped, ...accounts } = old.accounts;
    const legacy: NatsTrustWithoutProvisioning = { ...old, accounts };
    await expect(issueProvisioningNodeUser(legacy as never)).rejects.toMatchObject({ code: "malformed" });
    await expect(
      // a changed character inside the seed breaks its checksum (the last one may only
      // carry padding bits, so change one in the middle)
      issueProvisioningNodeUser({
        provisioningAccountSeed: ((seed: string) =>
          `${seed.slice(0, 10)}${seed[10] === "A" ? "B" : "A"}${seed.slice(11)}`)(full.systemAccountSeed),
      }),
    ).rejects.toMatchObject({ code: "bad_key" });
    const upgraded = await addProvisioningAccount(legacy);
    expect(upgraded.provisioningAccountPublic).not.toBe(pub);
    expect(decode<Account>(upgraded.accounts[upgraded.provisioningAccountPublic] as string).iss).toBe(
      full.operatorPublic,
    );
    expect(upgraded.accounts[full.choriaAccountPublic]).toBe(full.accounts[full.choriaAccountPublic]);
    expect(await addProvisioningAccount(upgraded)).toBe(upgraded);
    await expect(issueProvisioningNodeUser(upgraded)).resolves.toMatchObject({ seed: expect.any(String) });
  });
});
