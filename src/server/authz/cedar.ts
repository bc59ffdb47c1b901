import { createHash } from "node:crypto";
import { createRequire } from "node:module";
import type * as CedarWasm from "@cedar-policy/cedar-wasm/nodejs";
import type { Filter } from "../../core/protocol/index.js";
import type { AuthzDecision } from "../types.js";
import { DISCOVERY_ALLOWED, type AuthzInput, type ClaimsAuthorizer } from "./claims.js";

type CedarValue = CedarWasm.CedarValueJson;

export const REGO_UNSUPPORTED = "rego policies are not supported; use cedar_policy";

let wasm: typeof CedarWasm | undefined;
/** Loaded on first use: the 4 MB module costs ~75 ms, which nodes without Cedar should not pay. */
function cedar(): typeof CedarWasm {
  wasm ??= createRequire(import.meta.url)("@cedar-policy/cedar-wasm/nodejs") as typeof CedarWasm;
  return wasm;
}

/** Why a Cedar policy set does not parse, or undefined when it does (for issuing tools). */
export function cedarPolicyProblem(text: string): string | undefined {
  if (text.trim() === "") return "the policy is empty";
  const r = cedar().checkParsePolicySet({ staticPolicies: text });
  return r.type === "success" ? undefined : messages(r.errors);
}

/** A cedarAuthorizer, with how many distinct policies it holds parsed (for tests and metrics). */
export interface CedarAuthorizer extends ClaimsAuthorizer {
  readonly cached: number;
}

type Parsed = { slot: string } | { error: string };

// Preparsed sets live in the wasm module's global store, shared by every instance.
let instances = 0;

/**
 * The `cedar_policy` claim as an authorizer. Each distinct policy text is parsed once
 * and kept in a bounded LRU keyed by its sha256; an evicted policy's wasm slot is
 * reused, so the module's store stays bounded too. A policy that does not parse, or
 * fails to evaluate, denies with Cedar's message as the reason.
 */
export function cedarAuthorizer(opts: { maxCached?: number } = {}): CedarAuthorizer {
  const max = Math.max(1, Math.floor(opts.maxCached ?? 64));
  const prefix = `chorus-${instances++}-`;
  const lru = new Map<string, Parsed>();
  const freeSlots: string[] = [];
  let nextSlot = 0;

  const parse = (text: string): Parsed => {
    const key = createHash("sha256").update(text).digest("hex");
    const hit = lru.get(key);
    if (hit) {
      lru.delete(key);
      lru.set(key, hit);
      return hit;
    }
    if (lru.size >= max) {
      const [oldKey, old] = lru.entries().next().value as [string, Parsed];
      lru.delete(oldKey);
      if ("slot" in old) freeSlots.push(old.slot);
    }
    const slot = freeSlots.pop() ?? `${prefix}${nextSlot++}`;
    let parsed: Parsed;
    try {
      const r = cedar().preparsePolicySet(slot, { staticPolicies: text });
      parsed = r.type === "success" ? { slot } : { error: messages(r.errors) };
    } catch (err) {
      parsed = { error: (err as Error).message };
    }
    if ("error" in parsed) freeSlots.push(slot);
    lru.set(key, parsed);
    return parsed;
  };

  return {
    name: "cedar",
    get cached() {
      return lru.size;
    },
    authorize(input) {
      if (input.agent === "discovery") return DISCOVERY_ALLOWED;
      const policy = input.claims.cedar_policy;
      if (typeof policy !== "string" || policy.trim() === "") {
        if (typeof input.claims.opa_policy === "string" && input.claims.opa_policy !== "")
          return { allowed: false, reason: REGO_UNSUPPORTED };
        return { allowed: false, reason: "the caller's token has no cedar_policy claim" };
      }
      const parsed = parse(policy);
      if ("error" in parsed)
        return { allowed: false, reason: `cedar policy does not parse: ${parsed.error}` };
      try {
        return decide(parsed.slot, input);
      } catch (err) {
        return { allowed: false, reason: `cedar evaluation failed: ${(err as Error).message}` };
      }
    },
  };
}

