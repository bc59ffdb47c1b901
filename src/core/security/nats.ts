import { createHash } from "node:crypto";
import {
  createAccount,
  createOperator,
  createUser,
  decode,
  encodeAccount,
  encodeOperator,
  encodeUser,
  fmtCreds,
  fromSeed,
  type Account,
  type KeyPair as NKeyPair,
} from "@nats-io/jwt";
import { ed25519 } from "./ed25519.js";
import { SecurityError } from "./errors.js";
import {
  nkeyPublicFromEd25519Public,
  nkeySeedFromEd25519Seed,
  nkeySeedTextFromEd25519Seed,
} from "./nkeys.js";
import { tokenExpiry, type ClientClaims, type Issuer, type ServerClaims } from "./tokens.js";

/** Operator, SYSTEM, CHORIA and PROVISIONING accounts for a nats-server MEMORY resolver. */
export interface NatsTrust {
  operatorJwt: string;
  operatorPublic: string;
  /** kept so accounts can be re-signed later; secret */
  operatorSeed: string;
  systemAccountPublic: string;
  systemAccountSeed: string;
  choriaAccountPublic: string;
  choriaAccountSeed: string;
  /** the CHORIA account signing key, derived from the org issuer seed */
  choriaSigningKeyPublic: string;
  /** where nodes in provisioning mode and the provisioner meet, apart from CHORIA; no JetStream */
  provisioningAccountPublic: string;
  provisioningAccountSeed: string;
  /** account public key -> account JWT, for resolver_preload */
  accounts: Record<string, string>;
}

/** Trust written before the PROVISIONING account existed: brokers still load it as it is. */
export type NatsTrustWithoutProvisioning = Omit<
  NatsTrust,
  "provisioningAccountPublic" | "provisioningAccountSeed"
>;

export interface NatsTrustOptions {
  /**
   * Public keys (hex) of chain issuers that may sign CHORIA-account users besides the
   * org issuer, such as the provisioner's, which mints each new node's NATS user.
   */
  chainIssuerKeys?: string[];
}

export interface NatsPermissions {
  pub: string[];
  sub: string[];
}

const UNLIMITED = {
  subs: -1,
  data: -1,
  payload: -1,
  imports: -1,
  exports: -1,
  wildcards: true,
  conn: -1,
  leaf: -1,
};
// JetStream is enabled for an account by giving it JetStream limits; -1 = no limit.
const UNLIMITED_JS = { mem_storage: -1, disk_storage: -1, streams: -1, consumer: -1 };

function text(b: Uint8Array): string {
  return new TextDecoder().decode(b);
}

const HEX32 = /^[0-9a-f]{64}$/;

/** The issuer's ed25519 key as the account-nkey that signs CHORIA users. */
function userSigningKey(issuer: Issuer): NKeyPair {
  if (issuer.kind === "chain") {
    // only a chain issuer the org vouched for could have been added as a signing key
    if (!issuer.jti || !issuer.tcs)
      throw new SecurityError("bad_chain", "the chain issuer has no org trust signature (jti, tcs)");
  } else if (issuer.kind !== "org") {
    throw new SecurityError("bad_chain", "NATS users can only be issued by the org issuer or a chain issuer");
  }
  let kp = signingKeys.get(issuer.seedHex);
  if (!kp) {
    kp = fastSigner(fromSeed(nkeySeedFromEd25519Seed(issuer.seedHex, "account")), issuer.seedHex);
    if (signingKeys.size >= 64) signingKeys.clear();
    signingKeys.set(issuer.seedHex, kp);
  }
  return kp;
}

// nkeys signs with pure-JS tweetnacl, re-deriving the key each time (about 15 ms per
// user JWT): a provisioner minting a user per node signs with core/security's backend
// and a key derived once per issuer instead.
const signingKeys = new Map<string, NKeyPair>();

function fastSigner(base: NKeyPair, seedHex: string): NKeyPair {
  const { key } = ed25519.fromSeed(Buffer.from(seedHex, "hex"));
  const publicKey = base.getPublicKey();
  // @nats-io/jwt asks for the private key only to check the pair can sign
  const privateKey = base.getPrivateKey();
  return Object.assign(Object.create(base) as NKeyPair, {
    getPublicKey: () => publicKey,
    getPrivateKey: () => privateKey,
    sign: (input: Uint8Array) => new Uint8Array(ed25519.sign(key, input)),
  });
}

