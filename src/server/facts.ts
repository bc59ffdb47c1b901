import { readFileSync } from "node:fs";
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

/** Reads a classes file: one class per line, blanks ignored; a missing file means no classes. */
export function loadClasses(file: string | undefined): string[] {
  if (!file) return [];
  const text = readOptional(file, "classes file");
  if (text === undefined) return [];
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== "");
}
