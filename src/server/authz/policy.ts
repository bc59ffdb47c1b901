import { readFileSync } from "node:fs";
import {
  compileCompound,
  compileRegex,
  isSlashRegex,
  matchClasses,
  matchFact,
  parseFactFilter,
  regexProblem,
  type NodeInfo,
} from "../../core/filter/index.js";
import { ChorusError, type FactFilter } from "../../core/protocol/index.js";

/**
 * A policy or groups file that cannot be used at all (unreadable); `line` is 1-based
 * (0 when the whole file is at fault). Bad lines are warnings, not errors.
 */
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
  /** undefined = `*` (or, on a deny rule, a field Chorus could not read) */
  callers?: string[];
  actions?: string[];
  facts?: FactFilter[];
  classes?: string[];
  /** Compound statements from the facts or classes field; every one must hold. */
  compound?: ((n: NodeInfo) => boolean)[];
}

/** A line Chorus could not use as written, and what it did with it. */
export interface PolicyWarning {
  line: number;
  message: string;
  /**
   * skipped: the line is ignored. deny-widened: a deny line whose unreadable parts
   * match every request. kept: the line is used, the named matcher matches nobody.
   * default-deny: a `policy default` with a value other than allow.
   */
  outcome: "skipped" | "deny-widened" | "kept" | "default-deny";
}

export interface Policy {
  file: string;
  /** `policy default allow|deny`; see `defaultStated`. */
  defaultAllow: boolean;
  /** false when the file has no `policy default` line (go-choria then uses allow_unconfigured). */
  defaultStated: boolean;
  rules: PolicyRule[];
  warnings: PolicyWarning[];
}

/** What the request looks like to a policy. */
export interface PolicySubject {
  caller: string;
  action: string;
  facts: Record<string, unknown>;
  classes: readonly string[];
  /**
   * Why the node's classes cannot be known (its classes file is configured but cannot
   * be read). A classes field, or a compound statement that reads classes, then cannot
   * be evaluated: an allow line grants nothing, a deny line matches.
   */
  classesUnknown?: string;
  /** For compound statements that name `identity` or `agents` (read only when one does). */
  node?: { readonly identity: string; readonly agents: readonly string[] };
}

export interface PolicyDecision {
  allowed: boolean;
  /** Which rule (or default) decided, for the log. */
  reason: string;
}

/** The raw fields of a rule, as go-choria's policy matcher takes them; any may be "". */
export interface PolicyFields {
  allow: boolean;
  caller: string;
  actions: string;
  facts: string;
  classes: string;
}

const SKIP = /^\s*(#.*)?$/;
// As go-choria: the first word after "default" decides, anything but allow is deny.
const DEFAULT_RE = /^policy\s+default\s+(\w+)/;
// go-choria's and MCollective's test for a compound statement, applied per word.
const COMPOUND_WORD = /^!|^not$|^or$|^and$|\(.+\)/;
// go-choria refuses a class that looks like a fact ("fact found where class was expected").
const FACT_LIKE = /(.+)(<|>|=|<=|>=)(.+)/;

const words = (s: string): string[] => s.split(/\s+/).filter((w) => w !== "");

export function isCompoundStatement(field: string): boolean {
  return words(field).some((w) => COMPOUND_WORD.test(w));
}

function checkedFact(word: string): FactFilter {
  const f = parseFactFilter(word);
  if (f.operator === "=~" && isSlashRegex(f.value)) {
    const why = regexProblem(f.value.slice(1, -1));
    if (why !== undefined) throw new Error(`bad regular expression in ${JSON.stringify(word)}: ${why}`);
  }
  return f;
}

/**
 * MCollective's statement form (`(os=linux or os=windows) and !web`) rewritten into
 * the `-S` language: each statement becomes `with("...")`, which reads a fact filter
 * or a class exactly as MCollective's policy did. Data functions (`fstat(...)`) are
 * not available to policies, so they make the statement unreadable.
 */
function statementsToExpression(text: string): string {
  const out: string[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i] as string;
    if (/\s/.test(c)) {
      i++;
    } else if (c === "(" || c === ")") {
      out.push(c);
      i++;
    } else if (c === "!" && text[i + 1] !== "=") {
      out.push("not");
      i++;
    } else {
      let word = "";
      let inRegex = false;
      while (i < text.length) {
        const d = text[i] as string;
        if (inRegex) {
          word += d;
          if (d === "\\" && i + 1 < text.length) word += text[++i] as string;
          else if (d === "/") inRegex = false;
          i++;
          continue;
        }
        if (/\s/.test(d) || d === "(" || d === ")") break;
        // a "/" opens a regex at the start of a word or right after an operator
        if (d === "/" && (word === "" || /[=~<>!]$/.test(word))) inRegex = true;
        word += d;
        i++;
      }
      if (inRegex) throw new Error(`unterminated regular expression in ${JSON.stringify(word)}`);
      if (text[i] === "(") throw new Error(`data functions are not available in policies: ${word}(...)`);
      if (word === "and" || word === "or" || word === "not") {
        out.push(word);
      } else {
        try {
          checkedFact(word);
        } catch (err) {
          // with() would read a broken fact filter as a class name and never match it
          if (/[<>=~]/.test(word)) throw err;
        }
        out.push(`with(${JSON.stringify(word)})`);
      }
    }
  }
  return out.join(" ");
}

