import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, basename } from "node:path";
import {
  decodeTokenUnverified,
  generateKeyPair,
  loadSeedFile,
  sign,
  tokenExpiry,
  writeSeedFile,
  type KeyPair,
} from "../core/security/index.js";
import { ClientError } from "./errors.js";
import { postJson } from "./http.js";

export interface LoginOptions {
  /** login endpoints (plugin.login.aaasvc.login.url), tried in order until one answers */
  urls: readonly string[];
  username: string;
  password: string;
  /** the key the token will name; created (mode 0600) when missing */
  seedFile: string;
  /** where the token goes, replaced atomically with mode 0600 */
  tokenFile: string;
  /** CA bundle for https endpoints; the system CAs otherwise */
  caFile?: string | undefined;
  timeoutMs?: number | undefined;
  /** ms clock, for tests */
  now?: (() => number) | undefined;
}

export interface LoginResult {
  tokenFile: string;
  /** the endpoint that issued the token */
  url: string;
  /** undefined when the token does not expire */
  expiresAt: Date | undefined;
  publicHex: string;
  /** a new seed file was made */
  createdSeed: boolean;
}

/** The signed part of a login request: Choria's "<timestamp>:<username>:<password>". */
export function loginProof(seedHex: string, timestamp: string, username: string, password: string): string {
  return sign(seedHex, Buffer.from(`${timestamp}:${username}:${password}`)).toString("hex");
}

function seedFor(seedFile: string): { kp: KeyPair; created: boolean } {
  if (existsSync(seedFile)) return { kp: loadSeedFile(seedFile), created: false };
  mkdirSync(dirname(seedFile), { recursive: true, mode: 0o700 });
  const kp = generateKeyPair();
  writeSeedFile(seedFile, kp);
  return { kp, created: true };
}

/** Writes `token` to `path` mode 0600 through a temporary file, so a reader never sees half a token. */
export function saveTokenFile(path: string, token: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
  try {
    writeFileSync(tmp, `${token}\n`, { mode: 0o600, flag: "wx" });
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new ClientError("login_failed", `cannot save the token to ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

/** When the token in `tokenFile` stops being valid; undefined when it never expires or cannot be read. */
export function tokenExpiresAt(tokenFile: string): Date | undefined {
  try {
    const exp = tokenExpiry(decodeTokenUnverified(readFileSync(tokenFile, "utf8").trim()));
    return exp === undefined ? undefined : new Date(exp * 1000);
  } catch {
    return undefined;
  }
}

/**
 * Whether a login is due: no readable token, or one that expires within `withinMs`
 * (0: only when expired). A token without expiry never needs renewal.
 */
export function needsLogin(tokenFile: string, withinMs: number, now: number = Date.now()): boolean {
  let claims;
  try {
    claims = decodeTokenUnverified(readFileSync(tokenFile, "utf8").trim());
  } catch {
    return true;
  }
  const exp = tokenExpiry(claims);
  return exp !== undefined && exp * 1000 - now <= withinMs;
}

/**
 * Logs in to an AAA service (Choria's /choria/v1/login): proves the key with a
 * signature over "<timestamp>:<username>:<password>", and saves the token it is given.
 * An endpoint that cannot be reached or fails (5xx) hands over to the next; a refusal
 * (bad credentials, lockout) ends the attempt, since every endpoint shares the users.
 */
export async function login(opts: LoginOptions): Promise<LoginResult> {
  if (opts.urls.length === 0)
    throw new ClientError("bad_option", "no login URL configured", { option: "urls" });
  if (opts.username === "")
    throw new ClientError("bad_option", "a username is required", { option: "username" });
  const { kp, created } = seedFor(opts.seedFile);
  const timestamp = String(Math.floor((opts.now ?? Date.now)() / 1000));
  const body = {
    username: opts.username,
    password: opts.password,
    signature: loginProof(kp.seedHex, timestamp, opts.username, opts.password),
    public_key: kp.publicHex,
    timestamp,
  };
  const failures: string[] = [];
  for (const url of opts.urls) {
    let res;
    try {
      res = await postJson(url, body, { caFile: opts.caFile, timeoutMs: opts.timeoutMs });
    } catch (err) {
      failures.push(`${url}: ${(err as Error).message}`);
      continue;
    }
    const answer = (res.body ?? {}) as { token?: unknown; error?: unknown };
    const error = typeof answer.error === "string" && answer.error !== "" ? answer.error : undefined;
    if (res.status >= 500) {
      failures.push(`${url}: ${error ?? `HTTP ${res.status}`}`);
      continue;
    }
    if (res.status !== 200 || error !== undefined)
      throw new ClientError("login_failed", `login at ${url} failed: ${error ?? `HTTP ${res.status}`}`);
    if (typeof answer.token !== "string" || answer.token === "")
      throw new ClientError("login_failed", `login at ${url} returned no token`);
    const token = answer.token.trim();
    let claims;
    try {
      claims = decodeTokenUnverified(token);
    } catch (err) {
      throw new ClientError(
        "login_failed",
        `login at ${url} returned an unreadable token: ${(err as Error).message}`,
      );
    }
    // A token for another key could not be used with our seed: refuse it before it replaces a good one.
    if (claims.public_key !== kp.publicHex)
      throw new ClientError("login_failed", `login at ${url} returned a token for another key`);
    saveTokenFile(opts.tokenFile, token);
    const exp = tokenExpiry(claims);
    return {
      tokenFile: opts.tokenFile,
      url,
      expiresAt: exp === undefined ? undefined : new Date(exp * 1000),
      publicHex: kp.publicHex,
      createdSeed: created,
    };
  }
  throw new ClientError("login_failed", `no login endpoint answered: ${failures.join("; ")}`);
}
