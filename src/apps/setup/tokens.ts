import { readFileSync } from "node:fs";
import {
  decodeTokenUnverified,
  generateKeyPair,
  loadSeedFile,
  orgIssuer,
  tokenExpiry,
  verifyToken,
  writeSeedFile,
  type ClientPermissions,
  type NatsTrust,
  type ServerPermissions,
} from "../../core/security/index.js";
import { SetupError } from "./errors.js";
import {
  issueClientCredential,
  issueServerCredential,
  type ClientCredentialOptions,
  type CredentialFiles,
} from "./credentials.js";

export const CLIENT_PERMISSIONS = [
  "fleet_management",
  "signed_fleet_management",
  "streams_admin",
  "streams_user",
  "events_viewer",
  "election_user",
  "system_user",
  "governor",
  "org_admin",
  "service",
  "authentication_delegator",
] as const;
export const SERVER_PERMISSIONS = ["submission", "streams", "governor", "service_host"] as const;

/** Parses "30d", "12h", "90m", "3600s" or bare seconds into seconds. */
export function parseValidity(v: string): number {
  const m = /^(\d+)([smhdy]?)$/.exec(v.trim());
  if (!m) throw new SetupError("usage", `validity "${v}" is not like 30d, 12h, 90m or 3600s`);
  const mult = { "": 1, s: 1, m: 60, h: 3600, d: 86_400, y: 365 * 86_400 }[m[2] as "" | "s"];
  const n = Number(m[1]) * mult;
  if (n <= 0) throw new SetupError("usage", `validity "${v}" must be positive`);
  return n;
}

function permissionsFrom<K extends string>(
  names: string[],
  allowed: readonly K[],
): Partial<Record<K, boolean>> {
  const out: Partial<Record<K, boolean>> = {};
  for (const n of names) {
    if (!allowed.includes(n as K)) {
      throw new SetupError("usage", `unknown permission "${n}": use one of ${allowed.join(", ")}`);
    }
    out[n as K] = true;
  }
  return out;
}

/** Creates an org issuer seed file and returns its public key (hex). */
export function createIssuerSeed(seedFile: string): string {
  const kp = generateKeyPair();
  writeSeedFile(seedFile, kp);
  return kp.publicHex;
}

function loadTrust(file: string | undefined): Pick<NatsTrust, "choriaAccountPublic"> | undefined {
  if (!file) return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new SetupError("io", `cannot read NATS trust file ${file}: ${(err as Error).message}`);
  }
  const pub = (raw as { choriaAccountPublic?: unknown }).choriaAccountPublic;
  if (typeof pub !== "string") throw new SetupError("io", `${file} has no choriaAccountPublic`);
  return { choriaAccountPublic: pub };
}

export interface IssueTokenOptions {
  issuerSeedFile: string;
  seedFile: string;
  tokenFile: string;
  validity: string;
  permissions: string[];
  natsTrustFile?: string;
}

/** Client token claims beyond permissions; policy files are read here. */
export interface ClientClaimOptions {
  /** `*`, `agent.*` or `agent.action` entries (aaasvc action list) */
  agents?: string[];
  ou?: string;
  /** a Cedar policy set (aaasvc cedar) */
  cedarPolicyFile?: string;
  /** a Rego policy, kept as Choria's opa_policy for Choria nodes; Chorus cannot evaluate it */
  opaPolicyFile?: string;
  pubSubjects?: string[];
  subSubjects?: string[];
}

function readPolicy(file: string, what: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (err) {
    throw new SetupError("io", `cannot read ${what} ${file}: ${(err as Error).message}`);
  }
}

