/**
 * The `archive` watcher (go-choria aagent/watchers/archivewatcher): keeps a directory
 * made from a tar.gz in place. Each run checks `<target>/<creates>` (and, with `verify`,
 * every file listed in the SHA256SUMS-style file inside it, whose own sha256 must be
 * `verify_checksum`); when it is missing or does not verify, the archive is downloaded to
 * a temporary file, its sha256 must equal `checksum` before anything is extracted, it is
 * extracted beside the target (regular files and directories only, no absolute or `..`
 * names), verified again, and renamed into place. A tampered tree is re-fetched, as in
 * go-choria: the watcher logs it and succeeds once the fresh copy is in place.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { lstat, mkdir, mkdtemp, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { isAbsolute, join, resolve } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { MachineGovernor, Watcher, WatcherDef, WatcherFactory, WatcherHost } from "../types.js";
import { WatcherProps } from "./properties.js";

const run = promisify(execFile);

/** go-choria's archive watcher states, as they appear in `previous_outcome`. */
export type ArchiveState =
  | "unknown"
  | "skipped"
  | "error"
  | "verified"
  | "downloaded"
  | "verify_failed"
  | "no_creates"
  | "no_checksums";

/** Largest archive accepted: a download that never ends must not fill the disk. */
export const MAX_ARCHIVE_BYTES = 256 * 1024 * 1024;

const SHA256_RE = /^[a-fA-F0-9]{64}$/;

export interface ArchiveSpec {
  /** http(s) URL, file:// URL or file path (absolute, or relative to the machine) */
  source: string;
  /** sha256 (hex) of the archive */
  checksum: string;
  /** directory the archive is extracted into */
  target: string;
  /** the directory (relative to target) the archive creates */
  creates: string;
  /** SHA256SUMS-style file inside `creates` */
  verify?: string;
  /** sha256 (hex) of the verify file */
  verifyChecksum?: string;
  username?: string;
  password?: string;
  governor?: string;
  governorTimeoutMs?: number;
  /** how long the download may take (default 10 s) */
  timeoutMs?: number;
}

export interface ArchiveLogger {
  info(msg: string): void;
  warn(msg: string): void;
}

export interface EnsureArchiveOptions {
  governor?: MachineGovernor;
  log?: ArchiveLogger;
  signal?: AbortSignal;
}

export interface ArchiveResult {
  state: "verified" | "downloaded";
  /** the directory in place: target/creates */
  path: string;
}

async function sha256File(path: string): Promise<string> {
  const h = createHash("sha256");
  await pipeline(createReadStream(path), h);
  return h.digest("hex");
}

/** A path inside an archive or a sums file must stay inside its directory. */
function safeRelative(name: string): boolean {
  if (name === "" || name.includes("\0") || isAbsolute(name) || name.startsWith("\\")) return false;
  return !name.split(/[\\/]+/).includes("..");
}

/**
 * Checks every `<sha256>  <file>` line of `sumsFile` against the files under `dir`;
 * returns why it fails, or undefined when all match.
 */
export async function verifySums(
  dir: string,
  sumsFile: string,
  sumsChecksum: string,
): Promise<string | undefined> {
  const sumsPath = join(dir, sumsFile);
  let st;
  try {
    st = await stat(sumsPath);
  } catch {
    return `checksums file ${sumsFile} does not exist in ${dir}`;
  }
  if (!st.isFile()) return `checksums file ${sumsFile} is not a regular file`;
  const got = await sha256File(sumsPath);
  if (got !== sumsChecksum.toLowerCase()) {
    return `checksums file ${sumsFile} has checksum ${got}, expected ${sumsChecksum.toLowerCase()}`;
  }
  const lines = (await readFile(sumsPath, "utf8")).split("\n");
  let entries = 0;
  for (const [i, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === "") continue;
    const m = /^([a-fA-F0-9]{64})\s+\*?(.+)$/.exec(line);
    if (!m) return `${sumsFile} line ${i + 1}: not a "<sha256>  <file>" line`;
    const [, sum, file] = m as unknown as [string, string, string];
    if (!safeRelative(file)) return `${sumsFile} line ${i + 1}: ${file} is outside the archive`;
    let actual: string;
    try {
      actual = await sha256File(join(dir, file));
    } catch {
      return `${file} listed in ${sumsFile} is missing`;
    }
    if (actual !== sum.toLowerCase()) return `${file} does not match its checksum in ${sumsFile}`;
    entries++;
  }
  if (entries === 0) return `${sumsFile} lists no files`;
  return undefined;
}

/** Where the archive stands now: verified in place, or why it must be fetched. */
export async function archiveStatus(spec: ArchiveSpec): Promise<{ state: ArchiveState; reason?: string }> {
  const creates = join(spec.target, spec.creates);
  try {
    if (!(await stat(creates)).isDirectory())
      return { state: "no_creates", reason: `${creates} is not a directory` };
  } catch {
    return { state: "no_creates", reason: `${creates} does not exist` };
  }
  if (!spec.verify || !spec.verifyChecksum) return { state: "verified" };
  try {
    await stat(join(creates, spec.verify));
  } catch {
    return { state: "no_checksums", reason: `${spec.verify} does not exist in ${creates}` };
  }
  const why = await verifySums(creates, spec.verify, spec.verifyChecksum);
  return why ? { state: "verify_failed", reason: why } : { state: "verified" };
}

