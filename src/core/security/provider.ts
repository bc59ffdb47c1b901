import { existsSync, readFileSync } from "node:fs";
import { SecurityError } from "./errors.js";
import { loadSeedFile, sign, verify } from "./keys.js";
import {
  decodeTokenUnverified,
  tokenExpiry,
  verifyToken,
  type ClientClaims,
  type ServerClaims,
  type StandardClaims,
} from "./tokens.js";

export interface ChoriaSecurityOptions {
  seedFile: string;
  tokenFile: string;
  /** trusted org issuer public keys, hex */
  issuers: string[];
  caFile?: string | undefined;
  certFile?: string | undefined;
  keyFile?: string | undefined;
  /** companion NATS user JWT; defaults to `<tokenFile>.nats` when that exists */
  natsJwtFile?: string | undefined;
}

interface Cached<T> {
  claims: T;
  expiresAt: number; // unix seconds, Infinity when the token never expires
}

/**
 * Claims of tokens that passed a check, kept until the token expires: a token is
 * verified once however many requests carry it. Oldest evicted first when full.
 */
export class VerifiedTokenCache<T extends StandardClaims> {
  private readonly entries = new Map<string, Cached<T>>();

  constructor(private readonly max = MAX_CACHED) {}

  /** The cached claims of `jwt`, or `check()`'s (cached when it does not throw). */
  get(jwt: string, check: () => T, nowS: number = Date.now() / 1000): T {
    const hit = this.entries.get(jwt);
    if (hit && nowS < hit.expiresAt) return hit.claims;
    if (hit) this.entries.delete(jwt);
    const claims = check();
    if (this.entries.size >= this.max) this.entries.delete(this.entries.keys().next().value as string);
    this.entries.set(jwt, { claims, expiresAt: tokenExpiry(claims) ?? Infinity });
    return claims;
  }

  get size(): number {
    return this.entries.size;
  }

  clear(): void {
    this.entries.clear();
  }
}

// as tokens.ts: room for a large fleet, oldest evicted first rather than a full clear
const MAX_CACHED = 32_768;

