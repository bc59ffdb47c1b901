import { readFileSync } from "node:fs";
import { ChorusError } from "../core/protocol/errors.js";

/** Problems starting, configuring or supervising the broker. */
export class BrokerError extends ChorusError {}

/**
 * The decentralized-auth material nats-server needs: the operator JWT, the system
 * account's public key, and every account JWT keyed by its public key (for the
 * MEMORY resolver's preload).
 */
export interface NatsTrustMaterial {
  operatorJwt: string;
  systemAccount: string;
  accounts: Record<string, string>;
  /** account name (the JWT's `name`, e.g. CHORIA) → public key, for keys that name an account */
  accountNames: Record<string, string>;
}

function jwtClaims(jwt: string, what: string, file: string): { sub: string; name?: string } {
  const parts = jwt.split(".");
  if (parts.length !== 3) throw new BrokerError("trust", `${file}: ${what} is not a JWT`);
  try {
    const claims = JSON.parse(Buffer.from(parts[1] as string, "base64url").toString("utf8")) as {
      sub?: unknown;
      name?: unknown;
    };
    if (typeof claims.sub !== "string") throw new Error("no sub");
    return { sub: claims.sub, ...(typeof claims.name === "string" && { name: claims.name }) };
  } catch {
    throw new BrokerError("trust", `${file}: ${what} is not a decodable NATS JWT`);
  }
}

function pick(obj: Record<string, unknown>, names: string[]): unknown {
  for (const n of names) if (obj[n] !== undefined) return obj[n];
  return undefined;
}

/**
 * Normalises trust material from setup. Accepts snake or camel case keys (including the
 * NatsTrust shape of security/nats.ts, whose seeds are ignored here), accounts as a
 * map (public key → JWT) or a list of JWTs, and a system account given as key or JWT;
 * public keys are always taken from the JWTs' `sub` so a mislabelled map cannot slip in.
 */
export function normaliseNatsTrust(raw: unknown, file = "<trust>"): NatsTrustMaterial {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new BrokerError(
      "trust",
      `${file}: expected a JSON object with operator, system_account and accounts`,
    );
  }
  const obj = raw as Record<string, unknown>;
  const operatorJwt = pick(obj, ["operator", "operator_jwt", "operatorJwt"]);
  if (typeof operatorJwt !== "string") throw new BrokerError("trust", `${file}: operator JWT is missing`);
  if (!jwtClaims(operatorJwt, "operator", file).sub.startsWith("O")) {
    throw new BrokerError("trust", `${file}: operator JWT subject is not an operator key`);
  }
  const accountsRaw = pick(obj, ["accounts", "account_jwts", "accountJwts"]);
  const list: unknown[] = Array.isArray(accountsRaw)
    ? accountsRaw
    : accountsRaw && typeof accountsRaw === "object"
      ? Object.values(accountsRaw)
      : [];
  const accounts: Record<string, string> = {};
  const accountNames: Record<string, string> = {};
  for (const entry of list) {
    const jwt = typeof entry === "string" ? entry : (entry as { jwt?: unknown } | null)?.jwt;
    if (typeof jwt !== "string") throw new BrokerError("trust", `${file}: an account entry has no JWT`);
    const { sub, name } = jwtClaims(jwt, "account", file);
    if (name !== undefined) accountNames[name] = sub;
    if (!sub.startsWith("A"))
      throw new BrokerError("trust", `${file}: account JWT subject ${sub} is not an account key`);
    accounts[sub] = jwt;
  }
  const sysRaw = pick(obj, [
    "system_account",
    "systemAccount",
    "systemAccountPublic",
    "system_account_public",
  ]);
  let systemAccount: string | undefined;
  if (typeof sysRaw === "string") {
    systemAccount = sysRaw.includes(".") ? jwtClaims(sysRaw, "system account", file).sub : sysRaw;
    if (sysRaw.includes(".")) accounts[systemAccount] = sysRaw;
  } else if (sysRaw && typeof sysRaw === "object") {
    const s = sysRaw as { jwt?: unknown; public_key?: unknown; publicKey?: unknown };
    if (typeof s.jwt === "string") {
      systemAccount = jwtClaims(s.jwt, "system account", file).sub;
      accounts[systemAccount] = s.jwt;
    } else {
      const k = s.public_key ?? s.publicKey;
      if (typeof k === "string") systemAccount = k;
    }
  }
  if (!systemAccount) throw new BrokerError("trust", `${file}: system_account is missing`);
  if (!accounts[systemAccount]) {
    throw new BrokerError("trust", `${file}: the system account ${systemAccount} has no account JWT`);
  }
  return { operatorJwt, systemAccount, accounts, accountNames };
}

export function loadNatsTrust(path: string): NatsTrustMaterial {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new BrokerError("trust", `${path}: cannot read NATS trust file: ${(err as Error).message}`, {
      cause: err,
    });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new BrokerError("trust", `${path}: invalid JSON: ${(err as Error).message}`, { cause: err });
  }
  return normaliseNatsTrust(raw, path);
}

/**
 * The nats-server config fragment that turns on decentralized JWT auth with every
 * account preloaded into a MEMORY resolver (no account server, no reloads).
 */
export function renderTrustFragment(trust: NatsTrustMaterial): string {
  const lines = [
    `operator: ${JSON.stringify(trust.operatorJwt)}`,
    `system_account: ${JSON.stringify(trust.systemAccount)}`,
    "resolver: MEMORY",
    "resolver_preload: {",
    ...Object.entries(trust.accounts).map(([pub, jwt]) => `  ${pub}: ${JSON.stringify(jwt)}`),
    "}",
  ];
  return lines.join("\n");
}
