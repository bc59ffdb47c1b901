/**
 * Signed machine specifications (go-choria's plugins watcher `Specification`): which
 * machines a fleet should run, kept in Choria Streams KV and signed with ed25519 so a
 * node installs only what the holder of the signing key published.
 *
 *   { "plugins": base64(JSON [ManagedPlugin...]), "signature": hex(ed25519) }
 *
 * As in go-choria's `choria machine plugins pack`, the signature covers the `plugins`
 * text as it appears (the base64 string). Specs signed over the decoded bytes (go-choria's
 * older machines watcher, whose field is `machines`) verify too.
 */
import { accessSync, constants, statSync } from "node:fs";
import { delimiter, join } from "node:path";
import { compileExpression, compileRegex, lookupFact, type ExprEnv } from "../../core/filter/index.js";
import { ed25519 } from "../../core/security/index.js";
import { MachineError } from "./errors.js";

/** One machine to deploy (go-choria ManagedPlugin; JSON field names as there). */
export interface ManagedMachine {
  /** the machine's name and the directory its archive creates */
  name: string;
  /** URL of the tar.gz */
  source: string;
  /** sha256 (hex) of the tar.gz */
  checksum: string;
  /** sha256 (hex) of the checksums file inside the archive */
  verify_checksum: string;
  /** the checksums file inside the archive (default SHA256SUMS) */
  verify?: string;
  username?: string;
  password?: string;
  /** an expression over identity(), has_file(), has_directory(), has_command(), get_fact() */
  match?: string;
  governor?: string;
}

/** Specs larger than this are refused before parsing. */
export const MAX_SPEC_BYTES = 1024 * 1024;

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$/;
const SHA256_RE = /^[a-fA-F0-9]{64}$/;
const HEX_RE = /^(?:[a-fA-F0-9]{2})+$/;

function bad(why: string, cause?: unknown): MachineError {
  return new MachineError("bad_spec", `machine spec: ${why}`, cause === undefined ? undefined : { cause });
}

function optString(o: Record<string, unknown>, key: string, at: string): string | undefined {
  const v = o[key];
  if (v === undefined || v === null || v === "") return undefined;
  if (typeof v !== "string") throw bad(`${at}.${key}: must be a string`);
  return v;
}

/** Checks the decoded entries: the fields go-choria requires, and names safe as directories. */
export function checkManagedMachines(list: unknown): ManagedMachine[] {
  if (!Array.isArray(list)) throw bad("plugins must be a JSON list of machines");
  const seen = new Set<string>();
  return list.map((raw, i) => {
    const at = `plugins[${i}]`;
    if (raw === null || typeof raw !== "object" || Array.isArray(raw)) throw bad(`${at}: must be an object`);
    const o = raw as Record<string, unknown>;
    const name = optString(o, "name", at);
    if (!name) throw bad(`${at}.name: is required`);
    if (!NAME_RE.test(name))
      throw bad(`${at}.name: "${name}" must be letters, digits, _ and - (it names a directory)`);
    if (seen.has(name)) throw bad(`${at}.name: "${name}" appears twice`);
    seen.add(name);
    const source = optString(o, "source", at);
    if (!source) throw bad(`${at}.source: is required`);
    if (!/^(https?|file):\/\//i.test(source)) throw bad(`${at}.source: must be an http, https or file URL`);
    const checksum = optString(o, "checksum", at);
    if (!checksum || !SHA256_RE.test(checksum)) throw bad(`${at}.checksum: a sha256 hex string is required`);
    const verifyChecksum = optString(o, "verify_checksum", at);
    if (!verifyChecksum || !SHA256_RE.test(verifyChecksum)) {
      throw bad(`${at}.verify_checksum: a sha256 hex string is required`);
    }
    const verify = optString(o, "verify", at);
    if (verify !== undefined && (verify.includes("..") || verify.startsWith("/"))) {
      throw bad(`${at}.verify: must be a file inside the archive`);
    }
    const m: ManagedMachine = { name, source, checksum, verify_checksum: verifyChecksum };
    if (verify) m.verify = verify;
    for (const k of ["username", "password", "match", "governor"] as const) {
      const v = optString(o, k, at);
      if (v !== undefined) m[k] = v;
    }
    if (m.username && !m.password) throw bad(`${at}.password: is required when username is given`);
    if (m.match) {
      try {
        compileMatch(m.match);
      } catch (err) {
        throw bad(`${at}.match: ${(err as Error).message}`, err);
      }
    }
    return m;
  });
}

/** A 32-byte seed from hex (a 64-byte ed25519 private key, seed then public key, also works) or bytes. */
function seedBytes(seed: string | Uint8Array): Uint8Array {
  let b: Uint8Array;
  if (typeof seed === "string") {
    const s = seed.trim();
    if (!HEX_RE.test(s)) throw new MachineError("bad_spec", "signing key: must be hex");
    b = Buffer.from(s, "hex");
  } else b = seed;
  if (b.length === 64) return b.subarray(0, 32);
  if (b.length !== 32) throw new MachineError("bad_spec", "signing key: must be a 32-byte ed25519 seed");
  return b;
}

/** Encodes and signs entries; returns the spec's JSON text (what `choria machine plugins pack` writes). */
export function signMachineSpec(entries: ManagedMachine[], seed: string | Uint8Array): string {
  checkManagedMachines(entries);
  const plugins = Buffer.from(JSON.stringify(entries)).toString("base64");
  const { key } = ed25519.fromSeed(seedBytes(seed));
  const signature = ed25519.sign(key, Buffer.from(plugins)).toString("hex");
  const text = JSON.stringify({ plugins, signature });
  if (text.length > MAX_SPEC_BYTES) throw bad(`larger than ${MAX_SPEC_BYTES} bytes`);
  return text;
}

/** The hex public key of a signing seed, for `public_key`. */
export function machineSpecPublicKey(seed: string | Uint8Array): string {
  return ed25519.fromSeed(seedBytes(seed)).publicRaw.toString("hex");
}

/**
 * Parses a spec and returns its entries when the signature verifies with one of
 * `publicKeys` (hex ed25519). Unsigned, forged, foreign-signed, malformed or oversized
 * specs throw MachineError("bad_spec") saying which; there is no unsigned mode.
 */
export function verifyMachineSpec(json: string | Uint8Array, publicKeys: string[]): ManagedMachine[] {
  const size = typeof json === "string" ? Buffer.byteLength(json) : json.length;
  if (size > MAX_SPEC_BYTES) throw bad(`${size} bytes is larger than the ${MAX_SPEC_BYTES} allowed`);
  let doc: unknown;
  try {
    doc = JSON.parse(typeof json === "string" ? json : Buffer.from(json).toString("utf8"));
  } catch (err) {
    throw bad("not JSON", err);
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) throw bad("must be a JSON object");
  const o = doc as Record<string, unknown>;
  const field = o.plugins !== undefined ? "plugins" : "machines";
  const text = o[field];
  if (typeof text !== "string" || text === "") throw bad("plugins is missing");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) throw bad(`${field} is not base64`);
  const payload = Buffer.from(text, "base64");

  const sigHex = o.signature;
  if (sigHex === undefined || sigHex === null || sigHex === "") throw bad("it is not signed");
  if (typeof sigHex !== "string" || !HEX_RE.test(sigHex) || sigHex.length !== 128) {
    throw bad("the signature is not a hex ed25519 signature");
  }
  const keys = publicKeys.map((k) => k.trim()).filter((k) => k !== "");
  if (keys.length === 0) throw bad("no public key is configured to verify it");
  const sig = Buffer.from(sigHex, "hex");
  const ok = keys.some((k) => {
    if (!HEX_RE.test(k) || k.length !== 64) return false;
    const vk = ed25519.verifyingKey(Buffer.from(k, "hex"));
    if (!vk) return false;
    return ed25519.verify(vk, Buffer.from(text), sig) || ed25519.verify(vk, payload, sig);
  });
  if (!ok) throw bad("the signature does not verify with the configured public key");

  let list: unknown;
  try {
    list = JSON.parse(payload.toString("utf8"));
  } catch (err) {
    throw bad(`${field} is not a JSON list`, err);
  }
  return checkManagedMachines(list);
}