function accountSigningKeyFromHex(publicHex: string): string {
  if (!HEX32.test(publicHex))
    throw new SecurityError("bad_key", `signing key ${publicHex} is not 32 bytes of lower case hex`);
  return nkeyPublicFromEd25519Public(publicHex, "account");
}

function operatorKey(trust: Pick<NatsTrust, "operatorSeed">): NKeyPair {
  try {
    return fromSeed(new TextEncoder().encode(trust.operatorSeed));
  } catch (err) {
    throw new SecurityError("bad_key", "the NATS trust's operator seed is not an operator nkey seed", {
      cause: err,
    });
  }
}

function encodeChoria(operator: NKeyPair, accountPublic: string, signingKeys: string[]): Promise<string> {
  return encodeAccount(
    "CHORIA",
    accountPublic,
    { limits: { ...UNLIMITED, ...UNLIMITED_JS }, signing_keys: uniq(signingKeys) },
    { signer: operator },
  );
}

// No JetStream limits, so no JetStream: a node in provisioning mode shares this
// account's one credential with every other unprovisioned node and has no use for it.
function encodeProvisioning(operator: NKeyPair, accountPublic: string): Promise<string> {
  return encodeAccount("PROVISIONING", accountPublic, { limits: UNLIMITED }, { signer: operator });
}

/**
 * Creates the NATS decentralised-auth trust for an org: an operator, a SYSTEM
 * account, a CHORIA account and a PROVISIONING account. The CHORIA account's signing
 * key is the org issuer's own ed25519 key in account-nkey form, so holding the org
 * issuer seed is all it takes to mint NATS users alongside Chorus tokens: there is no
 * second secret to guard or distribute, and revoking trust in the org revokes both.
 * `opts.chainIssuerKeys` adds chain issuers' keys as further signing keys.
 */
export async function createNatsTrust(org: Issuer, opts: NatsTrustOptions = {}): Promise<NatsTrust> {
  if (org.kind !== "org")
    throw new SecurityError("bad_chain", "the NATS trust is rooted in the org issuer, not a chain issuer");
  const operator = createOperator();
  const system = createAccount();
  const choria = createAccount();
  const provisioning = createAccount();
  const signing = userSigningKey(org);
  const extra = (opts.chainIssuerKeys ?? []).map(accountSigningKeyFromHex);
  const systemJwt = await encodeAccount("SYSTEM", system, { limits: UNLIMITED }, { signer: operator });
  const choriaJwt = await encodeChoria(operator, choria.getPublicKey(), [signing.getPublicKey(), ...extra]);
  const provisioningJwt = await encodeProvisioning(operator, provisioning.getPublicKey());
  const operatorJwt = await encodeOperator("CHORUS", operator, { system_account: system.getPublicKey() });
  return {
    operatorJwt,
    operatorPublic: operator.getPublicKey(),
    operatorSeed: text(operator.getSeed()),
    systemAccountPublic: system.getPublicKey(),
    systemAccountSeed: text(system.getSeed()),
    choriaAccountPublic: choria.getPublicKey(),
    choriaAccountSeed: text(choria.getSeed()),
    choriaSigningKeyPublic: signing.getPublicKey(),
    provisioningAccountPublic: provisioning.getPublicKey(),
    provisioningAccountSeed: text(provisioning.getSeed()),
    accounts: {
      [system.getPublicKey()]: systemJwt,
      [choria.getPublicKey()]: choriaJwt,
      [provisioning.getPublicKey()]: provisioningJwt,
    },
  };
}

function choriaAccount(trust: Pick<NatsTrust, "choriaAccountPublic" | "accounts">): Partial<Account> {
  const jwt = trust.accounts[trust.choriaAccountPublic];
  if (typeof jwt !== "string")
    throw new SecurityError("malformed", "the NATS trust has no CHORIA account JWT");
  try {
    return decode<Account>(jwt).nats;
  } catch (err) {
    throw new SecurityError("malformed", "the NATS trust's CHORIA account JWT does not decode", {
      cause: err,
    });
  }
}

