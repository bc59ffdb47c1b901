// Parses the CLI's filter flags typed as one line (`-F os=linux -C web -S 'expr'`) into
// the API's FilterSpec, so operators search with the language they already use.
import type { FilterSpec } from "../../src/apps/ui/api-types.js";
// the file, not core/util's index: the index pulls in Node-only helpers
import { shellSplit } from "../../src/core/util/words.js";

const FLAGS: Record<string, keyof FilterSpec | "with"> = {
  "-I": "identity",
  "--identity": "identity",
  "-F": "fact",
  "--fact": "fact",
  "--wf": "fact",
  "-C": "class",
  "--class": "class",
  "--wc": "class",
  "-A": "agent",
  "--agent": "agent",
  "--wa": "agent",
  "-S": "compound",
  "--select": "compound",
  "-W": "with",
  "--with": "with",
};

/**
 * The filter from a line of flags. A bare word (no flag) is an identity match, as the
 * quickest search is by name. `-W` splits like the CLI: words with an operator are facts,
 * the rest classes.
 */
export function parseFilterLine(line: string): FilterSpec {
  const words = shellSplit(line);
  const spec: Required<FilterSpec> = { identity: [], fact: [], class: [], agent: [], compound: [] };
  for (let i = 0; i < words.length; i++) {
    let w = words[i] as string;
    let value: string | undefined;
    const eq = w.startsWith("--") ? w.indexOf("=") : -1;
    if (eq > 0) {
      value = w.slice(eq + 1);
      w = w.slice(0, eq);
    }
    const kind = FLAGS[w];
    if (kind === undefined) {
      if (w.startsWith("-")) throw new Error(`unknown filter flag ${w} (use -I -F -C -A -W -S)`);
      spec.identity.push(w);
      continue;
    }
    if (value === undefined) {
      value = words[++i];
      if (value === undefined) throw new Error(`${w} needs a value`);
    }
    if (kind === "with") {
      for (const part of value.split(/\s+/).filter((p) => p !== "")) {
        if (/[=<>~]/.test(part)) spec.fact.push(part);
        else spec.class.push(part);
      }
    } else spec[kind].push(value);
  }
  const out: FilterSpec = {};
  for (const k of Object.keys(spec) as (keyof FilterSpec)[]) if (spec[k].length > 0) out[k] = spec[k];
  return out;
}

export function isEmptyFilter(f: FilterSpec): boolean {
  return Object.values(f).every((v) => !v || v.length === 0);
}
