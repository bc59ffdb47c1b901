import { randomBytes, timingSafeEqual } from "node:crypto";
import bcrypt from "bcrypt";
import type { Client } from "../../client/index.js";

export const SESSION_COOKIE = "chorus_session";

export interface Session {
  id: string;
  username: string;
  mode: "aaa" | "local";
  expiresAt: number;
  /** AAA mode: a client signing as this user (shares the console's connection) */
  client?: Client;
  /** AAA mode: the temp dir holding this user's seed and token */
  dir?: string;
}

/** The local (non-AAA) users: bcrypt hashes, or one dev password compared in constant time. */
export class LocalUsers {
  constructor(
    private readonly users: Record<string, string>,
    private readonly dev?: { username: string; password: string },
  ) {}

  get empty(): boolean {
    return Object.keys(this.users).length === 0 && this.dev === undefined;
  }

  async check(username: string, password: string): Promise<boolean> {
    if (this.dev && username === this.dev.username) {
      const a = Buffer.from(password);
      const b = Buffer.from(this.dev.password);
      return a.length === b.length && timingSafeEqual(a, b);
    }
    const hash = Object.hasOwn(this.users, username) ? this.users[username] : undefined;
    if (hash === undefined) return false;
    return bcrypt.compare(password, hash);
  }
}

export type SessionLookup = { ok: true; session: Session } | { ok: false; error: string };

/** Sessions by random id, in memory; an expired one is removed when it is next used or swept. */
export class SessionStore {
  private readonly sessions = new Map<string, Session>();

  constructor(
    private readonly ttlMs: number,
    private readonly onEnd: (s: Session) => void = () => {},
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.sessions.size;
  }

  create(username: string, mode: Session["mode"], extra: Pick<Session, "client" | "dir"> = {}): Session {
    const s: Session = {
      id: randomBytes(32).toString("base64url"),
      username,
      mode,
      expiresAt: this.now() + this.ttlMs,
      ...extra,
    };
    this.sessions.set(s.id, s);
    return s;
  }

  lookup(id: string | undefined): SessionLookup {
    if (!id) return { ok: false, error: "not logged in" };
    const s = this.sessions.get(id);
    if (!s) return { ok: false, error: "not logged in" };
    if (this.now() >= s.expiresAt) {
      this.end(id);
      return { ok: false, error: "session expired: log in again" };
    }
    return { ok: true, session: s };
  }

  end(id: string): void {
    const s = this.sessions.get(id);
    if (!s) return;
    this.sessions.delete(id);
    this.onEnd(s);
  }

  sweep(): void {
    const now = this.now();
    for (const [id, s] of this.sessions) if (now >= s.expiresAt) this.end(id);
  }

  endAll(): void {
    for (const id of [...this.sessions.keys()]) this.end(id);
  }
}

/** The session id from a Cookie header. */
export function sessionIdFrom(cookieHeader: string | undefined): string | undefined {
  if (!cookieHeader) return undefined;
  for (const part of cookieHeader.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === SESSION_COOKIE) return part.slice(eq + 1).trim();
  }
  return undefined;
}

export function sessionCookie(id: string): string {
  // a browser-session cookie: the server, not the browser, decides when the session has
  // expired, so it can say "session expired" instead of "not logged in"
  return `${SESSION_COOKIE}=${id}; Path=/; HttpOnly; Secure; SameSite=Strict`;
}

export function clearedCookie(): string {
  return `${SESSION_COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0`;
}
