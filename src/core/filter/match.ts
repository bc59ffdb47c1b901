import { isEmptyFilter, type Filter } from "../protocol/index.js";
import { matchCompound } from "./compound.js";
import { matchFact } from "./facts.js";
import { compileRegex, isSlashRegex } from "./regex.js";

/** What a node knows about itself for filtering. */
export interface NodeInfo {
  identity: string;
  facts: Record<string, unknown>;
  classes: string[];
  agents: string[];
  /**
   * Answers a data plugin for compound filters (`fstat("/etc/hosts").size > 0`): the
   * plugin's output for the query. May throw; absent or throwing, the expression fails.
   */
  data?: (source: string, query: string) => Record<string, unknown>;
}

function matchesOne(needle: string, candidate: string): boolean {
  if (isSlashRegex(needle)) {
    const re = compileRegex(needle.slice(1, -1));
    return re !== null && re.test(candidate);
  }
  return needle === candidate;
}

/** Identity filters are ORed: a node has one identity. */
export function matchIdentity(needles: readonly string[], identity: string): boolean {
  return needles.some((n) => matchesOne(n, identity));
}

/** Every needle must match at least one entry (used for classes and agents). */
function matchAll(needles: readonly string[], have: readonly string[]): boolean {
  return needles.every((n) => have.some((h) => matchesOne(n, h)));
}

/**
 * Classes compare case-insensitively, plain names and regexes alike: go-choria adds
 * `(?i)` to class regexes and lowercases plain needles.
 */
export function matchClasses(needles: readonly string[], classes: readonly string[]): boolean {
  return needles.every((n) => {
    if (isSlashRegex(n)) {
      const re = compileRegex(n.slice(1, -1), "i");
      return re !== null && classes.some((c) => re.test(c));
    }
    const ln = n.toLowerCase();
    return classes.some((c) => c.toLowerCase() === ln);
  });
}

export function matchAgents(needles: readonly string[], agents: readonly string[]): boolean {
  return matchAll(needles, agents);
}

/**
 * go-choria's server-side filter: an empty filter matches every node; otherwise each
 * present filter type must pass (types ANDed), identities are ORed, classes, agents
 * and facts are each ANDed, and every compound (`-S`) expression must hold. An
 * expression that does not parse throws, so a node never answers a request it
 * cannot judge.
 */
export function matchFilter(filter: Filter | undefined, node: NodeInfo): boolean {
  if (filter === undefined || isEmptyFilter(filter)) return true;
  if (filter.identity?.length && !matchIdentity(filter.identity, node.identity)) return false;
  if (filter.agent?.length && !matchAgents(filter.agent, node.agents)) return false;
  if (filter.cf_class?.length && !matchClasses(filter.cf_class, node.classes)) return false;
  if (filter.fact?.length) {
    for (const f of filter.fact) if (!matchFact(f, node.facts)) return false;
  }
  if (filter.compound?.length && !matchCompound(filter.compound, node)) return false;
  return true;
}