/** The account nkeys that may sign CHORIA-account users, as the account JWT lists them. */
export function choriaSigningKeys(trust: Pick<NatsTrust, "choriaAccountPublic" | "accounts">): string[] {
  return (choriaAccount(trust).signing_keys ?? []).map((k) => (typeof k === "string" ? k : k.key));
}

/**
 * Adds chain issuers' keys (hex) to the CHORIA account's signing keys, re-signing its
 * JWT with the operator seed; the account key and everything issued so far stay valid.
 * Brokers pick the change up on restart (the MEMORY resolver is preloaded).
 */
export async function addChoriaSigningKeys<T extends NatsTrustWithoutProvisioning>(
  trust: T,
  chainIssuerKeys: string[],
): Promise<T> {
  const current = choriaSigningKeys(trust);
  const keys = uniq([...current, ...chainIssuerKeys.map(accountSigningKeyFromHex)]);
  if (keys.length === current.length) return trust;
  const jwt = await encodeChoria(operatorKey(trust), trust.choriaAccountPublic, keys);
  return { ...trust, accounts: { ...trust.accounts, [trust.choriaAccountPublic]: jwt } };
}

/**
 * Gives trust made before provisioning existed its PROVISIONING account, signed with
 * the kept operator seed. Trust that has one is returned as it is.
 */
export async function addProvisioningAccount(
  trust: NatsTrustWithoutProvisioning | NatsTrust,
): Promise<NatsTrust> {
  if (hasProvisioningAccount(trust)) return trust;
  const account = createAccount();
  const jwt = await encodeProvisioning(operatorKey(trust), account.getPublicKey());
  return {
    ...trust,
    provisioningAccountPublic: account.getPublicKey(),
    provisioningAccountSeed: text(account.getSeed()),
    accounts: { ...trust.accounts, [account.getPublicKey()]: jwt },
  };
}

function hasProvisioningAccount(trust: object): trust is NatsTrust {
  const t = trust as Partial<NatsTrust>;
  return typeof t.provisioningAccountPublic === "string" && typeof t.provisioningAccountSeed === "string";
}

/** The nats-server config lines that install the trust (operator mode, MEMORY resolver). */
export function renderNatsTrustConfig(
  trust: Pick<NatsTrust, "operatorJwt" | "systemAccountPublic" | "accounts">,
): string {
  const preload = Object.entries(trust.accounts)
    .map(([pub, jwt]) => `  ${pub}: "${jwt}"`)
    .join("\n");
  return [
    `operator: "${trust.operatorJwt}"`,
    `system_account: "${trust.systemAccountPublic}"`,
    `resolver: MEMORY`,
    `resolver_preload: {`,
    preload,
    `}`,
    "",
  ].join("\n");
}

function md5(s: string): string {
  return createHash("md5").update(s).digest("hex");
}

function uniq(xs: string[]): string[] {
  return [...new Set(xs)];
}

// JetStream API a stream *user* (not admin) needs: look at streams, read and
// consume, plus KV and object store traffic.
const STREAMS_USER_PUB = [
  "$JS.API.INFO",
  "$JS.API.STREAM.NAMES",
  "$JS.API.STREAM.LIST",
  "$JS.API.STREAM.INFO.*",
  "$JS.API.STREAM.MSG.GET.*",
  "$JS.API.DIRECT.GET.>",
  "$JS.API.CONSUMER.CREATE.>",
  "$JS.API.CONSUMER.DURABLE.CREATE.>",
  "$JS.API.CONSUMER.INFO.>",
  "$JS.API.CONSUMER.MSG.NEXT.>",
  "$JS.API.CONSUMER.NAMES.*",
  "$JS.API.CONSUMER.LIST.*",
  "$JS.API.CONSUMER.DELETE.>",
  "$JS.ACK.>",
  "$JS.FC.>",
  "$KV.>",
  "$O.>",
];

function electionPub(): string[] {
  const s = "KV_CHORIA_LEADER_ELECTION";
  return [
    "$KV.CHORIA_LEADER_ELECTION.>",
    `$JS.API.STREAM.INFO.${s}`,
    `$JS.API.STREAM.MSG.GET.${s}`,
    `$JS.API.DIRECT.GET.${s}.>`,
  ];
}

