import { createHmac, randomBytes } from "node:crypto";
import { watch, type FSWatcher } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { basename, dirname } from "node:path";
import { Ajv } from "ajv";
import bcrypt from "bcrypt";
import {
  chainIssuerFromToken,
  createClientToken,
  loadSeedFile,
  orgIssuer,
  verify as ed25519Verify,
  type ClientPermissions,
  type ClientTokenOptions,
  type Issuer,
} from "../../core/security/index.js";
import { silentLogger, type Logger } from "../../core/util/index.js";
import { ajvErrorText, parseDocument, USER_SCHEMA, type UserEntry, type UserlistConfig } from "./config.js";
import type { AaaMetrics } from "./metrics.js";

/** POST /choria/v1/login body (Choria's field names; timestamp unix seconds). */
export interface LoginRequest {
  username: string;
  password: string;
  signature: string;
  public_key: string;
  timestamp: string | number;
}

export type LoginOutcome =
  | { ok: true; token: string; callerid: string }
  | {
      ok: false;
      status: 400 | 401 | 429 | 500;
      /** what the caller sees: always generic */
      error: string;
      /** what the log and the failure counter see */
      reason: string;
      retryAfterS?: number;
    };

/** How far back a login proof may be dated (Choria: one minute). */
export const PROOF_MAX_AGE_S = 60;
const GENERIC = "Login failed";
// verified against for unknown users, so their failure takes as long as a wrong password
let dummyHash: Promise<string> | undefined;
const unknownUserHash = (): Promise<string> =>
  (dummyHash ??= bcrypt.hash(randomBytes(16).toString("hex"), 10));

const usersValidator = new Ajv({ allErrors: true, strict: false }).compile({
  type: "array",
  items: USER_SCHEMA,
});

/**
 * Failures per key within a sliding window; a key with `max` failures inside the
 * window is locked until the oldest of them leaves it.
 */
export class FailureWindow {
  private readonly fails = new Map<string, number[]>();

  constructor(
    private readonly max: number,
    private readonly windowMs: number,
    private readonly maxKeys = 100_000,
  ) {}

  /** Milliseconds until `key` may try again; 0 = not locked. */
  lockedFor(key: string, now: number): number {
    const list = this.prune(key, now);
    if (!list || list.length < this.max) return 0;
    return (list[list.length - this.max] as number) + this.windowMs - now;
  }

  fail(key: string, now: number): void {
    const list = this.prune(key, now) ?? [];
    list.push(now);
    // the window never needs more than max entries to answer lockedFor
    if (list.length > this.max) list.splice(0, list.length - this.max);
    this.fails.set(key, list);
    if (this.fails.size > this.maxKeys) this.sweep(now);
  }

  clear(key: string): void {
    this.fails.delete(key);
  }

  get size(): number {
    return this.fails.size;
  }

  private prune(key: string, now: number): number[] | undefined {
    const list = this.fails.get(key);
    if (!list) return undefined;
    while (list.length > 0 && (list[0] as number) + this.windowMs <= now) list.shift();
    if (list.length === 0) {
      this.fails.delete(key);
      return undefined;
    }
    return list;
  }

  // a flood of distinct usernames must not grow memory without bound: drop the stale,
  // then (still too many) the oldest keys
  private sweep(now: number): void {
    for (const key of [...this.fails.keys()]) this.prune(key, now);
    for (const key of this.fails.keys()) {
      if (this.fails.size <= this.maxKeys) break;
      this.fails.delete(key);
    }
  }
}

export interface UserlistOptions {
  site: string;
  metrics?: AaaMetrics;
  log?: Logger;
  /** unix ms (tests) */
  now?: () => number;
  /** watch users_file for changes (default true) */
  watch?: boolean;
}

/** Hashes a password for a users file (`chorus aaa crypt`). */
export function hashPassword(password: string, cost = 10): Promise<string> {
  return bcrypt.hash(password, cost);
}

/**
 * Choria's userlist authenticator: users with bcrypt passwords from the config or a
 * users file, logging in with an ed25519 proof and receiving a chain-issued client JWT.
 */
