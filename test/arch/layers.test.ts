import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, normalize, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

// docs/design/modules.md: the tiers, lowest first. A module may import only modules of
// an earlier group, and only through their index.ts (core/protocol/errors.ts is the
// shared error base). Modules in one group are peers and do not import each other.
const GROUPS: string[][] = [
  ["core/util"],
  ["core/protocol"],
  ["core/security"],
  ["core/config"],
  ["core/connector"],
  ["core/ddl"],
  ["core/filter"],
  // a certificate authority: keys, CSRs and revocation, used by setup and the provisioner
  ["core/ca"],
  // lifecycle events are the vocabulary other services speak (governors emit them)
  ["services/lifecycle"],
  ["services/streams", "services/registration", "services/submission"],
  // the workflow engine: reports through the submission spool, hosted by the job agent;
  // autonomous agents (machines and Scout), run by the server and the emulator
  ["services/jobs", "services/machines"],
  ["server", "client", "broker"],
  // daemon services that host agents on a server and call the fleet as a client
  [
    "services/aaa",
    "services/provisioner",
    "services/receiver",
    "services/federation",
    "services/replicator",
    // playbooks call the fleet as a client and lock and store data on Streams
    "services/playbooks",
  ],
  // doctor checks a host's setup: it reads configs and credentials and calls a broker
  ["apps/setup", "apps/codegen", "apps/doctor"],
  ["apps/emulator"],
  // the web console: a client of the fleet; the demo can start it
  ["apps/ui"],
  ["apps/demo"],
  ["apps/cli"],
];
const TIERED = new Set(["core", "services", "apps"]);
const SRC = fileURLToPath(new URL("../../src", import.meta.url));
const TEST = fileURLToPath(new URL("..", import.meta.url));

const rank = new Map<string, number>(GROUPS.flatMap((g, i) => g.map((m) => [m, i] as [string, number])));

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : p.endsWith(".ts") ? [p] : [];
  });
}

/** The module a src-relative path belongs to, and the path inside it. */
function moduleOf(parts: string[]): { mod: string; inner: string[] } {
  const n = TIERED.has(parts[0] as string) ? 2 : 1;
  return { mod: parts.slice(0, n).join("/"), inner: parts.slice(n) };
}

describe("module layering", () => {
  it("every src folder is in a documented tier and imports only earlier tiers through index.ts", () => {
    const problems: string[] = [];
    for (const file of files(SRC)) {
      const rel = relative(SRC, file).split(sep);
      if (rel.length < 2) continue; // src/index.ts, the library entry, may import anything
      const { mod, inner } = moduleOf(rel);
      if (inner.length === 0 || !rank.has(mod)) {
        problems.push(`${rel.join("/")}: ${mod} is not a module in docs/design/modules.md`);
        continue;
      }
      const text = readFileSync(file, "utf8");
      for (const m of text.matchAll(/(?:from|import\(?)\s*"(\.\.?\/[^"]+)"/g)) {
        const target = relative(SRC, normalize(join(dirname(file), m[1] as string))).split(sep);
        const t = moduleOf(target);
        if (t.inner.length === 0 || t.mod === mod) continue;
        const where = `${rel.join("/")} imports ${m[1]}`;
        const tr = rank.get(t.mod);
        if (tr === undefined) problems.push(`${where}: ${t.mod} is not a module`);
        else if (tr === rank.get(mod)) problems.push(`${where}: ${t.mod} is a peer`);
        else if (tr > (rank.get(mod) as number)) problems.push(`${where}: points upwards`);
        const entry = t.inner.join("/");
        if (entry !== "index.js" && !(t.mod === "core/protocol" && entry === "errors.js")) {
          problems.push(`${where}: bypasses ${t.mod}/index.ts`);
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it("test/ mirrors src/: every test folder names a src module (or is shared test infrastructure)", () => {
    // deploy/ holds unit files and the Dockerfile, not a src module
    const shared = new Set(["arch", "deploy", "e2e", "fixtures", "helpers", "lib"]);
    const problems: string[] = [];
    for (const file of files(TEST)) {
      const rel = relative(TEST, file).split(sep);
      if (rel.length < 2 || shared.has(rel[0] as string)) continue;
      const { mod } = moduleOf(rel);
      if (!rank.has(mod)) problems.push(`test/${rel.join("/")}: no src/${mod}`);
    }
    expect(problems).toEqual([]);
  });
});
