import { readFileSync } from "node:fs";
import { extname } from "node:path";
import { parse as parseYaml } from "yaml";
import { matchIdentity } from "../../core/filter/index.js";
import type { Filter } from "../../core/protocol/index.js";
import { ClientError, naming, opt } from "../errors.js";
import { DISCOVER_NAMES, type DiscoveryNames } from "./names.js";
import { selectPath } from "./path.js";

export type FlatFormat = "text" | "json" | "yaml" | "jsonl";
export const FLAT_FORMATS: readonly FlatFormat[] = ["text", "json", "yaml", "jsonl"];

function fail(msg: string, cause?: unknown): never {
  throw new ClientError("discovery_failed", msg, cause === undefined ? undefined : { cause });
}

/** A file's text; `-` reads standard input (results piped from another command). */
export function readSource(path: string, what: string, stdin: () => string = readStdin): string {
  if (path === "-") return stdin();
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === "ENOENT" ? "no such file" : e.code === "EISDIR" ? "is a directory" : e.message;
    return fail(`${what}: cannot read ${path}: ${why}`, err);
  }
}

function readStdin(): string {
  if (process.stdin.isTTY)
    fail("no discovery data on standard input (pipe `chorus req --json` output in, or name a file)");
  return readFileSync(0, "utf8");
}

function sniff(path: string, text: string): FlatFormat {
  const ext = extname(path).toLowerCase();
  if (ext === ".json") return "json";
  if (ext === ".jsonl" || ext === ".ndjson") return "jsonl";
  if (ext === ".yaml" || ext === ".yml") return "yaml";
  const t = text.trimStart();
  if (t.startsWith("[")) return "json";
  if (t.startsWith("{")) {
    // One object per line is --jsonl output; a single document is JSON.
    const lines = t.split("\n").filter((l) => l.trim() !== "");
    return lines.length > 1 && lines.every((l) => l.trim().startsWith("{") && l.trim().endsWith("}"))
      ? "jsonl"
      : "json";
  }
  if (t.startsWith("---") || /^- /.test(t)) return "yaml";
  return "text";
}

const IDENTITY_RE = /^[^\s]+$/;

function checkedIdentity(v: unknown, where: string, source: string): string {
  if (typeof v !== "string" || !IDENTITY_RE.test(v)) {
    fail(`${source}: ${where}: ${JSON.stringify(v)} is not a node identity`);
  }
  return v;
}

/** Result status selection for earlier request results: `status=ok|failed|all` (default all). */
type StatusWanted = "ok" | "failed" | "all";

function fromReplies(replies: unknown[], status: StatusWanted, source: string): string[] {
  return replies
    .map((r, i) => {
      const o = r as { sender?: unknown; statuscode?: unknown };
      if (o === null || typeof o !== "object") fail(`${source}: replies[${i}] is not an object`);
      return { sender: checkedIdentity(o.sender, `replies[${i}].sender`, source), code: o.statuscode };
    })
    .filter((r) => status === "all" || (status === "ok") === (r.code === 0 || r.code === undefined))
    .map((r) => r.sender);
}

/** Identities out of a decoded document: a list, a `chorus req --json` result, `{nodes: [...]}` or a map. */
function fromDocument(doc: unknown, status: StatusWanted, source: string): string[] {
  if (Array.isArray(doc)) {
    if (doc.every((d) => typeof d === "string"))
      return doc.map((d, i) => checkedIdentity(d, `item ${i}`, source));
    // A list of records: replies (sender), inventory nodes (name) or identity objects.
    if (doc.some((d) => d !== null && typeof d === "object" && "sender" in d))
      return fromReplies(doc, status, source);
    return doc.map((d, i) => {
      const o = (d ?? {}) as Record<string, unknown>;
      return checkedIdentity(o.name ?? o.identity ?? d, `item ${i}`, source);
    });
  }
  if (doc !== null && typeof doc === "object") {
    const o = doc as Record<string, unknown>;
    if (Array.isArray(o.replies)) return fromReplies(o.replies, status, source);
    if (Array.isArray(o.nodes)) return fromDocument(o.nodes, status, source);
    return Object.keys(o).map((k) => checkedIdentity(k, "key", source));
  }
  if (doc === null || doc === undefined) return [];
  return fail(`${source}: expected a list of identities, found ${typeof doc}`);
}

export interface FlatfileOptions {
  /** file path, `-` for standard input */
  file: string;
  format?: string;
  /** gjson-like path to the list inside a JSON/YAML document */
  filter?: string;
  status?: string;
  stdin?: () => string;
}

/**
 * Flatfile discovery: identities from text (one a line, `#` comments), JSON, YAML,
 * JSON lines, or earlier `chorus req --json/--jsonl` results. Duplicates are removed,
 * order kept.
 */
export function readFlatfile(o: FlatfileOptions): string[] {
  const source = o.file === "-" ? "standard input" : o.file;
  const text = readSource(o.file, "flatfile discovery", o.stdin);
  if (o.format !== undefined && !(FLAT_FORMATS as readonly string[]).includes(o.format)) {
    fail(`flatfile discovery: unknown format "${o.format}" (use ${FLAT_FORMATS.join(", ")})`);
  }
  const status = (o.status ?? "all") as StatusWanted;
  if (!["ok", "failed", "all"].includes(status)) fail(`unknown status "${o.status}" (use ok, failed or all)`);
  const format = (o.format as FlatFormat | undefined) ?? sniff(o.file, text);
  let ids: string[];
  if (format === "text") {
    if (o.filter !== undefined) fail("flatfile discovery: filter= applies to JSON and YAML files only");
    ids = [];
    text.split("\n").forEach((line, i) => {
      const l = line.trim();
      if (l !== "" && !l.startsWith("#")) ids.push(checkedIdentity(l, `line ${i + 1}`, source));
    });
  } else if (format === "jsonl") {
    const docs = text
      .split("\n")
      .map((l, i) => ({ l: l.trim(), i }))
      .filter(({ l }) => l !== "")
      .map(({ l, i }) => {
        try {
          return JSON.parse(l) as unknown;
        } catch (err) {
          return fail(`${source}: line ${i + 1} is not JSON: ${(err as Error).message}`, err);
        }
      });
    ids = fromDocument(o.filter ? docs.map((d) => selectPath(d, o.filter as string)) : docs, status, source);
  } else {
    let doc: unknown;
    try {
      doc = format === "json" ? JSON.parse(text) : parseYaml(text);
    } catch (err) {
      fail(`${source} is not valid ${format.toUpperCase()}: ${(err as Error).message.split("\n")[0]}`, err);
    }
    if (o.filter !== undefined) {
      doc = selectPath(doc, o.filter);
      if (doc === undefined) fail(`${source}: filter "${o.filter}" selects nothing`);
    }
    ids = fromDocument(doc, status, source);
  }
  return [...new Set(ids)];
}

/** File based methods only know identities: other filter types would be silently ignored, so refuse them. */
export function applyIdentityFilter(
  ids: string[],
  filter: Filter,
  method: string,
  names: DiscoveryNames = DISCOVER_NAMES,
): string[] {
  if (filter.fact.length || filter.cf_class.length || filter.agent.length || filter.compound.length) {
    throw new ClientError(
      "discovery_failed",
      naming`${method} discovery only knows identities: use ${opt("filter.identity")}, or an inventory file (${opt(names.method)} inventory) to filter on facts, classes, agents or ${opt("filter.compound")}`,
      { option: "filter" },
    );
  }
  return filter.identity.length ? ids.filter((id) => matchIdentity(filter.identity, id)) : ids;
}