export class UserlistAuthenticator {
  private users = new Map<string, UserEntry>();
  private fileStamp = "";
  private readonly userFails: FailureWindow;
  private readonly addressFails: FailureWindow;
  private readonly now: () => number;
  private readonly log: Logger;
  private watcher: FSWatcher | undefined;
  private reloadTimer: NodeJS.Timeout | undefined;
  private reloading: Promise<void> | undefined;
  // verified credentials: HMAC over username, password and stored hash -> expiry (ms)
  private readonly cacheKey = randomBytes(32);
  private readonly verifiedCache = new Map<string, number>();
  private readonly verifying = new Map<string, Promise<boolean>>();
  private static readonly MAX_CACHED = 10_000;

  constructor(
    private readonly cfg: UserlistConfig,
    private readonly opts: UserlistOptions,
  ) {
    this.now = opts.now ?? Date.now;
    this.log = opts.log ?? silentLogger;
    this.userFails = new FailureWindow(cfg.max_failures_per_user, cfg.lockoutS * 1000);
    this.addressFails = new FailureWindow(cfg.max_failures_per_address, cfg.lockoutS * 1000);
    this.setUsers(cfg.users);
  }

  /** Loads users_file (a failure here is fatal: there is no last good list yet) and watches it. */
  async start(): Promise<void> {
    const file = this.cfg.users_file;
    if (!file) return;
    await this.reloadFile(true);
    if (this.opts.watch ?? true) {
      // watch the folder: editors and config management replace the file by rename
      const name = basename(file);
      try {
        this.watcher = watch(dirname(file), (_event, changed) => {
          if (changed !== null && changed !== name) return;
          clearTimeout(this.reloadTimer);
          this.reloadTimer = setTimeout(() => void this.reloadFile(false), 50);
        });
        this.watcher.on("error", (err) => this.log.warn({ err: err.message }, "users file watch failed"));
      } catch (err) {
        this.log.warn(
          { err: (err as Error).message },
          "cannot watch the users file; checking it at each login",
        );
      }
    }
  }

  stop(): void {
    clearTimeout(this.reloadTimer);
    this.watcher?.close();
    this.watcher = undefined;
  }

  /** Usernames currently known (tests, status). */
  userNames(): string[] {
    return [...this.users.keys()].sort();
  }

  private setUsers(list: UserEntry[]): void {
    const m = new Map<string, UserEntry>();
    for (const u of list) m.set(u.username, u);
    // the file's users replace the config's of the same name
    this.users = m;
    this.verifiedCache.clear();
  }

  /** Re-reads users_file when its mtime, size or inode changed. */
  private async reloadFile(initial: boolean): Promise<void> {
    // one reload at a time; a login arriving during one waits for it
    if (this.reloading) return this.reloading;
    this.reloading = this.doReload(initial).finally(() => (this.reloading = undefined));
    return this.reloading;
  }

  private async doReload(initial: boolean): Promise<void> {
    const file = this.cfg.users_file as string;
    try {
      const st = await stat(file);
      const stamp = `${st.ino}:${st.size}:${st.mtimeMs}`;
      if (stamp === this.fileStamp) return;
      const text = await readFile(file, "utf8");
      const list = parseUsers(text, file);
      this.fileStamp = stamp;
      this.setUsers([...this.cfg.users, ...list]);
      this.log.info({ file, users: list.length }, "loaded users file");
    } catch (err) {
      if (initial) throw err;
      this.opts.metrics?.usersFileErrors.inc({ site: this.opts.site });
      this.log.error(
        { file, err: (err as Error).message },
        "users file is broken; keeping the last good list of users",
      );
      // retry when it changes again, not on every login
      try {
        const st = await stat(file);
        this.fileStamp = `${st.ino}:${st.size}:${st.mtimeMs}`;
      } catch {
        // gone: keep the old stamp, a new file gets a new one
      }
    }
  }