/** A compound field: the `-S` language as written, else MCollective's statement form. */
function compileCompoundField(text: string): (n: NodeInfo) => boolean {
  try {
    return compileCompound(text);
  } catch (direct) {
    let expr: string;
    try {
      expr = statementsToExpression(text);
    } catch (err) {
      throw new Error(`${(err as Error).message} (and not a -S expression: ${(direct as Error).message})`, {
        cause: err,
      });
    }
    return compileCompound(expr);
  }
}

function callerProblem(c: string): string | undefined {
  if (!c.startsWith("/")) return undefined;
  if (!isSlashRegex(c) || c.length <= 2) return `caller matcher ${c} is not a /regex/`;
  const why = regexProblem(c.slice(1, -1));
  return why === undefined ? undefined : `caller regex ${c} does not compile: ${why}`;
}

/**
 * One rule from its raw fields, with go-choria's meaning for each: `*` is anything,
 * an empty caller or actions field matches nothing, an empty facts or classes field
 * cannot be evaluated. Returns the rule and what could not be read; a field that
 * could not be read is left out of the rule (the caller decides what that means).
 */
export function compileRule(
  f: PolicyFields,
  line = 0,
): { rule: PolicyRule; problems: string[]; unreadable: Set<"caller" | "facts" | "classes"> } {
  const rule: PolicyRule = { allow: f.allow, line };
  const problems: string[] = [];
  const unreadable = new Set<"caller" | "facts" | "classes">();
  const compound: ((n: NodeInfo) => boolean)[] = [];

  const caller = f.caller.trim();
  if (caller !== "*") {
    rule.callers = words(caller);
    for (const c of rule.callers) {
      const why = callerProblem(c);
      if (why === undefined) continue;
      // `//` and bad regexes match nobody (go-choria); said once here, not per request
      problems.push(why);
      if (c.length > 2) unreadable.add("caller");
    }
  }
  const actions = f.actions.trim();
  if (actions !== "*") rule.actions = words(actions);

  const facts = f.facts.trim();
  if (facts === "") {
    problems.push("empty facts field");
    unreadable.add("facts");
  } else if (facts !== "*") {
    try {
      if (isCompoundStatement(facts)) compound.push(compileCompoundField(facts));
      else rule.facts = words(facts).map(checkedFact);
    } catch (err) {
      problems.push(`facts field: ${(err as Error).message}`);
      unreadable.add("facts");
    }
  }

  const classes = f.classes.trim();
  if (classes === "") {
    problems.push(
      "empty classes field (a rule has 5 TAB separated fields: allow|deny, callers, actions, facts, classes)",
    );
    unreadable.add("classes");
  } else if (classes !== "*") {
    try {
      if (isCompoundStatement(classes)) {
        compound.push(compileCompoundField(classes));
      } else {
        const list = words(classes);
        const fact = list.find((c) => FACT_LIKE.test(c));
        if (fact !== undefined)
          throw new Error(`fact ${JSON.stringify(fact)} found where a class was expected`);
        for (const c of list) {
          const why = isSlashRegex(c) ? regexProblem(c.slice(1, -1), "i") : undefined;
          if (why !== undefined) throw new Error(`bad class regex ${c}: ${why}`);
        }
        rule.classes = list;
      }
    } catch (err) {
      problems.push(`classes field: ${(err as Error).message}`);
      unreadable.add("classes");
    }
  }
  if (compound.length > 0) rule.compound = compound;
  return { rule, problems, unreadable };
}