function decide(slot: string, input: AuthzInput): AuthzDecision {
  const actionId = `${input.agent}.${input.action}`;
  const r = cedar().statefulIsAuthorized({
    principal: { type: "Chorus::Caller", id: input.callerid },
    action: { type: "Chorus::Action", id: actionId },
    resource: { type: "Chorus::Collective", id: input.collective },
    context: cedarContext(input),
    preparsedPolicySetId: slot,
    entities: [
      // the agent as the action's parent: `action in Chorus::Action::"puppet"` is every puppet action
      {
        uid: { type: "Chorus::Action", id: actionId },
        attrs: {},
        parents: [{ type: "Chorus::Action", id: input.agent }],
      },
    ],
  });
  if (r.type === "failure")
    return { allowed: false, reason: `cedar evaluation failed: ${messages(r.errors)}` };
  const { decision, diagnostics } = r.response;
  const ids = diagnostics.reason.join(", ");
  const errors = diagnostics.errors.map((e) => `${e.policyId}: ${e.error.message}`).join("; ");
  if (decision === "allow") return { allowed: true, reason: `permitted by cedar ${ids}` };
  const why = ids !== "" ? `forbidden by cedar ${ids}` : "no cedar policy permits the request";
  return { allowed: false, reason: errors !== "" ? `${why} (policy errors: ${errors})` : why };
}

function messages(errors: readonly CedarWasm.DetailedError[]): string {
  return errors.map((e) => e.message).join("; ") || "unknown error";
}

/** Fact filters as written on a command line, so `contains("country=mt")` reads naturally. */
function factStrings(filter: Filter | undefined): string[] {
  const out: string[] = [];
  for (const f of filter?.fact ?? []) {
    out.push(`${f.fact}${f.operator}${f.value}`);
    if (f.operator === "==") out.push(`${f.fact}=${f.value}`);
  }
  return out;
}

/** The request as Cedar's context; see docs for the model. */
export function cedarContext(input: AuthzInput): Record<string, CedarValue> {
  const f = input.filter;
  const filter = {
    identities: f?.identity ?? [],
    classes: f?.cf_class ?? [],
    agents: f?.agent ?? [],
    facts: factStrings(f),
    compound: (f?.compound ?? []).map((c) => c.map((e) => e.expr).join(" ")),
  };
  // As Choria's requires_filter(): the agent filter is always set, so it does not count.
  const hasFilter =
    filter.identities.length + filter.classes.length + filter.facts.length + filter.compound.length > 0;
  const { cedar_policy: _c, opa_policy: _o, ...claims } = input.claims;
  return {
    agent: input.agent,
    action: input.action,
    data: toCedar(input.data) ?? {},
    sender: input.sender,
    collective: input.collective,
    ttl: toCedar(input.ttl) ?? 0,
    time: toCedar(Math.floor(input.time)) ?? 0,
    site: input.site,
    claims: toCedar(claims) ?? {},
    filter,
    has_filter: hasFilter,
  };
}

// Keys Cedar's JSON reads as entity or extension escapes; request data must not forge those.
const ESCAPES = new Set(["__entity", "__extn", "__expr"]);

/**
 * JSON as Cedar accepts it: Cedar has no null and only 64-bit integers, so nulls
 * are left out and other numbers become their decimal strings.
 */
function toCedar(v: unknown): CedarValue | undefined {
  if (v === null || v === undefined) return undefined;
  if (typeof v === "string" || typeof v === "boolean") return v;
  if (typeof v === "number") return Number.isSafeInteger(v) ? v : String(v);
  if (typeof v === "bigint") return String(v);
  if (Array.isArray(v)) {
    const out: CedarValue[] = [];
    for (const e of v) {
      const c = toCedar(e);
      if (c !== undefined) out.push(c);
    }
    return out;
  }
  if (typeof v === "object") {
    const out: Record<string, CedarValue> = {};
    for (const [k, e] of Object.entries(v)) {
      if (ESCAPES.has(k)) continue;
      const c = toCedar(e);
      if (c !== undefined) out[k] = c;
    }
    return out;
  }
  return undefined;
}
