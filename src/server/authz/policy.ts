import { readFileSync } from "node:fs";
import {
  compileRegex,
  isSlashRegex,
  matchClasses,
  matchFact,
  parseFactFilter,
} from "../../core/filter/index.js";
import { ChorusError, type FactFilter } from "../../core/protocol/index.js";

/** A policy file that cannot be used; `line` is 1-based (0 when the whole file is at fault). */
export class PolicyError extends ChorusError {
  constructor(
    readonly file: string,
    readonly line: number,
    message: string,
  ) {
    super("bad_policy", line > 0 ? `${file}:${line}: ${message}` : `${file}: ${message}`);
  }
}

/** One `allow|deny` rule of an action_policy file. */
export interface PolicyRule {
  allow: boolean;
  line: number;
  /** undefined = `*` */
  callers?: string[];
  actions?: string[];
  facts?: FactFilter[];
  classes?: string[];
}

export interface Policy {
  file: string;
  /** `policy default allow|deny`; deny when the file does not say. */
  defaultAllow: boolean;
  rules: PolicyRule[];
}

/** What the request looks like to a policy. */
export interface PolicySubject {
  caller: string;
  action: string;
  facts: Record<string, unknown>;
  classes: readonly string[];
}

export interface PolicyDecision {
  allowed: boolean;
  /** Which rule (or default) decided, for the log. */
  reason: string;
}

const SKIP = /^\s*(#.*)?$/;
const DEFAULT_RE = /^policy\s+default\s+(\S+)\s*$/;

const words = (s: string): string[] => s.split(/\s+/).filter((w) => w !== "");

/**
 * Parses a Choria action_policy file. Rules are TAB separated:
 * `allow|deny <TAB> callers <TAB> actions <TAB> facts [<TAB> classes]`, each field a
 * space separated list or `*`. The whole file is checked up front so that a bad line
 * anywhere is reported, instead of being found only by the request that reaches it.
 */
export function parsePolicy(text: string, file: string): Policy {
  const policy: Policy = { file, defaultAllow: false, rules: [] };
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i] as string;
    const n = i + 1;
    if (SKIP.test(raw)) continue;
    const line = raw.replace(/\s+$/, "");
    const dm = DEFAULT_RE.exec(line);
    if (dm) {
      const v = dm[1] as string;
      if (v !== "allow" && v !== "deny")
        throw new PolicyError(file, n, `policy default must be allow or deny, not "${v}"`);
      policy.defaultAllow = v === "allow";
      continue;
    }
    const fields = line.split(/\t+/);
    const verb = fields[0] as string;
    if (/^(allow|deny) /.test(verb)) {
      throw new PolicyError(file, n, "rule fields must be separated by TAB characters, not spaces");
    }
    if (verb !== "allow" && verb !== "deny") {
      throw new PolicyError(
        file,
        n,
        `expected "policy default allow|deny" or a TAB separated allow|deny rule, got ${JSON.stringify(line.slice(0, 80))}`,
      );
    }
    if (fields.length < 4 || fields.length > 5) {
      throw new PolicyError(
        file,
        n,
        `a rule has 4 or 5 TAB separated fields (allow|deny, callers, actions, facts, classes), found ${fields.length}`,
      );
    }
    const [, callers, actions, facts, classes] = fields as [string, string, string, string, string?];
    const rule: PolicyRule = { allow: verb === "allow", line: n };
    if (callers.trim() !== "*") rule.callers = words(callers);
    if (actions.trim() !== "*") rule.actions = words(actions);
    if (facts.trim() !== "*") {
      rule.facts = words(facts).map((f) => {
        try {
          return parseFactFilter(f);
        } catch (err) {
          throw new PolicyError(file, n, (err as Error).message);
        }
      });
    }
    if (classes !== undefined && classes.trim() !== "*") rule.classes = words(classes);
    policy.rules.push(rule);
  }
  return policy;
}

/** Reads `policies/groups`: `name member member...` per line; a missing file means no groups. */
export function parseGroups(text: string, _file: string): Map<string, string[]> {
  const groups = new Map<string, string[]>();
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i] as string;
    if (SKIP.test(raw)) continue;
    const [name, ...members] = words(raw);
    // A name with no members is skipped, as go-choria does, not a reason to reject the file.
    if (!name || members.length === 0) continue;
    groups.set(name, members);
  }
  return groups;
}

export function readGroups(file: string): Map<string, string[]> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return new Map();
    throw new PolicyError(file, 0, `cannot read: ${(err as Error).message}`);
  }
  return parseGroups(text, file);
}

/**
 * A `/regex/` caller or group member, run on the linear-time engine. One that does
 * not compile (or is too large) matches nobody, as in Choria.
 */
function regexMatches(s: string, caller: string): boolean {
  // An empty regex (`//`) is invalid and matches nobody.
  return isSlashRegex(s) && s.length > 2 && compileRegex(s.slice(1, -1))?.test(caller) === true;
}

function callerMatches(rule: PolicyRule, caller: string, groups: Map<string, string[]>): boolean {
  if (!rule.callers) return true;
  for (const c of rule.callers) {
    if (c === caller || regexMatches(c, caller)) return true;
    const members = groups.get(c);
    if (members?.some((m) => m === caller || regexMatches(m, caller))) return true;
  }
  return false;
}

function ruleMatches(rule: PolicyRule, s: PolicySubject, groups: Map<string, string[]>): boolean {
  if (!callerMatches(rule, s.caller, groups)) return false;
  if (rule.actions && !rule.actions.includes(s.action)) return false;
  if (rule.facts && !rule.facts.every((f) => matchFact(f, s.facts))) return false;
  if (rule.classes && !matchClasses(rule.classes, s.classes)) return false;
  return true;
}

/** First matching rule wins; otherwise the policy default. */
export function evaluatePolicy(
  policy: Policy,
  s: PolicySubject,
  groups: Map<string, string[]> = new Map(),
): PolicyDecision {
  for (const rule of policy.rules) {
    if (ruleMatches(rule, s, groups)) {
      return {
        allowed: rule.allow,
        reason: `${rule.allow ? "allowed" : "denied"} by ${policy.file}:${rule.line}`,
      };
    }
  }
  return {
    allowed: policy.defaultAllow,
    reason: `no rule matched, ${policy.file} default is ${policy.defaultAllow ? "allow" : "deny"}`,
  };
}
