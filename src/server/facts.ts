import { readFileSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { ServerError } from "./registry.js";

// The yaml package (~290 KB of code) is loaded only for a facts file that is not JSON.
const require = createRequire(import.meta.url);
const parseYaml = (text: string): unknown => (require("yaml") as typeof import("yaml")).parse(text);

/** JSON (what `chorus setup dev` and most fact tools write), else YAML, a superset of JSON. */
function parseFacts(text: string): unknown {
  try {
    // Duplicate keys: last wins, as go-choria's encoding/json (the YAML parser rejects them).
    return JSON.parse(text) as unknown;
  } catch {
    return parseYaml(text);
  }
}

function readOptional(path: string, what: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new ServerError("io", `cannot read ${what} ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Reads the plugin.yaml facts files (JSON or YAML) and merges them shallowly, later
 * files winning, as Choria does. Missing files are reported in `missing` rather than
 * failing: facts are often written by another tool after the server starts.
 */
export function loadFacts(files: string[]): { facts: Record<string, unknown>; missing: string[] } {
  const facts: Record<string, unknown> = {};
  const missing: string[] = [];
  for (const file of files) {
    const text = readOptional(file, "facts file");
    if (text === undefined) {
      missing.push(file);
      continue;
    }
    let doc: unknown;
    try {
      doc = parseFacts(text);
    } catch (err) {
      throw new ServerError(
        "facts",
        `facts file ${file} is not valid JSON or YAML: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    if (doc === null || doc === undefined) continue;
    if (typeof doc !== "object" || Array.isArray(doc))
      throw new ServerError("facts", `facts file ${file} must hold a map of facts`);
    Object.assign(facts, doc);
  }
  return { facts, missing };
}

function parseClasses(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== "");
}

/** Reads a classes file: one class per line, blanks ignored; a missing file means no classes. */
export function loadClasses(file: string | undefined): string[] {
  if (!file) return [];
  const text = readOptional(file, "classes file");
  if (text === undefined) return [];
  return parseClasses(text);
}

/**
 * A classes file read as go-choria reads it: whenever the classes are needed, so a
 * Puppet run that rewrites it is seen at once (re-read only when its stat changes).
 * An unreadable or missing file gives no classes and an `error`, so the node can
 * refuse class filters instead of answering as if it had none.
 */
export class ClassesSource {
  readonly file: string;
  #key = "";
  #classes: string[] = [];
  #error: string | undefined;

  constructor(file: string) {
    this.file = file;
  }

  read(): { classes: string[]; error?: string } {
    try {
      const st = statSync(this.file);
      const key = `${st.ino}:${st.size}:${st.mtimeMs}`;
      if (key !== this.#key || this.#error !== undefined) {
        this.#classes = parseClasses(readFileSync(this.file, "utf8"));
        this.#error = undefined;
        this.#key = key;
      }
    } catch (err) {
      this.#classes = [];
      this.#key = "";
      this.#error = `cannot read classes file ${this.file}: ${(err as Error).message}`;
    }
    return this.#error === undefined ? { classes: this.#classes } : { classes: [], error: this.#error };
  }
}
