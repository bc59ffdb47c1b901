import { chmodSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import {
  createClientToken,
  createServerToken,
  decodeTokenUnverified,
  generateKeyPair,
  issueNatsUserJwt,
  loadSeedFile,
  writeSeedFile,
  type ClientClaims,
  type ClientPermissions,
  type Issuer,
  type KeyPair,
  type NatsPermissions,
  type NatsTrust,
  type ServerClaims,
  type ServerPermissions,
} from "../../core/security/index.js";

/** Where a credential's three files went: seed, Chorus JWT, companion NATS user JWT. */
export interface CredentialFiles {
  seedFile: string;
  tokenFile: string;
  natsJwtFile: string;
  publicHex: string;
}

/** What signs new credentials: the org issuer and, when NATS users are wanted, the CHORIA account. */
export interface IssuingAuthority {
  issuer: Issuer;
  trust?: Pick<NatsTrust, "choriaAccountPublic">;
}

/** Where to write: the seed is reused when the file exists, else generated. */
export interface CredentialPaths {
  seedFile: string;
  tokenFile: string;
}

function keyFor(paths: CredentialPaths): KeyPair {
  if (existsSync(paths.seedFile)) return loadSeedFile(paths.seedFile);
  mkdirSync(dirname(paths.seedFile), { recursive: true, mode: 0o700 });
  const kp = generateKeyPair();
  writeSeedFile(paths.seedFile, kp);
  return kp;
}

async function writeCredential(
  authority: IssuingAuthority,
  paths: CredentialPaths,
  kp: KeyPair,
  token: string,
  extra?: Partial<NatsPermissions>,
): Promise<CredentialFiles> {
  const { seedFile, tokenFile } = paths;
  const natsJwtFile = `${tokenFile}.nats`;
  mkdirSync(dirname(tokenFile), { recursive: true, mode: 0o700 });
  writeSecret(tokenFile, `${token}\n`);
  if (!authority.trust) return { seedFile, tokenFile, natsJwtFile, publicHex: kp.publicHex };
  const claims = decodeTokenUnverified(token) as unknown as ClientClaims | ServerClaims;
  const natsJwt = await issueNatsUserJwt(
    authority.issuer,
    authority.trust,
    claims,
    kp.publicHex,
    undefined,
    extra,
  );
  writeSecret(natsJwtFile, `${natsJwt}\n`);
  return { seedFile, tokenFile, natsJwtFile, publicHex: kp.publicHex };
}

export interface ClientCredentialOptions {
  callerid: string;
  permissions?: ClientPermissions;
  validityS: number;
  /** What the caller may do and reach (aaasvc authorization, broker subjects). */
  claims?: Pick<
    ClientClaims,
    "agents" | "ou" | "cedar_policy" | "opa_policy" | "pub_subjects" | "sub_subjects"
  >;
}

/** A client's token (and NATS user JWT beside it as `<token>.nats`) for the key in `paths.seedFile`. */
export async function issueClientCredential(
  authority: IssuingAuthority,
  paths: CredentialPaths,
  opts: ClientCredentialOptions,
): Promise<CredentialFiles> {
  const kp = keyFor(paths);
  const token = createClientToken(
    {
      callerid: opts.callerid,
      publicKeyHex: kp.publicHex,
      validityS: opts.validityS,
      ...(opts.permissions && { permissions: opts.permissions }),
      ...opts.claims,
    },
    authority.issuer,
  );
  return writeCredential(authority, paths, kp, token);
}

export interface ServerCredentialOptions {
  identity: string;
  collectives: string[];
  permissions?: ServerPermissions;
  validityS: number;
  /** NATS subjects beyond what the claims grant (the emulator hosts many identities) */
  extraNats?: Partial<NatsPermissions>;
}

/** A server's token (and NATS user JWT beside it as `<token>.nats`) for the key in `paths.seedFile`. */
export async function issueServerCredential(
  authority: IssuingAuthority,
  paths: CredentialPaths,
  opts: ServerCredentialOptions,
): Promise<CredentialFiles> {
  const kp = keyFor(paths);
  const token = createServerToken(
    {
      identity: opts.identity,
      collectives: opts.collectives,
      publicKeyHex: kp.publicHex,
      validityS: opts.validityS,
      ...(opts.permissions && { permissions: opts.permissions }),
    },
    authority.issuer,
  );
  return writeCredential(authority, paths, kp, token, opts.extraNats);
}

/** Writes a secret file readable by its owner only (again over an old one: `--force`). */
export function writeSecret(path: string, text: string): void {
  writeFileSync(path, text, { mode: 0o600 });
  // mode only applies to a new file
  chmodSync(path, 0o600);
}