/** Downloads (or copies) the source into `file`, returning its sha256. */
async function download(spec: ArchiveSpec, file: string, signal: AbortSignal): Promise<string> {
  const hash = createHash("sha256");
  let size = 0;
  const counter = async function* (src: AsyncIterable<Uint8Array>) {
    for await (const chunk of src) {
      size += chunk.length;
      if (size > MAX_ARCHIVE_BYTES) throw new Error(`the archive is larger than ${MAX_ARCHIVE_BYTES} bytes`);
      hash.update(chunk);
      yield chunk;
    }
  };
  if (/^https?:\/\//i.test(spec.source)) {
    const headers: Record<string, string> = { "user-agent": "Chorus Archive Watcher" };
    if (spec.username) {
      headers.authorization = `Basic ${Buffer.from(`${spec.username}:${spec.password ?? ""}`).toString("base64")}`;
    }
    const res = await fetch(spec.source, { headers, signal });
    if (!res.ok || !res.body) throw new Error(`GET ${spec.source}: HTTP ${res.status}`);
    await pipeline(
      Readable.fromWeb(res.body as import("node:stream/web").ReadableStream),
      counter,
      createWriteStream(file, { mode: 0o600 }),
      { signal },
    );
  } else {
    const path = spec.source.startsWith("file://") ? fileURLToPath(spec.source) : spec.source;
    await pipeline(createReadStream(path), counter, createWriteStream(file, { mode: 0o600 }), { signal });
  }
  return hash.digest("hex");
}

/** Lists the archive with tar and refuses anything but plain files and directories with safe names. */
async function checkEntries(file: string, signal: AbortSignal): Promise<void> {
  const env = { ...process.env, LC_ALL: "C" };
  const names = (await run("tar", ["-tzf", file], { env, signal, maxBuffer: 64 * 1024 * 1024 })).stdout
    .split("\n")
    .filter((l) => l !== "");
  const long = (await run("tar", ["-tvzf", file], { env, signal, maxBuffer: 64 * 1024 * 1024 })).stdout
    .split("\n")
    .filter((l) => l !== "");
  if (names.length === 0) throw new Error("the archive is empty");
  if (names.length !== long.length) throw new Error("the archive listing is inconsistent");
  for (const [i, name] of names.entries()) {
    if (!safeRelative(name))
      throw new Error(`the archive entry ${JSON.stringify(name)} is outside the target`);
    const type = long[i]?.[0];
    if (type !== "-" && type !== "d") {
      throw new Error(`the archive entry ${JSON.stringify(name)} is not a regular file or directory`);
    }
  }
}

/** After extraction nothing may be a link, whatever tar let through. */
async function checkTree(dir: string): Promise<void> {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    const st = await lstat(p);
    if (st.isDirectory()) await checkTree(p);
    else if (!st.isFile()) throw new Error(`${p} is not a regular file or directory`);
  }
}

/**
 * Makes sure `target/creates` is the verified content of the archive: does nothing when
 * it already verifies, else downloads, checks the checksum, extracts safely, verifies
 * and renames it into place. Throws Error saying why on any failure; nothing is changed
 * in the target then.
 */