// NATS wildcards are whole tokens: "GOVERNOR_*" would only match that literal
// stream name, so a worker gets stream info, reads and message deletes (to give
// its slot back) on any stream, as go-choria's streams_user does. Creating,
// purging or removing governors stays with streams_admin.
function governorPub(collective: string): string[] {
  return [
    `${collective}.governor.*`,
    "$JS.API.STREAM.INFO.*",
    "$JS.API.STREAM.MSG.GET.*",
    "$JS.API.STREAM.MSG.DELETE.*",
  ];
}

/** Broker ACLs for a client token (go-choria choria_auth.go rules). */
export function natsPermissionsForClient(c: ClientClaims): NatsPermissions {
  const p = c.permissions ?? {};
  if (p.org_admin) return { pub: [">"], sub: [">"] };
  const pub = ["$SYS.REQ.USER.INFO", ...(c.pub_subjects ?? [])];
  // replies come to the client's own reply prefix in any collective
  const sub = [`*.reply.${md5(c.callerid)}.>`, ...(c.sub_subjects ?? [])];
  if (p.fleet_management || p.signed_fleet_management) {
    pub.push("*.broadcast.agent.>", "*.broadcast.service.>", "*.node.>", "choria.federation.*.federation");
    // federation brokers' counts (chorus federation observe): answered to the caller's inbox
    pub.push("choria.federation.*.stats");
    // records of its own asynchronous requests only: a receiver trusts the caller hash in the subject
    pub.push(`chorus.async.request.${md5(c.callerid)}.>`);
  }
  if (p.streams_admin) {
    pub.push("$JS.>");
    sub.push("$JS.EVENT.>");
  }
  if (p.streams_user) {
    pub.push(...STREAMS_USER_PUB);
    sub.push(`${c.ou ?? "choria"}.republish.>`);
  }
  if (p.events_viewer)
    sub.push("choria.lifecycle.event.>", "choria.machine.watcher.>", "choria.machine.transition");
  if (p.election_user) pub.push(...electionPub());
  // a governed job run with a client credential reports its enter/exit like a node does
  if (p.governor) pub.push(...governorPub("*"), "choria.lifecycle.event.governor.>");
  return { pub: uniq(pub), sub: uniq(sub) };
}

/** Broker ACLs for a server token, per collective it belongs to. */
export function natsPermissionsForServer(c: ServerClaims): NatsPermissions {
  const p = c.permissions ?? {};
  const pub = [
    "$SYS.REQ.USER.INFO",
    "choria.lifecycle.>",
    "choria.machine.transition",
    "choria.machine.watcher.>",
    ...(c.pub_subjects ?? []),
  ];
  const sub: string[] = [];
  for (const col of c.collectives) {
    pub.push(`${col}.reply.>`, `${col}.broadcast.agent.registration`);
    sub.push(`${col}.broadcast.agent.>`, `${col}.node.${c.identity}`, `${col}.reply.${md5(c.identity)}.>`);
    if (p.service_host) sub.push(`${col}.broadcast.service.>`);
    if (p.submission) pub.push(`${col}.submission.in.>`);
    if (p.governor) pub.push(...governorPub(col));
  }
  if (p.streams) pub.push(...STREAMS_USER_PUB);
  // Replies to federated requests go to the federation cluster's reply subject, whose
  // name is the federation's, not the node's collective (go-choria allows only
  // choria.federation.<collective>.collective). The reply is signed and the federation
  // broker forwards it only to a caller's inbox.
  pub.push("choria.federation.*.collective");
  return { pub: uniq(pub), sub: uniq(sub) };
}

// An empty allow list means "allow everything" to nats-server, so an empty
// list becomes an explicit deny of everything instead.
function permission(allow: string[]): { allow: string[] } | { deny: string[] } {
  return allow.length ? { allow } : { deny: [">"] };
}

/**
 * Issues the NATS user JWT that accompanies a Chorus token: the user nkey is the
 * token's own ed25519 key (so the client proves itself by signing the nonce with
 * its Chorus seed), signed by a CHORIA account signing key: the org issuer's, or a
 * chain issuer's that setup added (nats-server refuses users from any other key).
 * `expiresAt` (unix seconds) defaults to the token's own expiry and never outlives a
 * chain issuer. `extra` adds subjects beyond the ones the claims grant.
 */
