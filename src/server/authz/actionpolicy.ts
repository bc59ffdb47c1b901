import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "../../core/util/index.js";
import type { Authorizer } from "../types.js";
import {
  evaluatePolicy,
  parsePolicy,
  PolicyError,
  readGroups,
  type PolicyDecision,
  type PolicySubject,
} from "./policy.js";

export interface ActionPolicyOptions {
  /** `<configdir>/policies` */
  policyDir: string;
  /** plugin.actionpolicy.allow_unconfigured: allow agents without a policy file. */
  allowUnconfigured?: boolean;
  /** plugin.actionpolicy.enable_default: use `default.policy` for agents without their own. */
  enableDefault?: boolean;
  /** plugin.actionpolicy.default_name (default "default"). */
  defaultName?: string;
  /** where denials, unusable lines and unreadable policy files are reported */
  logger?: Pick<Logger, "warn" | "error">;
  /** How long a parsed file is trusted before its mtime is checked again (default 1000 ms). */
  recheckMs?: number;
}

type Loaded<T> = { value: T } | { error: PolicyError } | { missing: true };

/** Counts since start, for the server's metrics; bumped each time a file is (re)read. */
export interface ActionPolicyStats {
  /** allow (or unrecognised) policy lines ignored because they cannot be evaluated */
  skippedLines: number;
  /** deny lines that cannot be fully read and so match more requests than written */
  widenedDenyLines: number;
  /** groups file lines ignored (no members, bad group name) */
  skippedGroupLines: number;
}

interface CacheEntry {
  key: string;
  checkedAt: number;
  loaded: Loaded<unknown>;
}

/**
 * Choria's action_policy authorizer. Files are read lazily and cached; a file is
 * re-read when its mtime or size changes (checked at most every `recheckMs`), so
 * policy edits apply without a restart and the request path rarely touches the disk.
 */
export class ActionPolicyAuthorizer implements Authorizer {
  private readonly opts: Required<Omit<ActionPolicyOptions, "logger">> & {
    logger?: Pick<Logger, "warn" | "error">;
  };
  private readonly cache = new Map<string, CacheEntry>();
  readonly stats: ActionPolicyStats = { skippedLines: 0, widenedDenyLines: 0, skippedGroupLines: 0 };

  constructor(opts: ActionPolicyOptions) {
    this.opts = {
      allowUnconfigured: false,
      enableDefault: false,
      defaultName: "default",
      recheckMs: 1000,
      ...opts,
    };
  }

  /** Forget every cached file (SIGHUP reload). */
  reload(): void {
    this.cache.clear();
  }

  authorize(req: Parameters<Authorizer["authorize"]>[0]): PolicyDecision {
    // a configured classes file that cannot be read: classes fields cannot be evaluated
    const classesUnknown = req.node.classesProblem();
    const d = this.decide({
      agent: req.agent,
      action: req.action,
      caller: req.caller,
      facts: req.node.facts,
      classes: req.node.classes,
      ...(classesUnknown !== undefined && { classesUnknown }),
      node: req.node,
    });
    if (!d.allowed) {
      this.opts.logger?.warn(
        { caller: req.caller, agent: req.agent, action: req.action, reason: d.reason },
        `denying ${req.caller} access to ${req.agent}#${req.action}: ${d.reason}`,
      );
    }
    return d;
  }

  /** The decision with its reason (exposed for tests and tooling). */
  decide(s: PolicySubject & { agent: string }): PolicyDecision {
    const policyFile = (n: string) => this.load(`${n}.policy`, (f) => this.parsePolicyFile(f));
    let loaded = policyFile(s.agent);
    if ("missing" in loaded && this.opts.enableDefault) loaded = policyFile(this.opts.defaultName);
    if ("missing" in loaded) {
      return this.opts.allowUnconfigured
        ? { allowed: true, reason: "no policy file and allow_unconfigured is set" }
        : { allowed: false, reason: `no policy file for agent ${s.agent}` };
    }
    if ("error" in loaded)
      return { allowed: false, reason: `unreadable policy, denying all: ${loaded.error.message}` };
    const groups = this.load("groups", (f) => this.readGroupsFile(f));
    if ("error" in groups)
      return { allowed: false, reason: `unreadable groups file, denying all: ${groups.error.message}` };
    return evaluatePolicy(
      loaded.value,
      s,
      "value" in groups ? groups.value : new Map(),
      this.opts.allowUnconfigured,
    );
  }

  /** Only a file that cannot be read is an error; its unusable lines are logged and counted. */
  private parsePolicyFile(file: string) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (err) {
      throw new PolicyError(file, 0, `cannot read: ${(err as Error).message}`);
    }
    const policy = parsePolicy(text, file);
    for (const w of policy.warnings) {
      if (w.outcome === "skipped") this.stats.skippedLines++;
      if (w.outcome === "deny-widened") this.stats.widenedDenyLines++;
      this.opts.logger?.warn({ file, line: w.line, outcome: w.outcome }, `${file}:${w.line}: ${w.message}`);
    }
    return policy;
  }

  private readGroupsFile(file: string) {
    return readGroups(file, (line, message) => {
      this.stats.skippedGroupLines++;
      this.opts.logger?.warn({ file, line }, `${file}:${line}: ${message}`);
    });
  }

  private load<T>(name: string, parse: (file: string) => T): Loaded<T> {
    const file = join(this.opts.policyDir, name);
    const now = Date.now();
    const cached = this.cache.get(name);
    if (cached && now - cached.checkedAt < this.opts.recheckMs) return cached.loaded as Loaded<T>;
    let key = "missing";
    try {
      const st = statSync(file);
      key = `${st.mtimeMs}:${st.size}`;
    } catch (err) {
      // only a file that is not there is "no file"; one that cannot be looked at
      // (EACCES, ELOOP...) is unreadable, so reading it below fails and denies
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "ENOENT" && code !== "ENOTDIR") key = `unstatable:${code ?? "?"}`;
    }
    if (cached && cached.key === key) {
      cached.checkedAt = now;
      return cached.loaded as Loaded<T>;
    }
    let loaded: Loaded<T>;
    if (key === "missing") {
      loaded = { missing: true };
    } else {
      try {
        loaded = { value: parse(file) };
      } catch (err) {
        const error = err instanceof PolicyError ? err : new PolicyError(file, 0, (err as Error).message);
        loaded = { error };
        this.opts.logger?.error({ file }, `unreadable policy file, denying all: ${error.message}`);
      }
    }
    this.cache.set(name, { key, checkedAt: now, loaded });
    return loaded;
  }
}