/**
 * Parses a Choria action_policy file. Rules are TAB separated:
 * `allow|deny <TAB> callers <TAB> actions <TAB> facts <TAB> classes`, each field a
 * space separated list, `*`, or (facts and classes) a compound statement. A line
 * that cannot be used never takes the file down: an allow line is skipped, a deny
 * line is kept with its unreadable parts matching everything (a deny Chorus cannot
 * read must not open access). Each case is in `warnings`.
 */
export function parsePolicy(text: string, file: string): Policy {
  const policy: Policy = { file, defaultAllow: false, defaultStated: false, rules: [], warnings: [] };
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i] as string;
    const n = i + 1;
    if (SKIP.test(raw)) continue;
    const line = raw.replace(/\s+$/, "");
    const shown = JSON.stringify(line.slice(0, 120));
    const dm = DEFAULT_RE.exec(line);
    if (dm) {
      const v = dm[1] as string;
      policy.defaultAllow = v === "allow";
      policy.defaultStated = true;
      if (v !== "allow" && v !== "deny") {
        policy.warnings.push({
          line: n,
          outcome: "default-deny",
          message: `policy default must be allow or deny, not "${v}": using deny`,
        });
      }
      continue;
    }
    const fields = line.split(/\t+/);
    const verb = fields[0] as string;
    // go-choria reads a missing classes field as "", which compileRule handles as it does
    const well = (verb === "allow" || verb === "deny") && (fields.length === 5 || fields.length === 4);
    if (!well) {
      let why: string;
      if (/^(allow|deny) /i.test(line)) why = "rule fields must be separated by TAB characters, not spaces";
      else if (verb !== "allow" && verb !== "deny")
        why = `expected "policy default allow|deny" or a TAB separated allow|deny rule, got ${shown}`;
      else
        why = `a rule has 5 TAB separated fields (allow|deny, callers, actions, facts, classes), found ${fields.length}`;
      // Any spelling of a deny (case, spaces) that cannot be read denies everyone.
      if (/^deny\b/i.test(line)) {
        policy.rules.push({ allow: false, line: n });
        policy.warnings.push({
          line: n,
          outcome: "deny-widened",
          message: `${why}; this deny line cannot be read and denies every request`,
        });
      } else {
        policy.warnings.push({ line: n, outcome: "skipped", message: `${why}; line skipped` });
      }
      continue;
    }
    const [, caller, actions, facts, classes = ""] = fields as [string, string, string, string, string?];
    const { rule, problems, unreadable } = compileRule(
      { allow: verb === "allow", caller, actions, facts, classes },
      n,
    );
    if (rule.allow && (unreadable.has("facts") || unreadable.has("classes"))) {
      policy.warnings.push({ line: n, outcome: "skipped", message: `${problems.join("; ")}; line skipped` });
      continue;
    }
    // On a deny line an unreadable field is left out of the rule, so it matches anything.
    if (!rule.allow && unreadable.has("caller")) delete rule.callers;
    policy.rules.push(rule);
    if (problems.length > 0) {
      const widened = !rule.allow && unreadable.size > 0;
      policy.warnings.push({
        line: n,
        outcome: widened ? "deny-widened" : "kept",
        message: widened
          ? `${problems.join("; ")}; the unreadable parts of this deny line match every request`
          : `${problems.join("; ")}; that matcher matches nobody`,
      });
    }
  }
  return policy;
}

