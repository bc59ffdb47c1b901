import { createHash } from "node:crypto";
import {
  createAccount,
  createOperator,
  createUser,
  encodeAccount,
  encodeOperator,
  encodeUser,
  fromSeed,
  type KeyPair as NKeyPair,
} from "@nats-io/jwt";
import { SecurityError } from "./errors.js";
import {
  nkeyPublicFromEd25519Public,
  nkeySeedFromEd25519Seed,
  nkeySeedTextFromEd25519Seed,
} from "./nkeys.js";
import { tokenExpiry, type ClientClaims, type Issuer, type ServerClaims } from "./tokens.js";

/** Operator, SYSTEM and CHORIA accounts for a nats-server MEMORY resolver. */
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
  /** account public key -> account JWT, for resolver_preload */
  accounts: Record<string, string>;
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

function orgSigningKey(org: Issuer): NKeyPair {
  if (org.kind !== "org")
    throw new SecurityError("bad_chain", "NATS users can only be issued with the org issuer");
  return fromSeed(nkeySeedFromEd25519Seed(org.seedHex, "account"));
}

/**
 * Creates the NATS decentralised-auth trust for an org: an operator, a SYSTEM
 * account and a CHORIA account. The CHORIA account's signing key is the org
 * issuer's own ed25519 key in account-nkey form, so holding the org issuer seed is
 * all it takes to mint NATS users alongside Chorus tokens: there is no second
 * secret to guard or distribute, and revoking trust in the org revokes both.
 */
export async function createNatsTrust(org: Issuer): Promise<NatsTrust> {
  const operator = createOperator();
  const system = createAccount();
  const choria = createAccount();
  const signing = orgSigningKey(org);
  const systemJwt = await encodeAccount("SYSTEM", system, { limits: UNLIMITED }, { signer: operator });
  const choriaJwt = await encodeAccount(
    "CHORIA",
    choria,
    { limits: { ...UNLIMITED, ...UNLIMITED_JS }, signing_keys: [signing.getPublicKey()] },
    { signer: operator },
  );
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
    accounts: { [system.getPublicKey()]: systemJwt, [choria.getPublicKey()]: choriaJwt },
  };
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
    pub.push(`${col}.reply.>`, `${col}.broadcast.agent.registration`, `choria.federation.${col}.collective`);
    sub.push(`${col}.broadcast.agent.>`, `${col}.node.${c.identity}`, `${col}.reply.${md5(c.identity)}.>`);
    if (p.service_host) sub.push(`${col}.broadcast.service.>`);
    if (p.submission) pub.push(`${col}.submission.in.>`);
    if (p.governor) pub.push(...governorPub(col));
  }
  if (p.streams) pub.push(...STREAMS_USER_PUB);
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
 * its Chorus seed), signed by the CHORIA account signing key derived from the org
 * issuer. `expiresAt` (unix seconds) defaults to the token's own expiry.
 * `extra` adds subjects beyond the ones the claims grant.
 */
export async function issueNatsUserJwt(
  org: Issuer,
  trust: Pick<NatsTrust, "choriaAccountPublic">,
  claims: ClientClaims | ServerClaims,
  subjectPublicHex: string = claims.public_key,
  expiresAt: number | undefined = tokenExpiry(claims),
  extra: Partial<NatsPermissions> = {},
): Promise<string> {
  const signing = orgSigningKey(org);
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
  const pub = uniq([...perms.pub, ...(extra.pub ?? [])]);
  const sub = uniq([...perms.sub, ...(extra.sub ?? [])]);
  return encodeUser(
    name,
    nkeyPublicFromEd25519Public(subjectPublicHex, "user"),
    trust.choriaAccountPublic,
    { pub: permission(pub), sub: permission(sub), bearer_token: false },
    expiresAt === undefined ? { signer: signing } : { signer: signing, exp: expiresAt },
  );
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

export { nkeySeedFromEd25519Seed, nkeySeedTextFromEd25519Seed };
