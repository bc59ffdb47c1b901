import { isIP } from "node:net";
import { compileRegex, regexProblem, type SafeRegex } from "../protocol/index.js";
import { CaError } from "./errors.js";

/** Choria's `cert_deny_list` default: names that would pass for privileged or internal users. */
export const CHORIA_CERT_DENY_LIST: readonly string[] = Object.freeze([
  "\\.privileged.mcollective$",
  "\\.privileged.choria$",
  "\\.mcollective$",
  "\\.choria$",
]);

/** The longest leaf validity a CA allows when its policy does not say (five years). */
export const DEFAULT_MAX_VALIDITY_DAYS = 1825;

/** Limits that keep one request cheap to check and store. */
export const MAX_SANS = 100;
const MAX_DAYS = 36_500;

/** What a CA signs. Key names follow Choria's configuration style (snake_case). */
export interface CaPolicy {
  /** regular expressions; when set and not empty, the CN and every DNS SAN must match one */
  allowed_names?: string[];
  /** regular expressions no CN or DNS SAN may match (default CHORIA_CERT_DENY_LIST; [] for none) */
  deny_names?: string[];
  /** the longest leaf validity in days (default DEFAULT_MAX_VALIDITY_DAYS) */
  max_validity_days?: number;
}

export type ResolvedPolicy = Required<CaPolicy>;

/** Subject alternative names of a leaf. */
export interface CaSans {
  dns?: string[];
  ip?: string[];
  email?: string[];
  uri?: string[];
}

/** A whole number of days from 1 to 100 years, or a `bad_input` error naming `what`. */
export function checkDays(what: string, days: unknown): number {
  if (typeof days !== "number" || !Number.isInteger(days) || days < 1 || days > MAX_DAYS)
    throw new CaError(
      "bad_input",
      `${what} must be a whole number of days from 1 to ${MAX_DAYS}, got ${String(days)}`,
    );
  return days;
}

function compile(source: string): SafeRegex {
  // RE2, as Choria's Go regexp: linear time, so no pattern can stall the CA on a crafted
  // name; without case, so "x.CHORIA" does not slip past "\.choria$" (DNS ignores case)
  const re = compileRegex(source, "i");
  if (!re)
    throw new CaError(
      "bad_input",
      `policy pattern ${JSON.stringify(source)} is not a usable regular expression: ${regexProblem(source, "i")}`,
    );
  return re;
}

function patterns(what: string, v: unknown, dflt: readonly string[]): string[] {
  if (v === undefined) return [...dflt];
  if (!Array.isArray(v) || !v.every((p) => typeof p === "string" && p !== ""))
    throw new CaError("bad_input", `policy ${what} must be a list of non-empty regular expressions`);
  for (const p of v as string[]) compile(p);
  return [...(v as string[])];
}

/** The policy with defaults filled in; every pattern compiles and the numbers are in range. */
export function resolvePolicy(p: CaPolicy = {}): ResolvedPolicy {
  if (typeof p !== "object" || p === null || Array.isArray(p))
    throw new CaError("bad_input", "policy must be an object");
  return {
    allowed_names: patterns("allowed_names", p.allowed_names, []),
    deny_names: patterns("deny_names", p.deny_names, CHORIA_CERT_DENY_LIST),
    max_validity_days: checkDays(
      "policy max_validity_days",
      p.max_validity_days ?? DEFAULT_MAX_VALIDITY_DAYS,
    ),
  };
}

/**
 * Refuses any name the policy denies or does not allow. Trailing dots are dropped
 * first: "node.choria." is the same DNS name as "node.choria".
 */
export function checkNames(policy: ResolvedPolicy, names: readonly string[]): void {
  const deny = policy.deny_names.map(compile);
  const allow = policy.allowed_names.map(compile);
  for (const raw of names) {
    const name = raw.replace(/\.+$/, "");
    const denied = deny.find((re) => re.test(name));
    if (denied)
      throw new CaError(
        "policy",
        `name ${JSON.stringify(raw)} is denied by the CA policy (${denied.source})`,
      );
    if (allow.length && !allow.some((re) => re.test(name)))
      throw new CaError("policy", `name ${JSON.stringify(raw)} is not allowed by the CA policy`);
  }
}

// a host name or a wildcard one: labels of letters, digits, "-" and "_" (seen in real
// host names), no label starting or ending with "-", no trailing dot
const LABEL = "[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?";
const DNS_NAME = new RegExp(`^(?:\\*\\.)?${LABEL}(?:\\.${LABEL})*$`, "i");
// dNSName, rfc822Name and URI SANs are IA5String: ASCII only
const ASCII = /^[\x21-\x7e]+$/;

export function isDnsName(v: string): boolean {
  return v.length <= 253 && DNS_NAME.test(v);
}

function checkList(kind: keyof CaSans, v: unknown, ok: (s: string) => boolean, what: string): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw new CaError("bad_input", `${kind} SANs must be a list`);
  for (const s of v as unknown[]) {
    if (typeof s !== "string" || !ok(s))
      throw new CaError("bad_input", `${kind} SAN ${JSON.stringify(s)} is not ${what}`);
  }
  return [...new Set(v as string[])];
}

function isUri(s: string): boolean {
  if (!ASCII.test(s)) return false;
  try {
    new URL(s);
    return true;
  } catch {
    return false;
  }
}

/** The SANs checked and de-duplicated; only kinds with values are kept. */
export function checkSans(s: CaSans): CaSans {
  if (typeof s !== "object" || s === null) throw new CaError("bad_input", "SANs must be an object");
  const out: CaSans = {};
  const dns = checkList("dns", s.dns, isDnsName, "a DNS name");
  const ip = checkList("ip", s.ip, (v) => isIP(v) !== 0, "an IP address");
  const email = checkList(
    "email",
    s.email,
    (v) => ASCII.test(v) && /^[^@]+@[^@]+$/.test(v),
    "an email address",
  );
  const uri = checkList("uri", s.uri, isUri, "an absolute URI");
  if (dns.length + ip.length + email.length + uri.length > MAX_SANS)
    throw new CaError("bad_input", `a certificate may carry at most ${MAX_SANS} SANs`);
  if (dns.length) out.dns = dns;
  if (ip.length) out.ip = ip;
  if (email.length) out.email = email;
  if (uri.length) out.uri = uri;
  return out;
}

export function hasSans(s: CaSans | undefined): boolean {
  return !!s && Object.values(s).some((v) => Array.isArray(v) && v.length > 0);
}
