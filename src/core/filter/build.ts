import { emptyFilter, type Filter } from "../protocol/index.js";
import { FilterError } from "./errors.js";
import { parseCompoundFilter } from "./compound.js";
import { parseFactFilter, parseFactWord } from "./facts.js";
import { isSlashRegex, regexProblem } from "./regex.js";

function checked(kind: string, input: string): string {
  const v = input.trim();
  if (v === "") throw new FilterError("bad_filter", `empty ${kind} filter`);
  if (isSlashRegex(v)) {
    // the same engine the nodes use: what is refused here would match nothing there
    const why = regexProblem(v.slice(1, -1));
    if (why !== undefined) {
      throw new FilterError(
        "bad_filter",
        `invalid regular expression in ${kind} filter ${JSON.stringify(input)}: ${why}`,
      );
    }
  }
  return v;
}

/** `-I`: an identity or `/regex/`. */
export function parseIdentityFilter(input: string): string {
  return checked("identity", input);
}

/** go-choria's test for a compound statement (its action policy's IsCompound), on each word. */
const COMPOUND_WORD = /^(?:and|or|not)$|^!|\(.+\)/i;

/**
 * `-C`: a class name or `/regex/`. A compound statement (`a and not b`) is refused:
 * go-choria sends it as one class name that no node has, so it silently matches nothing.
 */
export function parseClassFilter(input: string): string {
  const v = checked("class", input);
  if (!isSlashRegex(v) && v.split(/\s+/).some((w) => COMPOUND_WORD.test(w))) {
    throw new FilterError(
      "unsupported_compound",
      `compound statements are not supported in class filters: use a compound filter (${JSON.stringify(input)})`,
    );
  }
  return v;
}

/** `-A`: an agent name or `/regex/`. */
export function parseAgentFilter(input: string): string {
  return checked("agent", input);
}

/**
 * `-W`: space separated words, each a fact filter when it parses as one and a class
 * filter otherwise (go-choria's CombinedFilter).
 */
export function parseCombinedFilter(input: string, into: Filter = emptyFilter()): Filter {
  for (const word of input.split(" ")) {
    if (word === "") continue;
    // a word that reads as a fact filter with a bad regex is an error, not a class
    const fact = parseFactWord(word);
    if (fact) into.fact.push(fact);
    else addUnique(into.cf_class, parseClassFilter(word));
  }
  return into;
}

function addUnique(list: string[], v: string): void {
  if (!list.includes(v)) list.push(v);
}

/** Builds a Filter from CLI style strings, de-duplicating as go-choria's Filter.Add* do. */
export function buildFilter(opts: {
  identity?: string[];
  classes?: string[];
  agents?: string[];
  facts?: string[];
  combined?: string[];
  /** `-S` expressions; each is parsed here so a bad one fails before anything is sent */
  compound?: string[];
}): Filter {
  const f = emptyFilter();
  // go-choria's Filter.Add* skip empty entries rather than failing
  const given = (l: string[] | undefined): string[] => (l ?? []).filter((v) => v.trim() !== "");
  for (const i of given(opts.identity)) addUnique(f.identity, parseIdentityFilter(i));
  for (const c of given(opts.classes)) addUnique(f.cf_class, parseClassFilter(c));
  for (const a of given(opts.agents)) addUnique(f.agent, parseAgentFilter(a));
  for (const x of given(opts.facts)) f.fact.push(parseFactFilter(x));
  for (const w of opts.combined ?? []) parseCombinedFilter(w, f);
  // One group per -S, as go-choria's AddCompoundFilter does; all must hold.
  for (const e of given(opts.compound)) f.compound.push([{ expr: parseCompoundFilter(e) }]);
  return f;
}