export async function issueNatsUserJwt(
  issuer: Issuer,
  trust: Pick<NatsTrust, "choriaAccountPublic"> & Partial<Pick<NatsTrust, "accounts">>,
  claims: ClientClaims | ServerClaims,
  subjectPublicHex: string = claims.public_key,
  expiresAt: number | undefined = tokenExpiry(claims),
  extra: Partial<NatsPermissions> = {},
): Promise<string> {
  const signing = userSigningKey(issuer);
  // With the account JWT at hand, say now what the broker would only answer with
  // "authorization violation" at connect time.
  if (trust.accounts?.[trust.choriaAccountPublic] !== undefined) {
    if (!choriaSigningKeys({ ...trust, accounts: trust.accounts }).includes(signing.getPublicKey())) {
      throw new SecurityError(
        "untrusted",
        `${signing.getPublicKey()} is not a signing key of the CHORIA account: add the issuer with addChoriaSigningKeys`,
      );
    }
  }
  let perms: NatsPermissions;
  let name: string;
  if (claims.purpose === "choria_server") {
    perms = natsPermissionsForServer(claims as ServerClaims);
    name = (claims as ServerClaims).identity;
  } else if (claims.purpose === "choria_client_id") {
    perms = natsPermissionsForClient(claims as ClientClaims);
    name = (claims as ClientClaims).callerid;
  } else {
    throw new SecurityError("wrong_purpose", `cannot make NATS users for ${String(claims.purpose)} tokens`);
  }
  const exp =
    issuer.kind === "chain" && issuer.issexp !== undefined
      ? Math.min(expiresAt ?? issuer.issexp, issuer.issexp)
      : expiresAt;
  const pub = uniq([...perms.pub, ...(extra.pub ?? [])]);
  const sub = uniq([...perms.sub, ...(extra.sub ?? [])]);
  return encodeUser(
    name,
    nkeyPublicFromEd25519Public(subjectPublicHex, "user"),
    trust.choriaAccountPublic,
    { pub: permission(pub), sub: permission(sub), bearer_token: false },
    exp === undefined ? { signer: signing } : { signer: signing, exp },
  );
}

/**
 * The NATS user an edge broker's leafnode link logs in as to a hub in operator mode: a
 * user of the CHORIA account signed by the org issuer, returned as a `.creds` file (the
 * JWT and its nkey seed), the format nats-server's `leafnodes.remotes[].credentials`
 * reads. A leaf link carries the whole edge site's traffic, so by default it may publish
 * and subscribe to everything in the account: the edge broker is infrastructure, trusted
 * like a cluster peer. `perms` narrows that.
 */
export async function issueLeafCredentials(
  issuer: Issuer,
  trust: Pick<NatsTrust, "choriaAccountPublic">,
  opts: { name: string; expiresAt?: number; perms?: NatsPermissions },
): Promise<string> {
  const user = createUser();
  const perms = opts.perms ?? { pub: [">"], sub: [">"] };
  const jwt = await encodeUser(
    opts.name,
    user,
    trust.choriaAccountPublic,
    { pub: permission(perms.pub), sub: permission(perms.sub), bearer_token: false },
    opts.expiresAt === undefined
      ? { signer: userSigningKey(issuer) }
      : { signer: userSigningKey(issuer), exp: opts.expiresAt },
  );
  return text(fmtCreds(jwt, user));
}

/** A user in the SYSTEM account (monitoring, $SYS requests), signed by the account key itself. */
export async function issueSystemUser(
  trust: Pick<NatsTrust, "systemAccountSeed">,
  name = "system",
): Promise<{ jwt: string; seed: string }> {
  const user = createUser();
  const account = fromSeed(new TextEncoder().encode(trust.systemAccountSeed));
  const jwt = await encodeUser(name, user, account);
  return { jwt, seed: text(user.getSeed()) };
}

/**
 * What every node in provisioning mode may do: hear provisioning requests (to any node,
 * as all share one user; what must stay private is sealed to the node's own key) and
 * answer, announce itself and register. Nothing reaches the CHORIA account.
 */
