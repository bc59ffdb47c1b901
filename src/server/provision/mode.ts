import { X509Certificate } from "node:crypto";
import { promises as dns } from "node:dns";
import { existsSync, readFileSync } from "node:fs";
import { provisioningSettings, type Config, type ProvisioningSettings } from "../../core/config/index.js";
import {
  SecurityError,
  VerifiedTokenCache,
  decodeTokenUnverified,
  generateKeyPair,
  loadSeedFile,
  nkeySeedToEd25519Seed,
  provisioningTokenIssuer,
  publicHexFromSeed,
  sign,
  tokenExpiry,
  verify,
  verifyProvisioningToken,
  verifyToken,
  type ClientClaims,
  type ProvisioningClaims,
} from "../../core/security/index.js";
import { ProvisionError } from "./errors.js";

/** Whether a node starts in provisioning mode, why, and what it found on the way. */
export interface ProvisioningDecision {
  provision: boolean;
  reason: string;
  settings: ProvisioningSettings;
  /** the provisioning.jwt text and claims, when the file exists and verifies */
  jwt?: string;
  claims?: ProvisioningClaims;
  /** why the provisioning token cannot be used, when it cannot */
  jwtProblem?: string;
  /** normal mode: when to go back to provisioning mode to renew the credential (unix ms) */
  renewAt?: number;
  /** what expires then ("server token", "TLS certificate") */
  renewWhat?: string;
}

const HOUR_MS = 3_600_000;

/**
 * When to renew a credential valid from `notBeforeMs` to `notAfterMs`: `renewBeforeMs`
 * ahead of expiry, by default a tenth of its life but at least an hour. Never earlier
 * than half way, or a short-lived credential would be renewed again as soon as issued.
 */
