import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "../../core/util/index.js";
import type { Authorizer } from "../types.js";
import { evaluatePolicy, parsePolicy, PolicyError, readGroups, type PolicyDecision } from "./policy.js";

export interface ActionPolicyOptions {
  /** `<configdir>/policies` */
  policyDir: string;
  /** plugin.actionpolicy.allow_unconfigured: allow agents without a policy file. */
  allowUnconfigured?: boolean;
  /** plugin.actionpolicy.enable_default: use `default.policy` for agents without their own. */
  enableDefault?: boolean;
  /** plugin.actionpolicy.default_name (default "default"). */
  defaultName?: string;
  /** where denials and broken policy files are reported */
  logger?: Pick<Logger, "warn" | "error">;
  /** How long a parsed file is trusted before its mtime is checked again (default 1000 ms). */
  recheckMs?: number;
}

type Loaded<T> = { value: T } | { error: PolicyError } | { missing: true };

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
    const d = this.decide({
      agent: req.agent,
      action: req.action,
      caller: req.caller,
      facts: req.node.facts,
      classes: req.node.classes,
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
  decide(s: {
    agent: string;
    action: string;
    caller: string;
    facts: Record<string, unknown>;
    classes: readonly string[];
  }): PolicyDecision {
    const policyFile = (n: string) =>
      this.load(`${n}.policy`, (f) => parsePolicy(readFileSync(f, "utf8"), f));
    let loaded = policyFile(s.agent);
    if ("missing" in loaded && this.opts.enableDefault) loaded = policyFile(this.opts.defaultName);
    if ("missing" in loaded) {
      return this.opts.allowUnconfigured
        ? { allowed: true, reason: "no policy file and allow_unconfigured is set" }
        : { allowed: false, reason: `no policy file for agent ${s.agent}` };
    }
    if ("error" in loaded)
      return { allowed: false, reason: `broken policy, denying all: ${loaded.error.message}` };
    const groups = this.load("groups", readGroups);
    if ("error" in groups)
      return { allowed: false, reason: `broken groups file, denying all: ${groups.error.message}` };
    return evaluatePolicy(loaded.value, s, "value" in groups ? groups.value : new Map());
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
    } catch {
      // ENOENT and friends: treated as "no file"
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
        this.opts.logger?.error({ file, line: error.line }, `invalid policy file: ${error.message}`);
      }
    }
    this.cache.set(name, { key, checkedAt: now, loaded });
    return loaded;
  }
}
