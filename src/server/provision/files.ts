import { readFileSync, statSync, unlinkSync } from "node:fs";
import { writeFileAtomicSync } from "../../core/util/index.js";
import { ProvisionError } from "./errors.js";

/** writeFileAtomicSync (core/util), creating the directory, with the provisioning error. */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o600): void {
  try {
    writeFileAtomicSync(path, data, { mode, mkdir: true });
  } catch (err) {
    throw new ProvisionError("io", `cannot write ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** Removes a file that may not exist. */
export function removeFile(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT")
      throw new ProvisionError("io", `cannot remove ${path}: ${(err as Error).message}`, { cause: err });
  }
}

const KEY = /^[A-Za-z0-9_.:-]+$/;

/**
 * Renders settings as a Choria config. Keys and values are checked here because a line
 * break in either would smuggle extra settings into the file.
 */
export function renderConfig(settings: Record<string, string>): string {
  const lines = ["# written by the Chorus provisioning agent", ""];
  for (const [k, v] of Object.entries(settings)) {
    if (!KEY.test(k))
      throw new ProvisionError("refused", `configuration key ${JSON.stringify(k)} is not valid`);
    if (/[\r\n\0]/.test(v))
      throw new ProvisionError("refused", `configuration value of ${k} holds a line break or NUL`);
    lines.push(`${k} = ${v.trim()}`);
  }
  return `${lines.join("\n")}\n`;
}

/**
 * Where the provisioning agent keeps a node's files (seed, tokens, config, TLS files),
 * by path: the disk for a real node, memory for emulated ones, so the agent's rules
 * exist once whatever holds the bytes.
 */
export interface ProvisionStore {
  /** The file's text, or undefined when it does not exist; throws ProvisionError "io" when unreadable. */
  read(path: string): string | undefined;
  /**
   * Replaces the file so a reader sees the old content or the new, never a mix. Without
   * `mode` an existing file keeps its own (a new one gets 0600).
   */
  write(path: string, data: string, mode?: number): void;
  /** Removes a file that may not exist. */
  remove(path: string): void;
}

/** The files themselves: atomic writes (writeFileAtomic), as `chorus server run` keeps them. */
export const diskStore: ProvisionStore = {
  read(path) {
    try {
      return readFileSync(path, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw new ProvisionError("io", `cannot read ${path}: ${(err as Error).message}`, { cause: err });
    }
  },
  write(path, data, mode) {
    let m = mode;
    if (m === undefined) {
      try {
        m = statSync(path).mode & 0o777;
      } catch {
        m = 0o600;
      }
    }
    writeFileAtomic(path, data, m);
  },
  remove: removeFile,
};

/**
 * Sets one key in an existing config file, leaving every other line as it was (comments
 * included): earlier lines for the key are dropped and the new one appended.
 */
export function setConfigKey(
  file: string,
  key: string,
  value: string,
  store: ProvisionStore = diskStore,
): void {
  const text = store.read(file);
  if (text === undefined) throw new ProvisionError("io", `cannot read ${file}: it does not exist`);
  const kept = text
    .split(/\r?\n/)
    .filter((line) => {
      const eq = line.indexOf("=");
      return eq < 0 || line.trim().startsWith("#") || line.slice(0, eq).trim() !== key;
    })
    .join("\n")
    .replace(/\n*$/, "\n");
  store.write(file, `${kept}${key} = ${value}\n`);
}
