import { randomBytes } from "node:crypto";
import { open, readFile, rename, rm, stat, unlink } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { CertUsage } from "../security/index.js";
import { CaError } from "./errors.js";
import type { CaSans, ResolvedPolicy } from "./policy.js";

export type CaAlgorithm = "rsa" | "ed25519";

/** RFC 5280 CRL reason codes a revocation may give (certificateHold is left out: revocation here is final). */
export const REVOCATION_REASONS = [
  "unspecified",
  "keyCompromise",
  "cACompromise",
  "affiliationChanged",
  "superseded",
  "cessationOfOperation",
  "privilegeWithdrawn",
  "aACompromise",
] as const;
export type RevocationReason = (typeof REVOCATION_REASONS)[number];

/** One issued certificate as index.json keeps it (dates are ISO strings). */
export interface IssuedRecord {
  serial: string;
  subject: string;
  cn: string;
  sans: CaSans;
  usage: CertUsage;
  /** the leaf's key, e.g. "rsa-2048", "ed25519", "ec-prime256v1" */
  key: string;
  not_before: string;
  not_after: string;
  issued_at: string;
  revoked_at?: string;
  revocation_reason?: RevocationReason;
}

/** `<dir>/index.json`: what the CA is and everything it issued. */
export interface IndexFile {
  version: 1;
  algorithm: CaAlgorithm;
  cn: string;
  created_at: string;
  policy: ResolvedPolicy;
  /** the number of the last CRL made (RFC 5280 wants it to increase) */
  crl_number: number;
  certificates: IssuedRecord[];
}

export const INDEX_FILE = "index.json";
const LOCK_FILE = "index.lock";
// a lock older than this belongs to a process that hung or died on another host
const STALE_LOCK_MS = 60_000;
const LOCK_WAIT_MS = 15_000;

function ioError(what: string, err: unknown): CaError {
  return new CaError("io", `${what}: ${(err as Error).message}`, { cause: err });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function checkIndex(v: unknown, file: string): IndexFile {
  const bad = (why: string) => new CaError("bad_state", `${file} is not a CA index: ${why}`);
  if (!isObject(v)) throw bad("not a JSON object");
  if (v.version !== 1) throw bad(`unknown version ${JSON.stringify(v.version)}`);
  if (v.algorithm !== "rsa" && v.algorithm !== "ed25519") throw bad("algorithm must be rsa or ed25519");
  if (typeof v.cn !== "string") throw bad("cn must be a string");
  if (!isObject(v.policy)) throw bad("policy must be an object");
  if (typeof v.crl_number !== "number" || !Number.isSafeInteger(v.crl_number) || v.crl_number < 0)
    throw bad("crl_number must be a whole number");
  if (!Array.isArray(v.certificates)) throw bad("certificates must be a list");
  for (const c of v.certificates as unknown[]) {
    if (!isObject(c) || typeof c.serial !== "string" || typeof c.not_after !== "string" || !isObject(c.sans))
      throw bad("a certificate entry lacks serial, not_after or sans");
  }
  return v as unknown as IndexFile;
}

export async function readIndex(dir: string): Promise<IndexFile> {
  const file = join(dir, INDEX_FILE);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT")
      throw new CaError("not_found", `no certificate authority in ${dir} (${INDEX_FILE} is missing)`);
    throw ioError(`cannot read ${file}`, err);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new CaError("bad_state", `${file} is not valid JSON`, { cause: err });
  }
  return checkIndex(parsed, file);
}

/**
 * Writes `data` to `path` so that readers see the old or the new content, never a
 * part: a temp file beside it, fsync, rename over, fsync the directory (the rename).
 */
export async function writeAtomic(
  dir: string,
  name: string,
  data: string | Uint8Array,
  mode: number,
): Promise<void> {
  const path = join(dir, name);
  const tmp = join(dir, `.${name}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  try {
    const fh = await open(tmp, "wx", mode);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    const d = await open(dir, "r");
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  } catch (err) {
    await rm(tmp, { force: true });
    throw ioError(`cannot write ${path}`, err);
  }
}

/** Writes a new file that must not exist yet, synced, with `mode`. */
export async function writeNew(path: string, data: string, mode: number): Promise<void> {
  try {
    const fh = await open(path, "wx", mode);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch (err) {
    throw ioError(`cannot write ${path}`, err);
  }
}

// one queue per CA directory in this process, so two CertificateAuthority objects on
// the same directory also take turns
const queues = new Map<string, Promise<unknown>>();

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Takes `<dir>/index.lock`, which keeps other processes (a CLI beside a service) out. */
async function takeFileLock(dir: string): Promise<() => Promise<void>> {
  const path = join(dir, LOCK_FILE);
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      const fh = await open(path, "wx", 0o600);
      await fh.writeFile(String(process.pid));
      await fh.close();
      return () => unlink(path).catch(() => undefined);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw ioError(`cannot create ${path}`, err);
    }
    // a holder that died (or hung) leaves its lock behind: take it over
    try {
      const [text, st] = await Promise.all([readFile(path, "utf8"), stat(path)]);
      const pid = Number(text);
      const dead = Number.isInteger(pid) && pid > 0 && pid !== process.pid && !alive(pid);
      if (dead || Date.now() - st.mtimeMs > STALE_LOCK_MS) await unlink(path);
    } catch {
      // it went away (or is being written) meanwhile: try again
    }
    if (Date.now() > deadline) {
      throw new CaError("io", `${path} is held by another process; remove it if no CA process is running`);
    }
    await new Promise((r) => setTimeout(r, 10 + Math.random() * 20));
  }
}

/**
 * Runs `fn` on a fresh copy of the index and writes what it leaves, one change at a
 * time per directory (in this process, and between processes through the lock file).
 */
export function mutateIndex<T>(dir: string, fn: (index: IndexFile) => T | Promise<T>): Promise<T> {
  const key = resolve(dir);
  const prev = queues.get(key) ?? Promise.resolve();
  const run = prev.then(async () => {
    const release = await takeFileLock(dir);
    try {
      const index = await readIndex(dir);
      const result = await fn(index);
      await writeAtomic(dir, INDEX_FILE, `${JSON.stringify(index, null, 2)}\n`, 0o600);
      return result;
    } finally {
      await release();
    }
  });
  const settled = run.then(
    () => undefined,
    () => undefined,
  );
  queues.set(key, settled);
  // drop the entry once idle so the map does not keep every directory ever used
  void settled.then(() => {
    if (queues.get(key) === settled) queues.delete(key);
  });
  return run;
}