// ---- matchers -----------------------------------------------------------------

/** What a `match` expression is evaluated against. */
export interface MatchNode {
  identity: string;
  facts: Record<string, unknown>;
}

function isFile(p: unknown): boolean {
  try {
    return typeof p === "string" && statSync(p).isFile();
  } catch {
    return false;
  }
}

function isDir(p: unknown): boolean {
  try {
    return typeof p === "string" && statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function hasCommand(cmd: unknown): boolean {
  if (typeof cmd !== "string" || cmd === "") return false;
  const dirs = cmd.includes("/") ? [""] : (process.env.PATH ?? "").split(delimiter).filter((d) => d !== "");
  return dirs.some((d) => {
    const p = d === "" ? cmd : join(d, cmd);
    try {
      accessSync(p, constants.X_OK);
      return statSync(p).isFile();
    } catch {
      return false;
    }
  });
}

const str = (v: unknown) => (typeof v === "string" ? undefined : "expects a string");
const maybeStr = (v: unknown) =>
  v === undefined || typeof v === "string" || typeof v === "symbol" ? undefined : "expects a string";

const MATCH_ENV: ExprEnv<MatchNode> = {
  what: "machine match",
  vars: {},
  funcs: {
    identity: {
      min: 1,
      max: 1,
      call: (n, [re]) => typeof re === "string" && (compileRegex(re)?.test(n.identity) ?? false),
      check: ([re]) => maybeStr(re),
    },
    has_file: { min: 1, max: 1, call: (_, [p]) => isFile(p), check: ([p]) => maybeStr(p) },
    has_directory: { min: 1, max: 1, call: (_, [p]) => isDir(p), check: ([p]) => maybeStr(p) },
    has_command: { min: 1, max: 1, call: (_, [c]) => hasCommand(c), check: ([c]) => maybeStr(c) },
    get_fact: {
      min: 1,
      max: 1,
      call: (n, [q]) => (typeof q === "string" ? lookupFact(n.facts, q) : undefined),
      check: ([q]) => (typeof q === "symbol" ? undefined : str(q)),
    },
  },
};

/** Compiles a `match` expression (throws ExpressionError on bad syntax or unknown functions). */
export function compileMatch(expr: string): (n: MatchNode) => boolean {
  return compileExpression(expr, MATCH_ENV);
}

/** Whether a machine's `match` selects this node; an empty match selects every node. */
export function machineMatches(m: Pick<ManagedMachine, "match">, node: MatchNode): boolean {
  if (!m.match || m.match.trim() === "") return true;
  return compileMatch(m.match)(node);
}