  /** Logs a user in; `address` is the caller's network address (rate limits). */
  async login(req: LoginRequest, address: string): Promise<LoginOutcome> {
    const started = process.hrtime.bigint();
    const out = await this.process(req, address);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const m = this.opts.metrics;
    const labels = { site: this.opts.site, authenticator: "userlist" };
    m?.authenticatorTime.observe(labels, seconds);
    if (!out.ok) {
      m?.authenticatorErrors.inc(labels);
      this.log.warn(
        { user: typeof req.username === "string" ? req.username : "", address, reason: out.reason },
        "login failed",
      );
    } else {
      this.log.info({ user: req.username, address }, "logged in");
    }
    return out;
  }

  private refuse(
    status: 400 | 401 | 429 | 500,
    reason: string,
    extra: { retryAfterS?: number; error?: string } = {},
  ): LoginOutcome {
    this.opts.metrics?.loginFailures.inc({ site: this.opts.site, reason: reason.split(":")[0] as string });
    return {
      ok: false,
      status,
      error: extra.error ?? GENERIC,
      reason,
      ...(extra.retryAfterS && { retryAfterS: extra.retryAfterS }),
    };
  }

  private failed(username: string, address: string, reason: string): LoginOutcome {
    const now = this.now();
    this.userFails.fail(username, now);
    this.addressFails.fail(address, now);
    return this.refuse(401, reason);
  }

  private async process(req: LoginRequest, address: string): Promise<LoginOutcome> {
    const { username, password, signature, public_key: pk } = req;
    if ([username, password, signature, pk].some((v) => typeof v !== "string") || username === "")
      return this.refuse(400, "malformed: missing or non-string fields");
    const ts = typeof req.timestamp === "number" ? String(req.timestamp) : req.timestamp;
    if (typeof ts !== "string" || !/^\d{1,15}$/.test(ts))
      return this.refuse(400, "malformed: timestamp is not unix seconds");
    if (!/^[0-9a-fA-F]{64}$/.test(pk))
      return this.refuse(400, "malformed: public_key is not 32 bytes of hex");
    if (!/^[0-9a-fA-F]{128}$/.test(signature))
      return this.refuse(400, "malformed: signature is not 64 bytes of hex");

    // locked callers are refused before any expensive work
    const now = this.now();
    const lockedMs = Math.max(
      this.userFails.lockedFor(username, now),
      this.addressFails.lockedFor(address, now),
    );
    if (lockedMs > 0) {
      const scope = this.userFails.lockedFor(username, now) > 0 ? "user" : "address";
      this.opts.metrics?.lockouts.inc({ site: this.opts.site, scope });
      return this.refuse(429, `locked out: too many failures for this ${scope}`, {
        retryAfterS: Math.ceil(lockedMs / 1000),
        error: "Login failed: too many attempts, try again later",
      });
    }

    // Choria: no future timestamps, at most a minute old
    const tsMs = Number(ts) * 1000;
    if (tsMs > now)
      return this.failed(username, address, `future timestamp: ${ts} is ${(tsMs - now) / 1000}s ahead`);
    if (now - tsMs > PROOF_MAX_AGE_S * 1000)
      return this.failed(
        username,
        address,
        `stale proof: timestamp is ${Math.round((now - tsMs) / 1000)}s old`,
      );
    const proof = Buffer.from(`${ts}:${username}:${password}`);
    if (!ed25519Verify(pk.toLowerCase(), proof, Buffer.from(signature, "hex")))
      return this.failed(username, address, "invalid signature: proof not signed by public_key");

    if (this.cfg.users_file) await this.reloadFile(false);
    const user = this.users.get(username);
    if (!user) {
      await bcrypt.compare(password, await unknownUserHash());
      return this.failed(username, address, "unknown user");
    }
    if (!(await this.checkPassword(user, password)))
      return this.failed(username, address, "incorrect password");
    this.userFails.clear(username);

    try {
      const token = await this.issue(user, pk.toLowerCase());
      return { ok: true, token, callerid: `up=${username}` };
    } catch (err) {
      return this.refuse(500, `cannot issue token: ${(err as Error).message}`, {
        error: "Could not sign JWT token",
      });
    }
  }

