import { randomBytes } from "node:crypto";
import {
  chmodSync,
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";

export interface AtomicWriteOptions {
  /** file mode, applied whatever the umask (default 0600) */
  mode?: number;
  /** fsync the file and its directory (default true); off only for throwaway dirs */
  sync?: boolean;
  /** create the directory (0700) when missing (default false) */
  mkdir?: boolean;
  /** name of the temporary file beside the target (default `.<name>.<random>.tmp`) */
  tmpName?: string;
}

/**
 * Writes a file so readers see the old content or the new, never a mix: a temporary
 * file in the same directory, fsync, rename, then fsync of the directory so the rename
 * survives a power cut. Throws the file system's own error; callers wrap it in theirs.
 */
export function writeFileAtomicSync(
  path: string,
  data: string | Uint8Array,
  o: AtomicWriteOptions = {},
): void {
  const dir = dirname(path);
  const mode = o.mode ?? 0o600;
  const sync = o.sync ?? true;
  const tmp = join(dir, o.tmpName ?? `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
  try {
    if (o.mkdir) mkdirSync(dir, { recursive: true, mode: 0o700 });
    const fd = openSync(tmp, "wx", mode);
    try {
      const buf = typeof data === "string" ? Buffer.from(data, "utf8") : data;
      let off = 0;
      while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
      if (sync) fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    // the umask may have narrowed the mode; never let it widen it either
    chmodSync(tmp, mode);
    renameSync(tmp, path);
    if (sync) syncDir(dir);
  } catch (err) {
    try {
      rmSync(tmp, { force: true });
    } catch {
      // never made (no directory): the original error says why
    }
    throw err;
  }
}

function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, "r");
    fsyncSync(fd);
  } catch {
    // some file systems cannot fsync a directory; the rename itself is still atomic
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * A bearer token from a file: one word, at least `minLength` characters, surrounding
 * whitespace ignored. Throws an Error saying what is wrong with the file; callers add
 * the setting that named it.
 */
export function readTokenFile(path: string, minLength = 1): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8").trim();
  } catch (err) {
    throw new Error(`cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (text === "") throw new Error(`${path} is empty`);
  if (/\s/.test(text)) throw new Error(`${path} must hold one token, not several words`);
  if (text.length < minLength)
    throw new Error(`${path} must hold a token of at least ${minLength} characters`);
  return text;
}