async function clientClaims(c: ClientClaimOptions): Promise<NonNullable<ClientCredentialOptions["claims"]>> {
  const out: NonNullable<ClientCredentialOptions["claims"]> = {};
  if (c.agents && c.agents.length > 0) {
    for (const a of c.agents) {
      if (a !== "*" && !/^[^.\s]+\.[^.\s]+$/.test(a))
        throw new SetupError("usage", `agents entry "${a}" is not *, agent.* or agent.action`);
    }
    out.agents = c.agents;
  }
  if (c.cedarPolicyFile !== undefined) {
    const text = readPolicy(c.cedarPolicyFile, "cedar policy");
    // loaded only here: the server tier is heavy for the other token commands
    const { cedarPolicyProblem } = await import("../../server/index.js");
    const why = cedarPolicyProblem(text);
    if (why !== undefined) throw new SetupError("invalid", `cedar policy ${c.cedarPolicyFile}: ${why}`);
    out.cedar_policy = text;
  }
  if (c.opaPolicyFile !== undefined) out.opa_policy = readPolicy(c.opaPolicyFile, "rego policy");
  if (out.agents && (out.cedar_policy !== undefined || out.opa_policy !== undefined))
    throw new SetupError("usage", "a token with both agents and a policy is denied by every node; give one");
  if (c.ou !== undefined) {
    if (c.ou.trim() === "") throw new SetupError("usage", "ou must not be empty");
    out.ou = c.ou;
  }
  if (c.pubSubjects && c.pubSubjects.length > 0) out.pub_subjects = c.pubSubjects;
  if (c.subSubjects && c.subSubjects.length > 0) out.sub_subjects = c.subSubjects;
  return out;
}

/** `chorus jwt client`: a client token for the key in seedFile (created when missing). */
export async function issueClientTokenFiles(
  callerid: string,
  o: IssueTokenOptions,
  claims: ClientClaimOptions = {},
): Promise<CredentialFiles> {
  if (!/^[a-z]+=[\w.@-]+$/.test(callerid)) {
    throw new SetupError("usage", `caller id "${callerid}" must look like choria=name`);
  }
  const trust = loadTrust(o.natsTrustFile);
  return issueClientCredential(
    { issuer: orgIssuer(loadSeedFile(o.issuerSeedFile)), ...(trust && { trust }) },
    { seedFile: o.seedFile, tokenFile: o.tokenFile },
    {
      callerid,
      validityS: parseValidity(o.validity),
      permissions: permissionsFrom(o.permissions, CLIENT_PERMISSIONS) as ClientPermissions,
      claims: await clientClaims(claims),
    },
  );
}

/** `chorus jwt server`: a server token for the key in seedFile (created when missing). */
export async function issueServerTokenFiles(
  identity: string,
  collectives: string[],
  o: IssueTokenOptions,
): Promise<CredentialFiles> {
  if (!/^[\w.-]+$/.test(identity)) throw new SetupError("usage", `identity "${identity}" is not valid`);
  const trust = loadTrust(o.natsTrustFile);
  return issueServerCredential(
    { issuer: orgIssuer(loadSeedFile(o.issuerSeedFile)), ...(trust && { trust }) },
    { seedFile: o.seedFile, tokenFile: o.tokenFile },
    {
      identity,
      collectives,
      validityS: parseValidity(o.validity),
      permissions: permissionsFrom(o.permissions, SERVER_PERMISSIONS) as ServerPermissions,
    },
  );
}

export interface TokenReport {
  claims: Record<string, unknown>;
  expires?: string;
  verified?: boolean;
  error?: string;
}

/** Decodes a token file and, when issuers are given, verifies it against them. */
export function inspectToken(tokenFile: string, issuers: string[] = []): TokenReport {
  let jwt: string;
  try {
    jwt = readFileSync(tokenFile, "utf8").trim();
  } catch (err) {
    throw new SetupError("io", `cannot read token ${tokenFile}: ${(err as Error).message}`);
  }
  const claims = decodeTokenUnverified(jwt);
  const exp = tokenExpiry(claims);
  const report: TokenReport = {
    claims,
    ...(exp !== undefined && { expires: new Date(exp * 1000).toISOString() }),
  };
  if (issuers.length > 0) {
    try {
      verifyToken(jwt, issuers);
      report.verified = true;
    } catch (err) {
      report.verified = false;
      report.error = (err as Error).message;
    }
  }
  return report;
}
