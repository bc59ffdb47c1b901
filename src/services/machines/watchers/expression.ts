import { COMMON_FUNCTIONS, compileExpression, type ExprEnv } from "../../../core/filter/index.js";
import type { Watcher, WatcherFactory } from "../types.js";
import { WatcherProps } from "./properties.js";

interface Ctx {
  data: Record<string, unknown>;
  facts: Record<string, unknown>;
}

/** The names a machine expression may use: `data` (machine data) and `facts`. */
const MACHINE_ENV: ExprEnv<Ctx> = {
  what: "machine expression",
  vars: {
    data: (c) => c.data,
    facts: (c) => c.facts,
  },
  funcs: { ...COMMON_FUNCTIONS },
};

type Outcome = "unknown" | "skipped" | "success_when" | "fail_when" | "no_match" | "error";

/**
 * `expression`: every interval (default 10s) evaluates success_when, then fail_when, over
 * machine data and facts; fires success or fail when the outcome changes to it, as go-choria does.
 */
export const expressionWatcher: WatcherFactory = (def, host, path) => {
  const p = new WatcherProps(def, path, ["success_when", "fail_when"]);
  const compile = (key: string): ((c: Ctx) => boolean) | undefined => {
    const src = p.string(key);
    if (src === undefined || src.trim() === "") return undefined;
    try {
      return compileExpression(src, MACHINE_ENV);
    } catch (err) {
      throw p.error(key, err instanceof Error ? err.message : String(err));
    }
  };
  const successWhen = compile("success_when");
  const failWhen = compile("fail_when");
  if (!successWhen && !failWhen) throw p.error("", "success_when or fail_when is required");
  let previous: Outcome = "unknown";
  let lastError: string | undefined;

  const evaluate = (): Outcome => {
    const ctx: Ctx = { data: host.data(), facts: host.services.facts?.() ?? {} };
    try {
      if (successWhen?.(ctx)) return "success_when";
      if (failWhen?.(ctx)) return "fail_when";
      return "no_match";
    } catch (err) {
      lastError = err instanceof Error ? err.message : String(err);
      host.log.error({ error: lastError }, "expression evaluation failed");
      return "error";
    }
  };

  const w: Watcher = {
    def,
    type: "expression",
    defaultIntervalMs: 10_000,
    run() {
      const before = previous;
      const now = evaluate();
      previous = now;
      if (now !== "error") lastError = undefined;
      if (now === "success_when") {
        host.announce();
        if (before !== now) host.success("success_when matched");
      } else if (now === "fail_when") {
        host.announce();
        if (before !== now) host.fail("fail_when matched");
      } else if (now === "error") {
        host.announce();
      }
      return Promise.resolve();
    },
    stateChanged(_state, active) {
      // as in go-choria, an inactive state resets the outcome, so a still-true expression
      // fires again when the machine comes back; moving between active states does not
      if (!active) previous = "skipped";
    },
    snapshot: () => ({ previous_outcome: previous, ...(lastError ? { error: lastError } : {}) }),
  };
  return w;
};