/** Reports a groups line that was skipped: 1-based line number and why. */
export type GroupWarning = (line: number, message: string) => void;

const GROUP_NAME = /^[\w.-]+$/;

/** Reads `policies/groups`: `name member member...` per line. Bad lines are skipped with a warning. */
export function parseGroups(text: string, _file: string, warn?: GroupWarning): Map<string, string[]> {
  const groups = new Map<string, string[]>();
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i] as string;
    if (SKIP.test(raw)) continue;
    const [name = "", ...members] = words(raw);
    if (!GROUP_NAME.test(name)) {
      warn?.(i + 1, `invalid group name ${JSON.stringify(name)}; line skipped`);
      continue;
    }
    if (members.length === 0) {
      warn?.(i + 1, `group ${name} has no members; line skipped`);
      continue;
    }
    groups.set(name, members);
  }
  return groups;
}

/** A missing groups file means no groups; one that exists but cannot be read is a PolicyError. */
export function readGroups(file: string, warn?: GroupWarning): Map<string, string[]> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return new Map();
    throw new PolicyError(file, 0, `cannot read: ${(err as Error).message}`);
  }
  return parseGroups(text, file, warn);
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

function nodeInfo(s: PolicySubject): NodeInfo {
  return {
    identity: s.node?.identity ?? "",
    facts: s.facts,
    get classes(): string[] {
      // thrown into ruleMatches, which reads it as "cannot be evaluated"
      if (s.classesUnknown !== undefined) throw new Error(`classes unknown: ${s.classesUnknown}`);
      return s.classes as string[];
    },
    get agents() {
      return [...(s.node?.agents ?? [])];
    },
  };
}

function ruleMatches(
  rule: PolicyRule,
  s: PolicySubject,
  groups: Map<string, string[]>,
  node: () => NodeInfo,
): boolean {
  if (!callerMatches(rule, s.caller, groups)) return false;
  if (rule.actions && !rule.actions.includes(s.action)) return false;
  if (rule.facts && !rule.facts.every((f) => matchFact(f, s.facts))) return false;
  if (rule.classes) {
    // go-choria: "do not know how to resolve classes"; unknown classes never open a deny
    if (s.classesUnknown !== undefined) {
      if (rule.allow) return false;
    } else if (!matchClasses(rule.classes, s.classes)) {
      return false;
    }
  }
  if (rule.compound) {
    for (const test of rule.compound) {
      let ok: boolean;
      try {
        ok = test(node());
      } catch {
        // cannot be evaluated for this request: a deny still applies, an allow does not
        ok = !rule.allow;
      }
      if (!ok) return false;
    }
  }
  return true;
}

/**
 * First matching rule wins; otherwise the policy default. A file without a
 * `policy default` line falls back to `unstatedDefaultAllow` (go-choria uses
 * plugin.actionpolicy.allow_unconfigured there).
 */
export function evaluatePolicy(
  policy: Policy,
  s: PolicySubject,
  groups: Map<string, string[]> = new Map(),
  unstatedDefaultAllow = false,
): PolicyDecision {
  let info: NodeInfo | undefined;
  const node = () => (info ??= nodeInfo(s));
  for (const rule of policy.rules) {
    if (ruleMatches(rule, s, groups, node)) {
      const unknown =
        !rule.allow && s.classesUnknown !== undefined && (rule.classes ?? rule.compound) !== undefined
          ? ` (the node's classes are unknown: ${s.classesUnknown})`
          : "";
      return {
        allowed: rule.allow,
        reason: `${rule.allow ? "allowed" : "denied"} by ${policy.file}:${rule.line}${unknown}`,
      };
    }
  }
  const allowed = policy.defaultStated ? policy.defaultAllow : unstatedDefaultAllow;
  return {
    allowed,
    reason: policy.defaultStated
      ? `no rule matched, ${policy.file} default is ${allowed ? "allow" : "deny"}`
      : `no rule matched and ${policy.file} has no policy default, using ${allowed ? "allow (allow_unconfigured)" : "deny"}`,
  };
}