function readText(path: string, what: string): string {
  try {
    return readFileSync(path, "utf8").trim();
  } catch (err) {
    throw new SecurityError("io", `cannot read ${what} ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * The provider's files from Choria settings: core/config's serverSettings() and
 * clientSettings() fit (seed_file, token_file, issuers, ca, certificate, key,
 * nats_jwt_file). Plain data, so it can be handed to worker threads.
 */
export function securityOptionsFromSettings(s: ChoriaSecurityOptions): ChoriaSecurityOptions {
  return {
    seedFile: s.seedFile,
    tokenFile: s.tokenFile,
    issuers: [...s.issuers],
    ...(s.natsJwtFile !== undefined && { natsJwtFile: s.natsJwtFile }),
    ...(s.caFile !== undefined && { caFile: s.caFile }),
    ...(s.certFile !== undefined && { certFile: s.certFile }),
    ...(s.keyFile !== undefined && { keyFile: s.keyFile }),
  };
}

/** The `choria` provider a server, client or emulator config describes. */
export function securityFromSettings(
  s: ChoriaSecurityOptions & { securityProvider?: string },
): ChoriaSecurity {
  // the file provider leaves the seed and token empty: say which provider this needs
  if (s.securityProvider !== undefined && s.securityProvider !== "choria")
    throw new SecurityError(
      "wrong_provider",
      `this needs the choria security provider (ed25519 seed and JWT); the configuration uses "${s.securityProvider}"`,
    );
  return new ChoriaSecurity(securityOptionsFromSettings(s));
}

/**
 * The `choria` security provider: an ed25519 seed plus a JWT naming this process,
 * trust rooted in org issuer public keys. Token checks are cached per JWT until the
 * token expires, because every request carries its caller's JWT.
 */
export class ChoriaSecurity {
  readonly publicHex: string;
  readonly seedHex: string;
  readonly token: string;
  /** client: the token's callerid; server: "choria=<identity>" */
  readonly callerId: string;
  /** set for server tokens */
  readonly identity?: string;
  readonly purpose: string;
  readonly issuers: readonly string[];
  readonly caFile?: string | undefined;
  readonly certFile?: string | undefined;
  readonly keyFile?: string | undefined;
  readonly natsJwtFile: string;
  /** the companion NATS user JWT when the file exists */
  readonly natsJwt?: string;

  private readonly clientCache = new VerifiedTokenCache<ClientClaims>();
  private readonly serverCache = new VerifiedTokenCache<ServerClaims>();

  constructor(opts: ChoriaSecurityOptions) {
    const kp = loadSeedFile(opts.seedFile);
    this.seedHex = kp.seedHex;
    this.publicHex = kp.publicHex;
    this.token = readText(opts.tokenFile, "token file");
    this.issuers = [...opts.issuers];
    this.caFile = opts.caFile;
    this.certFile = opts.certFile;
    this.keyFile = opts.keyFile;
    this.natsJwtFile = opts.natsJwtFile ?? `${opts.tokenFile}.nats`;
    if (existsSync(this.natsJwtFile)) this.natsJwt = readText(this.natsJwtFile, "NATS JWT file");

    // Our own token is only decoded: peers and the broker judge it, but a token
    // for some other key would make every message we sign fail, so catch that now.
    const claims = decodeTokenUnverified(this.token);
    if (claims.public_key !== this.publicHex) {
      throw new SecurityError(
        "bad_key",
        `token ${opts.tokenFile} is for public key ${String(claims.public_key)}, seed is for ${this.publicHex}`,
      );
    }
    this.purpose = claims.purpose;
    if (claims.purpose === "choria_server" && typeof claims.identity === "string") {
      this.identity = claims.identity;
      this.callerId = `choria=${claims.identity}`;
    } else if (claims.purpose === "choria_client_id" && typeof claims.callerid === "string") {
      this.callerId = claims.callerid;
    } else {
      throw new SecurityError(
        "wrong_purpose",
        `token ${opts.tokenFile} is neither a client nor a server token`,
      );
    }
  }

  sign(data: Uint8Array): Buffer {
    return sign(this.seedHex, data);
  }

  verifySignature(publicHex: string, data: Uint8Array, sig: Uint8Array): boolean {
    return verify(publicHex, data, sig);
  }

  /** A caller allowed to make fleet requests on its own: fleet_management and no need for a signer. */
  verifyClientToken(jwt: string): ClientClaims {
    return this.clientCache.get(jwt, () => {
      const c = this.verifyPurpose<ClientClaims>(jwt, "choria_client_id");
      if (c.permissions?.signed_fleet_management) {
        throw new SecurityError(
          "requires_signer",
          `caller ${c.callerid} may only make requests signed by a delegator`,
        );
      }
      if (!c.permissions?.fleet_management)
        throw new SecurityError("no_fleet_management", `caller ${c.callerid} has no fleet management access`);
      return c;
    });
  }

  /** A client token allowed to sign requests on behalf of others (the `signer` JWT). */
  verifySignerToken(jwt: string): ClientClaims {
    const c = this.verifyPurpose<ClientClaims>(jwt, "choria_client_id");
    if (!c.permissions?.authentication_delegator)
      throw new SecurityError("not_delegator", `${c.callerid} is not an authentication delegator`);
    return c;
  }

  verifyServerToken(jwt: string): ServerClaims {
    return this.serverCache.get(jwt, () => this.verifyPurpose<ServerClaims>(jwt, "choria_server"));
  }

  private verifyPurpose<T extends ClientClaims | ServerClaims>(jwt: string, purpose: string): T {
    const c = verifyToken(jwt, this.issuers as string[]);
    if (c.purpose !== purpose)
      throw new SecurityError("wrong_purpose", `token purpose is ${c.purpose}, need ${purpose}`);
    return c as T;
  }
}