  private async checkPassword(user: UserEntry, password: string): Promise<boolean> {
    const ttlMs = this.cfg.credentialCacheS * 1000;
    const site = this.opts.site;
    if (ttlMs <= 0) return bcrypt.compare(password, user.password);
    const key = createHmac("sha256", this.cacheKey)
      .update(user.username)
      .update("\0")
      .update(password)
      .update("\0")
      .update(user.password)
      .digest("base64");
    const now = this.now();
    const exp = this.verifiedCache.get(key);
    if (exp !== undefined && exp > now) {
      this.opts.metrics?.credentialCache.inc({ site, result: "hit" });
      return true;
    }
    // a burst of logins with one credential shares one bcrypt run
    const pending = this.verifying.get(key);
    if (pending) {
      this.opts.metrics?.credentialCache.inc({ site, result: "shared" });
      return pending;
    }
    this.opts.metrics?.credentialCache.inc({ site, result: "miss" });
    const run = bcrypt.compare(password, user.password).finally(() => this.verifying.delete(key));
    this.verifying.set(key, run);
    if (!(await run)) return false;
    if (this.verifiedCache.size >= UserlistAuthenticator.MAX_CACHED) {
      for (const [k, e] of this.verifiedCache) if (e <= now) this.verifiedCache.delete(k);
      if (this.verifiedCache.size >= UserlistAuthenticator.MAX_CACHED)
        this.verifiedCache.delete(this.verifiedCache.keys().next().value as string);
    }
    this.verifiedCache.set(key, now + ttlMs);
    return true;
  }

  /** The issuer: a chain issuer (signing_key + signing_token), else signing_key as an org issuer. Re-read each login so rotated secrets apply at once. */
  private async issuer(): Promise<Issuer> {
    const kp = loadSeedFile(this.cfg.signing_key);
    if (!this.cfg.signing_token) return orgIssuer(kp);
    const jwt = (await readFile(this.cfg.signing_token, "utf8")).trim();
    try {
      return chainIssuerFromToken(kp, jwt);
    } catch (err) {
      throw new Error(`signing_token: ${(err as Error).message}`, { cause: err });
    }
  }

  private async issue(user: UserEntry, publicKeyHex: string): Promise<string> {
    const issuer = await this.issuer();
    let validityS = this.cfg.validityS;
    if (issuer.issexp !== undefined) {
      // a token never outlives its issuer (verifiers also clamp on issexp)
      const left = issuer.issexp - Math.floor(this.now() / 1000);
      if (left <= 0) throw new Error("signing_token has expired");
      validityS = Math.min(validityS, left);
    }
    const cedar =
      user.cedar_policy ??
      (user.cedar_policy_file ? await readFile(user.cedar_policy_file, "utf8") : undefined);
    const opa =
      user.opa_policy ?? (user.opa_policy_file ? await readFile(user.opa_policy_file, "utf8") : undefined);
    const opts: ClientTokenOptions = {
      callerid: `up=${user.username}`,
      publicKeyHex,
      validityS,
      ...(user.organization && { ou: user.organization }),
      ...(user.acls && { agents: user.acls }),
      ...(cedar !== undefined && { cedar_policy: cedar }),
      ...(opa !== undefined && { opa_policy: opa }),
      ...(user.properties && { user_properties: user.properties }),
      ...(user.broker_permissions && { permissions: user.broker_permissions as ClientPermissions }),
    };
    return createClientToken(opts, issuer);
  }
}

/** Parses a users file: a list of users, or `{ users: [...] }`; every entry validated. */
export function parseUsers(text: string, file: string): UserEntry[] {
  let doc = parseDocument(text, file);
  if (doc && typeof doc === "object" && !Array.isArray(doc) && "users" in doc)
    doc = (doc as { users: unknown }).users;
  if (doc === null || doc === undefined) doc = [];
  if (!usersValidator(doc)) {
    const errs = (usersValidator.errors ?? []).map((e) => ajvErrorText(e, "users"));
    throw new Error(`${file}: ${[...new Set(errs)].join("; ")}`);
  }
  const list = doc as UserEntry[];
  const seen = new Set<string>();
  for (const u of list) {
    if (seen.has(u.username)) throw new Error(`${file}: user ${u.username} is listed twice`);
    seen.add(u.username);
  }
  return list;
}