export const PROVISIONING_NODE_PERMISSIONS: Readonly<NatsPermissions> = Object.freeze({
  pub: ["choria.lifecycle.>", "provisioning.reply.>", "provisioning.registration.>", "$SYS.REQ.USER.INFO"],
  sub: [
    "provisioning.node.>",
    "provisioning.broadcast.agent.discovery",
    "provisioning.broadcast.agent.rpcutil",
    "provisioning.broadcast.agent.choria_util",
    "provisioning.broadcast.agent.choria_provision",
  ],
});

/** The provisioner in the PROVISIONING account: asks nodes, hears replies, announcements, registrations. */
export const PROVISIONER_PERMISSIONS: Readonly<NatsPermissions> = Object.freeze({
  pub: ["provisioning.broadcast.agent.>", "provisioning.node.>"],
  sub: ["provisioning.reply.>", "choria.lifecycle.event.>", "provisioning.registration.>"],
});

/** The two users of the PROVISIONING account. */
export interface ProvisioningUsers {
  /** the one user every node in provisioning mode connects as: `chusr` and `chpwd` */
  node: { jwt: string; seed: string };
  /** the provisioner's user, for the nkey of its Chorus seed */
  provisioner: { jwt: string };
}

type ProvisioningTrust = Pick<NatsTrust, "provisioningAccountSeed">;

function provisioningAccountKey(trust: Partial<ProvisioningTrust>): NKeyPair {
  const seed = trust.provisioningAccountSeed;
  if (typeof seed !== "string" || seed === "")
    throw new SecurityError(
      "malformed",
      "the NATS trust has no PROVISIONING account (made before provisioning existed): add it with addProvisioningAccount",
    );
  let kp: NKeyPair;
  try {
    kp = fromSeed(new TextEncoder().encode(seed));
  } catch (err) {
    throw new SecurityError("bad_key", "the PROVISIONING account seed is not an nkey seed", { cause: err });
  }
  if (!kp.getPublicKey().startsWith("A"))
    throw new SecurityError("bad_key", "the PROVISIONING account seed is not an account seed");
  return kp;
}

function provisioningUser(
  name: string,
  userPublic: string,
  account: NKeyPair,
  perms: Readonly<NatsPermissions>,
  expiresAt: number | undefined,
): Promise<string> {
  return encodeUser(
    name,
    userPublic,
    account,
    { pub: permission([...perms.pub]), sub: permission([...perms.sub]), bearer_token: false },
    expiresAt === undefined ? {} : { exp: expiresAt },
  );
}

/**
 * The shared provisioning-mode node user, signed by the PROVISIONING account key: a
 * fresh random nkey each call, returned as the user JWT and its seed text ("SU...").
 */
export async function issueProvisioningNodeUser(
  trust: ProvisioningTrust,
  expiresAt?: number,
): Promise<{ jwt: string; seed: string }> {
  const account = provisioningAccountKey(trust);
  const user = createUser();
  const jwt = await provisioningUser(
    "provisioning",
    user.getPublicKey(),
    account,
    PROVISIONING_NODE_PERMISSIONS,
    expiresAt,
  );
  return { jwt, seed: text(user.getSeed()) };
}

/** The provisioner's PROVISIONING-account user JWT for its ed25519 public key (hex). */
export async function issueProvisionerUser(
  trust: ProvisioningTrust,
  provisionerPublicHex: string,
  expiresAt?: number,
): Promise<string> {
  const account = provisioningAccountKey(trust);
  return provisioningUser(
    "provisioner",
    nkeyPublicFromEd25519Public(provisionerPublicHex, "user"),
    account,
    PROVISIONER_PERMISSIONS,
    expiresAt,
  );
}

/** Both PROVISIONING-account users at once (see the two functions above). */
export async function issueProvisioningUsers(
  trust: ProvisioningTrust,
  provisionerPublicHex: string,
  expiresAt?: number,
): Promise<ProvisioningUsers> {
  const node = await issueProvisioningNodeUser(trust, expiresAt);
  const provisioner = { jwt: await issueProvisionerUser(trust, provisionerPublicHex, expiresAt) };
  return { node, provisioner };
}

export { nkeySeedFromEd25519Seed, nkeySeedTextFromEd25519Seed };