export function renewalTime(
  notBeforeMs: number | undefined,
  notAfterMs: number,
  renewBeforeMs?: number,
): number {
  if (notBeforeMs === undefined || notBeforeMs >= notAfterMs) return notAfterMs - (renewBeforeMs ?? HOUR_MS);
  const life = notAfterMs - notBeforeMs;
  return notAfterMs - Math.min(renewBeforeMs ?? Math.max(life / 10, HOUR_MS), life / 2);
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function readProvisioningJwt(
  s: ProvisioningSettings,
  nowMs: number,
): { jwt?: string; claims?: ProvisioningClaims; problem?: string } {
  if (!existsSync(s.jwtFile)) return { problem: `${s.jwtFile} does not exist` };
  let jwt: string;
  try {
    jwt = readFileSync(s.jwtFile, "utf8").trim();
  } catch (err) {
    return { problem: `cannot read ${s.jwtFile}: ${message(err)}` };
  }
  try {
    // with no issuers configured the token is the node's root of trust
    const trust = s.issuers.length > 0 ? s.issuers : [provisioningTokenIssuer(jwt)];
    return { jwt, claims: verifyProvisioningToken(jwt, trust, Math.floor(nowMs / 1000)) };
  } catch (err) {
    return { jwt, problem: `${s.jwtFile}: ${message(err)}` };
  }
}

/** Why the node's own credential cannot be used, or when it should be renewed. */
function credentialState(
  s: ProvisioningSettings,
  nowMs: number,
): { problem?: string; renewAt?: number; renewWhat?: string } {
  if (!existsSync(s.tokenFile)) return { problem: `the server token ${s.tokenFile} does not exist` };
  let c: Record<string, unknown>;
  try {
    c = decodeTokenUnverified(readFileSync(s.tokenFile, "utf8").trim());
  } catch (err) {
    return { problem: `the server token ${s.tokenFile} is unusable: ${message(err)}` };
  }
  if (c.purpose !== "choria_server") return { problem: `${s.tokenFile} is not a server token` };
  if (c.identity !== s.identity)
    return {
      problem: `the server token is for ${String(c.identity)}, the configured identity is ${s.identity}`,
    };
  try {
    if (loadSeedFile(s.seedFile).publicHex !== c.public_key)
      return { problem: `the seed ${s.seedFile} is not the server token's key` };
  } catch (err) {
    return { problem: message(err) };
  }
  const due: { at: number; what: string }[] = [];
  const exp = tokenExpiry(c as unknown as Parameters<typeof tokenExpiry>[0]);
  if (exp !== undefined) {
    const from = typeof c.iat === "number" ? c.iat : typeof c.nbf === "number" ? c.nbf : undefined;
    due.push({
      at: renewalTime(from === undefined ? undefined : from * 1000, exp * 1000, s.renewBeforeMs),
      what: `server token (expires ${new Date(exp * 1000).toISOString()})`,
    });
  }
  if (s.certFile && existsSync(s.certFile)) {
    try {
      const cert = new X509Certificate(readFileSync(s.certFile));
      const to = Date.parse(cert.validTo);
      due.push({
        at: renewalTime(Date.parse(cert.validFrom), to, s.renewBeforeMs),
        what: `TLS certificate (expires ${new Date(to).toISOString()})`,
      });
    } catch {
      // an unreadable certificate fails the broker connection, where it is reported
    }
  }
  const first = due.sort((a, b) => a.at - b.at)[0];
  if (!first) return {};
  if (nowMs >= first.at) return { problem: `the ${first.what} is due for renewal` };
  return { renewAt: first.at, renewWhat: first.what };
}

/**
 * Decides how a node with config `cfg` starts. Provisioning mode when the config says
 * plugin.choria.server.provision (or, unset, the token's chpd does), or when a usable
 * provisioning token is there and the node's own credential is missing, for another
 * identity or key, or due for renewal. Throws ProvisionError when provisioning is asked
 * for but the provisioning token is missing or does not verify.
 */
export function provisioningDecision(cfg: Config, nowMs: number = Date.now()): ProvisioningDecision {
  const settings = provisioningSettings(cfg);
  const t = readProvisioningJwt(settings, nowMs);
  const base = {
    settings,
    ...(t.jwt !== undefined && { jwt: t.jwt }),
    ...(t.claims && { claims: t.claims }),
    ...(t.problem !== undefined && { jwtProblem: t.problem }),
  };
  const asked = settings.provision ?? t.claims?.chpd ?? false;
  if (asked) {
    if (!t.claims)
      throw new ProvisionError(
        "config",
        `provisioning mode needs a usable provisioning token: ${t.problem ?? ""}`,
      );
    const reason =
      settings.provision !== undefined
        ? "plugin.choria.server.provision is on"
        : "the provisioning token provisions by default (chpd)";
    return { ...base, provision: true, reason };
  }
  if (!t.claims) return { ...base, provision: false, reason: "no usable provisioning token" };
  const c = credentialState(settings, nowMs);
  if (c.problem !== undefined) return { ...base, provision: true, reason: c.problem };
  return {
    ...base,
    provision: false,
    reason: "the server credential is usable",
    ...(c.renewAt !== undefined && { renewAt: c.renewAt, renewWhat: c.renewWhat as string }),
  };
}

/**
 * The broker URLs a provisioning token points at: `chu` as given, or the SRV records of
 * `_choria-provisioner._tcp.<chsrv>` (lowest priority first, then highest weight).
 */
export async function provisioningBrokers(claims: ProvisioningClaims): Promise<string[]> {
  const scheme = claims.chs ? "tls" : "nats";
  if (claims.chu) {
    const urls = claims.chu
      .split(",")
      .map((u) => u.trim())
      .filter((u) => u !== "")
      .map((u) => (/^[a-z]+:\/\//i.test(u) ? u : `${scheme}://${u}`));
    for (const u of urls) {
      if (!/^(nats|tls):\/\/[^/\s]+$/i.test(u))
        throw new ProvisionError(
          "config",
          `provisioning token broker URL ${JSON.stringify(u)} is not nats:// or tls://`,
        );
    }
    return urls;
  }
  const name = `_choria-provisioner._tcp.${claims.chsrv ?? ""}`;
  let records: { name: string; port: number; priority: number; weight: number }[];
  try {
    records = await dns.resolveSrv(name);
  } catch (err) {
    throw new ProvisionError("config", `cannot look up provisioning brokers in ${name}: ${message(err)}`, {
      cause: err,
    });
  }
  if (records.length === 0) throw new ProvisionError("config", `${name} has no SRV records`);
  return records
    .sort((a, b) => a.priority - b.priority || b.weight - a.weight)
    .map((r) => `${scheme}://${r.name}:${r.port}`);
}

/**
 * The security a node has in provisioning mode: no server token (replies go unsigned
 * and carry no sender token), the broker credential from the provisioning token, and
 * requests still verified: a client token from a trusted issuer with fleet_management
 * or provisioner, and a valid signature. Choria switches these checks off; Chorus keeps
 * them, on top of the agent's own token check.
 */
export class ProvisioningSecurity {
  readonly purpose = "choria_provisioning";
  readonly token = "";
  readonly seedHex: string;
  readonly publicHex: string;
  readonly natsJwt?: string;
  readonly issuers: readonly string[];
  private readonly cache = new VerifiedTokenCache<ClientClaims>();

  constructor(claims: ProvisioningClaims, issuers: readonly string[]) {
    if (issuers.length === 0) throw new ProvisionError("config", "provisioning mode needs a trusted issuer");
    // the broker's nonce is signed with the provisioning user's key; otherwise nothing is signed
    this.seedHex = claims.chpwd ? nkeySeedToEd25519Seed(claims.chpwd) : generateKeyPair().seedHex;
    this.publicHex = publicHexFromSeed(this.seedHex);
    if (claims.chusr) this.natsJwt = claims.chusr;
    this.issuers = [...issuers];
  }

  sign(data: Uint8Array): Buffer {
    return sign(this.seedHex, data);
  }

  verifySignature(publicHex: string, data: Uint8Array, sig: Uint8Array): boolean {
    return verify(publicHex, data, sig);
  }

  verifyClientToken(jwt: string): ClientClaims {
    return this.cache.get(jwt, () => {
      const c = verifyToken(jwt, [...this.issuers]);
      if (c.purpose !== "choria_client_id")
        throw new SecurityError("wrong_purpose", `token purpose is ${c.purpose}, need choria_client_id`);
      const client = c as ClientClaims;
      const p = client.permissions;
      const fleet = p?.fleet_management === true && p.signed_fleet_management !== true;
      if (!fleet && p?.provisioner !== true)
        throw new SecurityError("no_fleet_management", `caller ${client.callerid} may not provision nodes`);
      return client;
    });
  }

  verifySignerToken(_jwt: string): ClientClaims {
    throw new SecurityError("not_delegator", "delegated signing is not accepted in provisioning mode");
  }
}
