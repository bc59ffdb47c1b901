import { readFileSync } from "node:fs";
import {
  chainIssuerFromToken,
  createServerToken,
  decodeTokenUnverified,
  issueNatsUserJwt,
  loadSeedFile,
  type Issuer,
  type ServerClaims,
  type ServerPermissions,
} from "../../core/security/index.js";
import { ProvisionError } from "./errors.js";
import type { ServerClaimsOverride } from "./helper.js";

/**
 * The chain issuer that signs server tokens: jwt_signing_key (hex seed) and
 * jwt_signing_token (its chain token). Read per use, so rotated files apply at once.
 */
export function loadChainIssuer(seedFile: string, tokenFile: string): Issuer {
  let jwt: string;
  try {
    jwt = readFileSync(tokenFile, "utf8").trim();
  } catch (err) {
    throw new ProvisionError(
      "mint",
      `cannot read jwt_signing_token ${tokenFile}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  let kp;
  try {
    kp = loadSeedFile(seedFile);
  } catch (err) {
    throw new ProvisionError("mint", `cannot read jwt_signing_key ${seedFile}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  try {
    return chainIssuerFromToken(kp, jwt);
  } catch (err) {
    throw new ProvisionError("mint", `jwt_signing_token ${tokenFile}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

interface NatsUserClaims {
  iss?: unknown;
  nats?: {
    issuer_account?: unknown;
    pub?: { allow?: unknown; deny?: unknown };
  };
}

function natsClaims(natsJwt: string): NatsUserClaims {
  const parts = natsJwt.trim().split(".");
  try {
    return JSON.parse(Buffer.from(parts[1] ?? "", "base64url").toString("utf8")) as NatsUserClaims;
  } catch (err) {
    throw new ProvisionError("mint", "the NATS user JWT does not decode", { cause: err });
  }
}

/**
 * The CHORIA account a NATS user JWT belongs to: `nats.issuer_account` when a signing
 * key signed it, else the issuer itself (the account key).
 */
export function natsAccountOf(natsJwt: string): string {
  const claims = natsClaims(natsJwt);
  const acct = claims.nats?.issuer_account ?? claims.iss;
  if (typeof acct !== "string" || !/^A[A-Z2-7]{55}$/.test(acct))
    throw new ProvisionError("mint", "the NATS user JWT names no account");
  return acct;
}

/** Does a NATS subject pattern (with * and > wildcards) cover this literal subject? */
export function subjectMatches(pattern: string, subject: string): boolean {
  const p = pattern.split(".");
  const t = subject.split(".");
  for (let i = 0; i < p.length; i++) {
    if (p[i] === ">") return t.length > i;
    if (i >= t.length || (p[i] !== "*" && p[i] !== t[i])) return false;
  }
  return p.length === t.length;
}

/** Whether a NATS user JWT lets its holder publish to `subject` (its allow and deny lists). */
export function natsMayPublish(natsJwt: string, subject: string): boolean {
  const pub = natsClaims(natsJwt).nats?.pub ?? {};
  const list = (v: unknown): string[] =>
    Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [];
  if (list(pub.deny).some((p) => subjectMatches(p, subject))) return false;
  const allow = list(pub.allow);
  return allow.length === 0 || allow.some((p) => subjectMatches(p, subject));
}

/** Decided claims of a server token. */
export interface ServerTokenPlan {
  identity: string;
  collectives: string[];
  validityS: number;
  ou?: string;
  pub_subjects?: string[];
  permissions?: ServerPermissions;
  /** what was adjusted and why, for the log */
  notes: string[];
}

// below this, Choria falls back to server_jwt_validity
const MIN_VALIDITY_S = 3600;
// server_claims.exp below this (2001-09-09) cannot be meant as an absolute time
const ABSOLUTE_EXP_FLOOR = 1_000_000_000;

/**
 * Applies a helper's server_claims to the defaults. `exp` is an absolute unix time as
 * in Choria; unlike Choria, a value too small to be one (Choria's example helper sends
 * a relative 5 years) is taken as seconds from now instead of silently dropped, and a
 * past absolute time is an error.
 */
export function planServerToken(
  identity: string,
  o: {
    collectives: string[];
    validityS: number;
    override?: ServerClaimsOverride | undefined;
    /** the issuer's own expiry: nothing it signs may outlive it */
    issuerExp?: number | undefined;
    nowS?: number;
  },
): ServerTokenPlan {
  const now = o.nowS ?? Math.floor(Date.now() / 1000);
  const sc = o.override ?? {};
  const notes: string[] = [];
  let validityS = o.validityS;
  if (sc.exp !== undefined) {
    let asked: number;
    if (sc.exp > now) asked = sc.exp - now;
    else if (sc.exp > 0 && sc.exp < ABSOLUTE_EXP_FLOOR) {
      asked = Math.floor(sc.exp);
      notes.push(`server_claims.exp ${sc.exp} is not an absolute time: taken as seconds from now`);
    } else throw new ProvisionError("mint", `server_claims.exp ${sc.exp} is in the past`);
    if (asked < MIN_VALIDITY_S) notes.push(`server_claims.exp gives less than 1h: using server_jwt_validity`);
    else validityS = asked;
  }
  if (o.issuerExp !== undefined) {
    const left = o.issuerExp - now;
    if (left <= 0) throw new ProvisionError("mint", "jwt_signing_token has expired");
    if (left < validityS) {
      notes.push(`validity cut to ${left}s: the signing token expires then`);
      validityS = left;
    }
  }
  const plan: ServerTokenPlan = {
    identity,
    collectives: sc.collectives && sc.collectives.length > 0 ? [...sc.collectives] : [...o.collectives],
    validityS,
    notes,
  };
  if (sc.ou) plan.ou = sc.ou;
  if (sc.pub_subjects) plan.pub_subjects = [...sc.pub_subjects];
  if (sc.permissions) {
    const p = sc.permissions;
    plan.permissions = {
      ...(p.submission !== undefined && { submission: p.submission }),
      ...(p.streams !== undefined && { streams: p.streams }),
      ...(p.governor !== undefined && { governor: p.governor }),
      ...(p.service_host !== undefined && { service_host: p.service_host }),
    };
  }
  return plan;
}

/** A minted server token and the CHORIA-account NATS user for the same key. */
export interface MintedServerCredential {
  serverJwt: string;
  natsJwt: string;
  claims: ServerClaims;
}

/**
 * Signs the node's server token with the chain issuer, then its NATS user JWT with the
 * same key as a CHORIA account signing key (setup adds it to the account's list).
 */
export async function mintServerCredential(
  plan: ServerTokenPlan,
  nodePublicHex: string,
  issuer: Issuer,
  choriaAccountPublic: string,
): Promise<MintedServerCredential> {
  try {
    const serverJwt = createServerToken(
      {
        identity: plan.identity,
        collectives: plan.collectives,
        publicKeyHex: nodePublicHex,
        validityS: plan.validityS,
        ...(plan.ou !== undefined && { ou: plan.ou }),
        ...(plan.pub_subjects !== undefined && { pub_subjects: plan.pub_subjects }),
        ...(plan.permissions !== undefined && { permissions: plan.permissions }),
      },
      issuer,
    );
    const claims = decodeTokenUnverified(serverJwt) as unknown as ServerClaims;
    const natsJwt = await issueNatsUserJwt(issuer, { choriaAccountPublic }, claims, nodePublicHex);
    return { serverJwt, natsJwt, claims };
  } catch (err) {
    if (err instanceof ProvisionError) throw err;
    throw new ProvisionError(
      "mint",
      `cannot mint the server token for ${plan.identity}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}