export async function ensureArchive(spec: ArchiveSpec, o: EnsureArchiveOptions = {}): Promise<ArchiveResult> {
  const creates = join(spec.target, spec.creates);
  const now = await archiveStatus(spec);
  if (now.state === "verified") return { state: "verified", path: creates };
  if (now.state !== "no_creates")
    o.log?.warn(`${creates} failed verification (${now.reason}), fetching ${spec.source} again`);

  const fetchAndPlace = async (): Promise<ArchiveResult> => {
    await mkdir(spec.target, { recursive: true, mode: 0o700 });
    // a hidden temporary directory beside the target: same file system for rename, and
    // machine store scans skip dot directories
    const tmp = await mkdtemp(join(spec.target, ".chorus-archive-"));
    const signal = AbortSignal.any([
      AbortSignal.timeout(spec.timeoutMs ?? 10_000),
      ...(o.signal ? [o.signal] : []),
    ]);
    try {
      const file = join(tmp, "archive.tgz");
      o.log?.info(`downloading ${spec.source}`);
      const sum = await download(spec, file, signal);
      if (sum !== spec.checksum.toLowerCase()) {
        throw new Error(`archive checksum ${sum} does not match the expected ${spec.checksum.toLowerCase()}`);
      }
      await checkEntries(file, signal);
      const out = join(tmp, "x");
      await mkdir(out, { mode: 0o700 });
      await run("tar", ["-xzf", file, "-C", out, "--no-same-owner"], { signal });
      await checkTree(out);
      const made = join(out, spec.creates);
      try {
        if (!(await stat(made)).isDirectory()) throw new Error();
      } catch {
        throw new Error(`the archive did not create the directory ${spec.creates}`);
      }
      if (spec.verify && spec.verifyChecksum) {
        const why = await verifySums(made, spec.verify, spec.verifyChecksum);
        if (why) throw new Error(`the archive content does not verify: ${why}`);
      }
      // swap: the old tree moves aside first so the target is never half written
      const old = join(tmp, "old");
      let hadOld = false;
      try {
        await rename(creates, old);
        hadOld = true;
      } catch {
        // nothing there yet
      }
      try {
        await rename(made, creates);
      } catch (err) {
        if (hadOld) await rename(old, creates).catch(() => {});
        throw err;
      }
      o.log?.warn(`archive ${spec.source} was deployed to ${creates}`);
      return { state: "downloaded", path: creates };
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  };

  if (!spec.governor) return fetchAndPlace();
  if (!o.governor) throw new Error(`governor ${spec.governor} is set but this host has no governors`);
  return o.governor.run(spec.governor, spec.governorTimeoutMs ?? 300_000, fetchAndPlace);
}

const KNOWN = [
  "source",
  "checksum",
  "target",
  "creates",
  "verify",
  "verify_checksum",
  "username",
  "password",
  "governor",
  "governor_timeout",
  "timeout",
  "insecure",
] as const;

/** Reads and checks an archive watcher's properties; relative paths resolve against `directory`. */
export function archiveSpec(def: WatcherDef, path: string, directory: string): ArchiveSpec {
  const p = new WatcherProps(def, path, KNOWN);
  const source = p.string("source", { required: true });
  const checksum = p.string("checksum", { required: true });
  if (!SHA256_RE.test(checksum)) throw p.error("checksum", "must be a sha256 hex string");
  const target = p.string("target", { required: true });
  const creates = p.string("creates", { required: true });
  if (!safeRelative(creates) || creates === "." || creates.includes("/")) {
    throw p.error("creates", "must be a single directory name inside target");
  }
  const verify = p.string("verify") || undefined;
  const verifyChecksum = p.string("verify_checksum") || undefined;
  if (verify && !verifyChecksum) throw p.error("verify_checksum", "is required when verify is set");
  if (verify && !safeRelative(verify)) throw p.error("verify", "must be a path inside the archive");
  if (verifyChecksum && !SHA256_RE.test(verifyChecksum)) {
    throw p.error("verify_checksum", "must be a sha256 hex string");
  }
  const username = p.string("username") || undefined;
  const password = p.string("password") || undefined;
  if (username && !password) throw p.error("password", "is required when username is given");
  if (p.bool("insecure")) throw p.error("insecure", "skipping TLS verification is not supported by Chorus");
  const governor = p.string("governor") || undefined;
  const isUrl = /^(https?|file):\/\//i.test(source);
  if (!isUrl && /^[a-z][a-z0-9+.-]*:\/\//i.test(source))
    throw p.error("source", "only http, https and file sources are supported");
  return {
    source: isUrl ? source : resolve(directory, source),
    checksum,
    target: resolve(directory, target),
    creates,
    ...(verify && { verify }),
    ...(verifyChecksum && { verifyChecksum }),
    ...(username && { username }),
    ...(password && { password }),
    ...(governor && { governor, governorTimeoutMs: p.duration("governor_timeout", 300_000) }),
    // go-choria raises anything under 5 s to 5 s
    timeoutMs: Math.max(p.duration("timeout", 10_000), 5_000),
  };
}

class ArchiveWatcher implements Watcher {
  readonly type = "archive";
  private readonly spec: ArchiveSpec;
  private previous: ArchiveState = "unknown";
  private runTimeNs = 0;
  private busy = false;

  constructor(
    readonly def: WatcherDef,
    private readonly host: WatcherHost,
    path: string,
  ) {
    this.spec = archiveSpec(def, path, host.directory);
  }

  async run(signal: AbortSignal): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    const start = process.hrtime.bigint();
    const log = this.host.log;
    const name = this.def.name;
    try {
      const res = await ensureArchive(this.spec, {
        ...(this.host.services.governor && { governor: this.host.services.governor }),
        log: { info: (m) => log.info({ watcher: name }, m), warn: (m) => log.warn({ watcher: name }, m) },
        signal,
      });
      this.previous = res.state;
      this.runTimeNs = Number(process.hrtime.bigint() - start);
      this.host.announce();
      this.host.success(res.state === "downloaded" ? `deployed ${this.spec.source}` : undefined);
    } catch (err) {
      if (signal.aborted) return;
      const why = `managing archive ${this.spec.source} failed: ${(err as Error).message}`;
      this.previous = "error";
      this.runTimeNs = Number(process.hrtime.bigint() - start);
      log.error({ watcher: name }, why);
      this.host.announce();
      this.host.fail(why);
    } finally {
      this.busy = false;
    }
  }

  snapshot(): Record<string, unknown> {
    return {
      source: this.spec.source,
      creates: this.spec.creates,
      previous_outcome: this.previous,
      previous_run_time: this.runTimeNs,
    };
  }
}

export const archiveWatcher: WatcherFactory = (def, host, path) => new ArchiveWatcher(def, host, path);
